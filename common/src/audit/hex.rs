//! Lower-case hex for the trail's hashes, keys and signatures.

/// Lower-case hex of `bytes`, as trails write keys, hashes and signatures.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes lower-case hex only: the writer never produces anything else, and accepting upper
/// case would let a byte of a trail change (`a` → `A`) without changing what it decodes to.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
