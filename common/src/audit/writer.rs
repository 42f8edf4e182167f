//! Appending signed events to a trail file.

use super::event::{AuditEvent, EventKind, GENESIS_PREV};
use super::events::{TrailEvent, TrailOpened};
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
    /// Writing failed.
    #[error("writing audit trail {path}")]
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
        };
        let opened = TrailOpened {
            role: role.to_owned(),
            public_key: trail.identity.public_key_hex(),
        };
        trail.append(TrailOpened::KIND, opened.fields(), now)?;
        Ok(trail)
    }

    /// Continues node `writer`'s existing trail after verifying it under this identity's key.
    pub fn open(
        path: &Path,
        writer: &NodeId,
        identity: SigningIdentity,
    ) -> Result<Self, TrailError> {
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
        Ok(Self {
            path: path.to_path_buf(),
            file,
            writer,
            identity,
            next_seq,
            prev,
        })
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
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(|source| TrailError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.next_seq += 1;
        self.prev = event.hash.clone();
        Ok(event)
    }

    /// The trail file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
