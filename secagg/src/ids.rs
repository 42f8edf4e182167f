//! Identifiers of jobs and consortium nodes.
//!
//! Identifiers are validated when they are made and when they are decoded, so that an id read
//! from the network or from disk can be used in file names, certificates and audit events
//! without further checks.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted identifier, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier was empty.
    #[error("{kind} id is empty")]
    Empty {
        /// What kind of id (job, node).
        kind: &'static str,
    },
    /// The identifier was longer than [`MAX_ID_LEN`].
    #[error("{kind} id '{id}…' is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong {
        /// What kind of id.
        kind: &'static str,
        /// The first characters of the id.
        id: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The identifier held a character outside `[A-Za-z0-9._-]`.
    #[error(
        "{kind} id '{id}' contains {bad:?}; only letters, digits, '.', '_' and '-' are allowed"
    )]
    BadCharacter {
        /// What kind of id.
        kind: &'static str,
        /// The id as given.
        id: String,
        /// The first offending character.
        bad: char,
    },
}

fn validate(kind: &'static str, id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            id: id.chars().take(16).collect(),
            len: id.len(),
        });
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdError::BadCharacter {
            kind,
            id: id.to_owned(),
            bad,
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                validate($kind, &id)?;
                Ok(Self(id))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(id: String) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A consortium job (one run of stats, segment, propensity or compliance).
    JobId,
    "job"
);
id_type!(
    /// A consortium node: a participant institution or branch; committee members are
    /// participants that also hold a key share.
    NodeId,
    "node"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_others() {
        assert!(NodeId::new("bank-a.branch_01").is_ok());
        assert!(matches!(NodeId::new(""), Err(IdError::Empty { .. })));
        assert!(matches!(
            NodeId::new("a/b"),
            Err(IdError::BadCharacter { bad: '/', .. })
        ));
        assert!(matches!(
            JobId::new("x".repeat(65)),
            Err(IdError::TooLong { len: 65, .. })
        ));
    }

    #[test]
    fn decoding_validates() {
        let bad: Result<NodeId, _> = serde_json::from_str("\"../etc\"");
        assert!(bad.is_err());
    }
}
