//! Files of a run bound to a signed trail: the node that writes a file records its SHA-256 in an
//! `artifact.written` event, and an auditor checks the file it is given against that record.
//!
//! What it does not do: decide where a run's files live (the writers pass the directory their
//! paths are relative to), or say whether a missing file matters (a participant's local outputs
//! stay at the institution and are often not handed to the auditor).

use super::events::ArtifactWritten;
use crate::ids::JobId;
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    super::hex::hex(&Sha256::digest(bytes))
}

/// SHA-256 (hex) and length of the file at `path`, read in blocks.
pub fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
        bytes += n as u64;
    }
    Ok((super::hex::hex(&hasher.finalize()), bytes))
}

/// The path of `file` relative to the directory `base`, with `/` separators (`../` where
/// `file` is outside it). Both must exist.
pub fn relative_path(base: &Path, file: &Path) -> std::io::Result<String> {
    let base = base.canonicalize()?;
    let file = file.canonicalize()?;
    let (b, f): (Vec<Component>, Vec<Component>) =
        (base.components().collect(), file.components().collect());
    let common = b.iter().zip(&f).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); b.len() - common];
    parts.extend(
        f[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    Ok(parts.join("/"))
}

impl ArtifactWritten {
    /// The record of `file`, written for `job`, with its path relative to `base`.
    pub fn of_file(job: &JobId, what: &str, base: &Path, file: &Path) -> std::io::Result<Self> {
        let (sha256, bytes) = file_sha256(file)?;
        Ok(Self {
            job: job.clone(),
            what: what.to_owned(),
            file: relative_path(base, file)?,
            sha256,
            bytes,
        })
    }

    /// Where the file is, for an auditor whose copy of the writer's base directory is `base`.
    pub fn located_in(&self, base: &Path) -> PathBuf {
        self.file
            .split('/')
            .fold(base.to_path_buf(), |p, part| p.join(part))
    }

    /// Checks the file as found under `base` against this record.
    pub fn check(&self, base: &Path) -> ArtifactState {
        let path = self.located_in(base);
        match file_sha256(&path) {
            Ok((sha256, _)) if sha256 == self.sha256 => ArtifactState::Matches,
            Ok((sha256, _)) => ArtifactState::Changed { sha256 },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ArtifactState::Absent,
            Err(e) => ArtifactState::Unreadable {
                reason: e.to_string(),
            },
        }
    }
}

/// A file checked against its `artifact.written` record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ArtifactState {
    /// The bytes are those recorded.
    Matches,
    /// The bytes differ: the file was changed after it was written.
    Changed {
        /// SHA-256 of the file as found.
        sha256: String,
    },
    /// No file at the recorded path.
    Absent,
    /// The file is there but cannot be read.
    Unreadable {
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_bound_by_its_bytes_and_found_by_its_relative_path() {
        let dir = tempfile::tempdir().expect("dir");
        let trails = dir.path().join("trails");
        let data = dir.path().join("data/bank");
        std::fs::create_dir_all(&trails).expect("dir");
        std::fs::create_dir_all(&data).expect("dir");
        let file = data.join("segments.csv");
        std::fs::write(&file, b"customer_id,segment\n1,0\n").expect("write");
        let job = JobId::new("j").expect("id");
        let record = ArtifactWritten::of_file(&job, "segments", &trails, &file).expect("record");
        assert_eq!(record.file, "../data/bank/segments.csv");
        assert_eq!(record.bytes, 24);
        // sha256sum of the same bytes.
        assert_eq!(
            record.sha256,
            "1eaaf08e4a46a7303944b3c6e60ce64d1f7ff90a52b43ca471f65898905e1090"
        );
        assert_eq!(record.check(&trails), ArtifactState::Matches);
        std::fs::write(&file, b"customer_id,segment\n1,1\n").expect("write");
        assert!(matches!(
            record.check(&trails),
            ArtifactState::Changed { .. }
        ));
        std::fs::remove_file(&file).expect("rm");
        assert_eq!(record.check(&trails), ArtifactState::Absent);
    }
}
