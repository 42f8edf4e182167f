//! The canonical encoding of fedbank objects: bincode 2 with little-endian fixed-width integers.
//! The wire format (`fedbank_common::wire`) puts a header in front of it; digests
//! ([`crate::digest::Digest::of_encoded`]) hash it.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::Serialize;

/// bincode's own ceiling on what one decode may claim to allocate.
pub const BINCODE_LIMIT: usize = 1 << 31;

/// The bincode configuration type of [`config`].
pub type CanonicalConfig = Configuration<LittleEndian, Fixint, Limit<BINCODE_LIMIT>>;

/// The configuration of every fedbank encoding.
pub fn config() -> CanonicalConfig {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<BINCODE_LIMIT>()
}

/// Encodes only the bincode body (no header); used for digests of canonical encodings.
pub fn encode_body<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, config())
}
