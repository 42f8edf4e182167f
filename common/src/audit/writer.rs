//! Appending signed events to a trail file.
//!
//! An append is all or nothing: a write that fails part-way is cut back to the last complete
//! event before the error is returned. A trail that nevertheless ends in a partial line (the
//! machine lost power mid-write) is repaired when its node opens it again: the partial bytes are
//! moved to a file beside the trail (`<trail>.partial-<offset>`), kept as evidence, and the
//! trail records `trail.repaired` with that file's name, length and SHA-256 before anything
//! else. A trail file removed, replaced or changed by anyone else while its node runs is noticed
//! at the node's next append, which fails and names what happened.

use super::event::{AuditEvent, EventKind, GENESIS_PREV};
use super::events::{TrailEvent, TrailOpened, TrailRepaired};
use super::hex::hex;
use super::verify::{verify, VerifyError};
use crate::ids::NodeId;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why a trail could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    /// The signing key could not be made or read.
    #[error("audit signing key: {0}")]
    Key(String),
    /// The trail file exists already (a new trail never overwrites one).
    #[error("audit trail {0} already exists; open it to continue it")]
    Exists(PathBuf),
    /// The existing trail does not verify, so it cannot be continued.
    #[error("audit trail {path} does not verify; it is left as it is")]
    Invalid {
        /// The trail.
        path: PathBuf,
        /// What failed.
        #[source]
        source: VerifyError,
    },
    /// The existing trail was written by another node than the one continuing it.
    #[error("audit trail {path} was written by {trail_writer}, but this node is configured as {configured}; a node continues only its own trail")]
    WrongWriter {
        /// The trail.
        path: PathBuf,
        /// The writer the trail names.
        trail_writer: String,
        /// The node's configured id.
        configured: NodeId,
    },
    /// The trail file was removed, replaced by another file, or written by someone else while
    /// its node ran: the node stops rather than sign events into a file that is not its trail.
    #[error("audit trail {path}: {what} while the node ran; the node stops (its events so far are in the file it had open: restore it from a backup or keep the evidence as it is)")]
    ChangedUnderneath {
        /// The trail.
        path: PathBuf,
        /// What happened.
        what: String,
    },
    /// Writing failed. Nothing of the event is in the trail (a partial write is cut back).
    #[error("writing audit trail {path} (the event was not recorded; the trail ends at its last complete event)")]
    Io {
        /// The trail.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The Ed25519 key a node signs its trail with.
pub struct SigningIdentity {
    key: Ed25519KeyPair,
}

impl SigningIdentity {
    /// A fresh key from the operating system's randomness; returns its PKCS#8 encoding too.
    pub fn generate() -> Result<(Self, Vec<u8>), TrailError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| TrailError::Key("could not generate an Ed25519 key".into()))?;
        let der = pkcs8.as_ref().to_vec();
        Ok((Self::from_pkcs8(&der)?, der))
    }

    /// A key from its PKCS#8 DER encoding (as in a node's certificate key file).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, TrailError> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| TrailError::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(Self { key })
    }

    /// The public key, hex.
    pub fn public_key_hex(&self) -> String {
        hex(self.key.public_key().as_ref())
    }

    fn sign_hex(&self, message: &[u8]) -> String {
        hex(self.key.sign(message).as_ref())
    }
}

fn rfc3339(now: SystemTime) -> String {
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Appends events to one trail file; every event is on disk when `append` returns.
pub struct TrailWriter {
    path: PathBuf,
    file: File,
    writer: NodeId,
    identity: SigningIdentity,
    next_seq: u64,
    prev: String,
    /// Bytes of complete events in the file.
    len: u64,
    /// The file this writer holds open (device and inode on Unix), to notice a replaced trail.
    file_id: Option<(u64, u64)>,
}

/// The device and inode of an open file or a path (`None` where the platform has none).
#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// If the trail at `path` ends in a partial line and everything before it verifies, moves the
/// partial bytes to `<path>.partial-<offset>` and cuts the trail back to its last complete
/// event: (the side file, its length, its SHA-256). `None` when there was nothing to repair.
fn repair_partial_line(
    path: &Path,
    key: &str,
) -> Result<Option<(PathBuf, u64, String)>, TrailError> {
    let io = |source| TrailError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    if bytes.last() == Some(&b'\n') || bytes.is_empty() {
        return Ok(None);
    }
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    // Only a trail whose complete part is a good trail is repaired; anything else is left as
    // it is, and the node refuses it.
    if let Err(source) = super::verify::verify_reader(&bytes[..complete], Some(key)) {
        return Err(TrailError::Invalid {
            path: path.to_path_buf(),
            source,
        });
    }
    let partial = &bytes[complete..];
    let side = PathBuf::from(format!("{}.partial-{complete}", path.display()));
    match OpenOptions::new().write(true).create_new(true).open(&side) {
        Ok(mut f) => {
            f.write_all(partial).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        // Moved before, and the cut did not complete: the same bytes are there already.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::read(&side).map_err(io)? != partial {
                return Err(TrailError::ChangedUnderneath {
                    path: path.to_path_buf(),
                    what: format!(
                        "it ends in a partial line, and {} holds other bytes",
                        side.display()
                    ),
                });
            }
        }
        Err(e) => return Err(io(e)),
    }
    let file = OpenOptions::new().write(true).open(path).map_err(io)?;
    file.set_len(complete as u64).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Some((
        side,
        partial.len() as u64,
        super::artifact::sha256_hex(partial),
    )))
}

