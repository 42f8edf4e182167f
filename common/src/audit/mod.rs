//! The audit trail (docs/threat-model.md §7): append-only JSON lines, one event per line, each carrying its
//! sequence number, time, writer, event type and fields, the previous event's hash, its own hash
//! and the writer's Ed25519 signature over that hash.
//!
//! ```text
//!   {"seq":0,"time":"…","writer":"coordinator","event":"trail.opened","fields":{"public_key":"…"},
//!    "prev":"000…0","hash":"h0","signature":"…"}
//!   {"seq":1,…,"prev":"h0","hash":"h1","signature":"…"}
//! ```
//!
//! - [`TrailWriter`] appends and syncs each event before returning, so an event that was
//!   reported written survives a crash; reopening a trail verifies it and continues the chain.
//! - [`verify`] reads a trail and reports the first event that was changed, removed, reordered
//!   or inserted (or whose signature fails); [`cross_check`] compares what a coordinator
//!   recorded with what participants and committee members recorded themselves.
//!
//! - [`events`]: one type per event kind, used by every writer and reader of a trail.
//! - [`ArtifactState`]: a file of the run checked against the `artifact.written` record that
//!   binds it to its writer's trail.
//!
//! The trail's signing key is named in its first event. A verifier that is given the writer's
//! expected public key (from its certificate) also detects a trail rewritten under a new key.

mod artifact;
mod event;
pub mod events;
mod hex;
mod verify;
mod writer;

pub use artifact::{file_sha256, relative_path, sha256_hex, ArtifactState};
pub use event::{AuditEvent, EventKind, GENESIS_PREV};
pub use hex::hex;
pub use verify::{cross_check, verify, verify_reader, CrossCheckFinding, TrailReport, VerifyError};
pub use writer::{SigningIdentity, TrailError, TrailWriter};
