//! Files on a node's disk: atomic writes, owner-only permissions for secrets, size-limited reads.

use crate::wire::{self, WireError, WireMessage};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why a file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A secret file is readable or writable by others.
    #[error("{path} holds secret key material but has permissions {mode:o}; it must be readable by its owner only (chmod 600)")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The file's content is not a valid object.
    #[error("{path}: could not decode")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: WireError,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename). With `secret`, the file
/// is created with owner-only permissions (0600) before any byte is written.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<(), StorageError> {
    let tmp = path.with_extension("tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(io("creating", &tmp))?;
    #[cfg(unix)]
    if secret {
        // The mode above is masked by the umask only towards fewer permissions, but the file may
        // have existed before: force it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io("restricting permissions of", &tmp))?;
    }
    file.write_all(bytes).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("renaming into", path))?;
    Ok(())
}

/// Reads at most `limit` bytes of `path`; a longer file is refused without being read whole.
pub fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>, StorageError> {
    let file = File::open(path).map_err(io("opening", path))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io("reading", path))?;
    Ok(bytes)
}

/// Checks that a secret file is accessible by its owner only.
pub fn check_secret_permissions(path: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(io("inspecting", path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(StorageError::InsecurePermissions {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
    }
    Ok(())
}

/// Saves an object in its wire form; `secret` objects get owner-only permissions.
pub fn save<T: WireMessage>(path: &Path, value: &T, secret: bool) -> Result<(), StorageError> {
    let bytes = wire::encode(value).map_err(|source| StorageError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes, secret)
}

/// Loads an object saved by [`save`]; with `secret`, refuses a file others can read.
pub fn load<T: WireMessage>(path: &Path, secret: bool) -> Result<T, StorageError> {
    if secret {
        check_secret_permissions(path)?;
    }
    let bytes = read_limited(path, T::max_bytes())?;
    wire::decode(&bytes).map_err(|source| StorageError::Decode {
        path: path.to_path_buf(),
        source,
    })
}