impl TrailWriter {
    /// Events in the trail so far.
    pub fn events(&self) -> u64 {
        self.next_seq
    }

    /// Starts a new trail at `path` for node `writer` in `role`; refuses to overwrite a file.
    pub fn create(
        path: &Path,
        writer: &NodeId,
        role: &str,
        identity: SigningIdentity,
        now: SystemTime,
    ) -> Result<Self, TrailError> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    TrailError::Exists(path.to_path_buf())
                } else {
                    TrailError::Io {
                        path: path.to_path_buf(),
                        source,
                    }
                }
            })?;
        let mut trail = Self {
            path: path.to_path_buf(),
            file,
            writer: writer.clone(),
            identity,
            next_seq: 0,
            prev: GENESIS_PREV.to_owned(),
            len: 0,
            file_id: None,
        };
        trail.file_id = trail.file.metadata().ok().as_ref().and_then(file_id);
        let opened = TrailOpened {
            role: role.to_owned(),
            public_key: trail.identity.public_key_hex(),
        };
        trail.append(TrailOpened::KIND, opened.fields(), now)?;
        Ok(trail)
    }

    /// Continues node `writer`'s existing trail after verifying it under this identity's key.
    /// A trail that ends in a partial line is repaired first (see the module's page) and
    /// records `trail.repaired`.
    pub fn open(
        path: &Path,
        writer: &NodeId,
        identity: SigningIdentity,
    ) -> Result<Self, TrailError> {
        let repaired = repair_partial_line(path, &identity.public_key_hex())?;
        let report = verify(path, Some(&identity.public_key_hex())).map_err(|source| {
            TrailError::Invalid {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let last = report.events.last().ok_or_else(|| TrailError::Invalid {
            path: path.to_path_buf(),
            source: VerifyError::Empty,
        })?;
        if report.writer != writer.as_str() {
            return Err(TrailError::WrongWriter {
                path: path.to_path_buf(),
                trail_writer: report.writer,
                configured: writer.clone(),
            });
        }
        let writer = writer.clone();
        let (next_seq, prev) = (last.seq + 1, last.hash.clone());
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| TrailError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let meta = file.metadata().map_err(|source| TrailError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut trail = Self {
            path: path.to_path_buf(),
            file,
            writer,
            identity,
            next_seq,
            prev,
            len: meta.len(),
            file_id: file_id(&meta),
        };
        if let Some((side, bytes, sha256)) = repaired {
            let file = side
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            trail.record(
                &TrailRepaired {
                    partial_file: file,
                    bytes,
                    sha256,
                },
                SystemTime::now(),
            )?;
        }
        Ok(trail)
    }

    /// Fails if the file at the trail's path is no longer the one this writer holds, or holds
    /// other bytes than the events it wrote.
    fn check_file(&self) -> Result<(), TrailError> {
        let changed = |what: String| TrailError::ChangedUnderneath {
            path: self.path.clone(),
            what,
        };
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(changed("the trail file was removed".into()))
            }
            Err(source) => {
                return Err(TrailError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        if self.file_id.is_some() && file_id(&meta) != self.file_id {
            return Err(changed(
                "the trail file was replaced by another file".into(),
            ));
        }
        if meta.len() != self.len {
            return Err(changed(format!(
                "the trail file holds {} bytes where this node wrote {}",
                meta.len(),
                self.len
            )));
        }
        Ok(())
    }

    /// Appends `event` (see [`Self::append`]).
    pub fn record<E: TrailEvent>(
        &mut self,
        event: &E,
        now: SystemTime,
    ) -> Result<AuditEvent, TrailError> {
        self.append(E::KIND, event.fields(), now)
    }

    /// Appends one event and syncs it to disk.
    pub fn append(
        &mut self,
        kind: EventKind,
        fields: Map<String, Value>,
        now: SystemTime,
    ) -> Result<AuditEvent, TrailError> {
        let mut event = AuditEvent {
            seq: self.next_seq,
            time: rfc3339(now),
            writer: self.writer.to_string(),
            event: kind.name().to_owned(),
            fields,
            prev: self.prev.clone(),
            hash: String::new(),
            signature: String::new(),
        };
        event.hash = event.compute_hash().map_err(|e| TrailError::Io {
            path: self.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        event.signature = self.identity.sign_hex(event.hash.as_bytes());
        let mut line = serde_json::to_string(&event).map_err(|e| TrailError::Io {
            path: self.path.clone(),
            source: e.into(),
        })?;
        line.push('\n');
        let io = |source| TrailError::Io {
            path: self.path.clone(),
            source,
        };
        self.check_file()?;
        if let Err(e) = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
        {
            // All or nothing: whatever part of the line reached the file is cut off again.
            let _ = self.file.set_len(self.len);
            let _ = self.file.sync_data();
            return Err(io(e));
        }
        self.len += line.len() as u64;
        self.next_seq += 1;
        self.prev = event.hash.clone();
        Ok(event)
    }

    /// The trail file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
