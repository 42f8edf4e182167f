//! Signed statements between nodes, verified against the consortium CA (docs/threat-model.md).
//!
//! The coordinator relays every message, so a statement that matters to a third party — a
//! committee member's public-key share, a participant's contribution — carries the signature of
//! the node that made it, with that node's certificate. Whoever relies on it checks, without
//! trusting the relay:
//!
//! ```text
//!   certificate ──signed by──▶ consortium CA        (Ed25519, the CA's key from ca.pem)
//!   certificate ──names──────▶ exactly the signer id (its one DNS subject-alternative name)
//!   signature   ──by the certificate's key──▶ "fedbank.endorsement.v1" ‖ kind ‖ signer ‖ digest
//! ```
//!
//! The signed bytes are a [`Digest`] built field by field ([`Statement::digest`]), so signing
//! never depends on an encoding that could fail.
//!
//! What it does not do: check certificate validity periods or revocation (the TLS handshake of
//! each connection checks the period; this module runs without a clock), or decide what a
//! statement allows — that is the job of the key ceremony and the committee's policy.

use crate::digest::Digest;
use crate::ids::NodeId;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Largest certificate accepted inside a signed statement.
pub const MAX_CERTIFICATE_BYTES: usize = 8 << 10;

/// The Ed25519 signature algorithm's object identifier, 1.3.101.112.
const ED25519_OID: &str = "1.3.101.112";

/// Why a signed statement, a certificate or a node key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndorsementError {
    /// The certificate could not be parsed.
    #[error("the certificate of {signer} is not a DER X.509 certificate")]
    Unparsable {
        /// Claimed signer.
        signer: String,
    },
    /// The certificate is larger than a node certificate can be.
    #[error(
        "the certificate of {signer} has {len} bytes, at most {MAX_CERTIFICATE_BYTES} are accepted"
    )]
    TooLarge {
        /// Claimed signer.
        signer: String,
        /// Its length.
        len: usize,
    },
    /// The certificate was not issued by the consortium CA.
    #[error("the certificate of {signer} was not issued by the consortium CA")]
    NotIssuedByCa {
        /// Claimed signer.
        signer: String,
    },
    /// The certificate names another node (or several, or none).
    #[error("the statement says it is signed by {signer}, but its certificate names {named:?}")]
    WrongName {
        /// Claimed signer.
        signer: String,
        /// Names in the certificate.
        named: Vec<String>,
    },
    /// The certificate's key is not an Ed25519 key.
    #[error("the certificate of {signer} does not hold an Ed25519 key")]
    NotEd25519 {
        /// Claimed signer.
        signer: String,
    },
    /// The signature does not verify under the certificate's key.
    #[error("the {kind} signed by {signer} does not verify: the statement was changed or signed by another key")]
    BadSignature {
        /// Statement kind.
        kind: &'static str,
        /// Claimed signer.
        signer: String,
    },
    /// The CA certificate is unusable.
    #[error("the consortium CA certificate is unusable: {0}")]
    BadCa(String),
    /// A node's private key does not belong to its certificate, or the certificate names
    /// another node than the one configured.
    #[error("node identity: {0}")]
    Identity(String),
}

/// A statement a node signs: a kind name and a digest over its fields.
pub trait Statement {
    /// Short name of the statement kind, part of what is signed (so that no signature of one
    /// kind can be replayed as another).
    const KIND: &'static str;
    /// Digest over every field of the statement.
    fn digest(&self) -> Digest;
}

/// A statement with its signer, the signer's certificate (DER) and an Ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// What is stated.
    pub statement: T,
    /// Who signed it (must be the certificate's one name).
    pub signer: NodeId,
    /// The signer's certificate, DER.
    pub certificate: Vec<u8>,
    /// Ed25519 signature over [`signing_message`].
    pub signature: Vec<u8>,
}

impl<T: Statement> Signed<T> {
    /// Digest naming this signed statement (statement, signer and signature), for records.
    pub fn digest(&self) -> Digest {
        Digest::builder("fedbank.signed.v1")
            .bytes(T::KIND.as_bytes())
            .bytes(self.signer.as_str().as_bytes())
            .bytes(&self.statement.digest().0)
            .bytes(&self.signature)
            .finish()
    }
}

/// The bytes a node signs for `statement`.
pub fn signing_message<T: Statement>(signer: &NodeId, statement: &T) -> Digest {
    Digest::builder("fedbank.endorsement.v1")
        .bytes(T::KIND.as_bytes())
        .bytes(signer.as_str().as_bytes())
        .bytes(&statement.digest().0)
        .finish()
}

/// A node's signing key and certificate: what it signs statements with.
pub struct NodeSigner {
    id: NodeId,
    key: Ed25519KeyPair,
    certificate: Vec<u8>,
}

impl std::fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSigner")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl NodeSigner {
    /// The signer of node `id` from its PKCS#8 Ed25519 key and its certificate (DER). Refuses a
    /// certificate that names another node, or a key that is not the certificate's: a node must
    /// be the same identity on the wire, in its trail and in what it signs.
    pub fn new(id: NodeId, pkcs8: &[u8], certificate: Vec<u8>) -> Result<Self, EndorsementError> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|e| {
            EndorsementError::Identity(format!(
                "{id}: the private key is not an Ed25519 PKCS#8 key ({e})"
            ))
        })?;
        let (named, public) = read_certificate(id.as_str(), &certificate)?;
        if named.as_slice() != [id.to_string()] {
            return Err(EndorsementError::Identity(format!(
                "the node is configured as {id}, but its certificate names {named:?}"
            )));
        }
        if public != key.public_key().as_ref() {
            return Err(EndorsementError::Identity(format!(
                "{id}: the private key does not belong to the node's certificate"
            )));
        }
        Ok(Self {
            id,
            key,
            certificate,
        })
    }

    /// The node this signer is.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Signs `statement`.
    pub fn sign<T: Statement>(&self, statement: T) -> Signed<T> {
        let message = signing_message(&self.id, &statement);
        Signed {
            signature: self.key.sign(&message.0).as_ref().to_vec(),
            statement,
            signer: self.id.clone(),
            certificate: self.certificate.clone(),
        }
    }
}

/// A node's signing key and the consortium CA it checks others against.
#[derive(Debug)]
pub struct Credentials {
    /// The node's certified signing key (its id is the node's id).
    pub signer: NodeSigner,
    /// The consortium CA.
    pub trust: ConsortiumTrust,
}

/// The consortium CA's key: verifies node certificates and, through them, signed statements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsortiumTrust {
    ca_key: Vec<u8>,
}

impl ConsortiumTrust {
    /// Trust in the CA whose certificate (DER) is given.
    pub fn from_ca_certificate(der: &[u8]) -> Result<Self, EndorsementError> {
        let (_, ca) = X509Certificate::from_der(der)
            .map_err(|_| EndorsementError::BadCa("not a DER X.509 certificate".into()))?;
        if ca.public_key().algorithm.algorithm.to_id_string() != ED25519_OID {
            return Err(EndorsementError::BadCa("its key is not Ed25519".into()));
        }
        ca.verify_signature(None)
            .map_err(|_| EndorsementError::BadCa("its self-signature does not verify".into()))?;
        Ok(Self {
            ca_key: ca.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// The Ed25519 public key of node `signer`'s certificate (DER), after checking that the CA
    /// issued it and that it names exactly `signer`.
    pub fn certified_key(
        &self,
        signer: &str,
        certificate: &[u8],
    ) -> Result<Vec<u8>, EndorsementError> {
        if certificate.len() > MAX_CERTIFICATE_BYTES {
            return Err(EndorsementError::TooLarge {
                signer: signer.to_owned(),
                len: certificate.len(),
            });
        }
        let (_, cert) =
            X509Certificate::from_der(certificate).map_err(|_| EndorsementError::Unparsable {
                signer: signer.to_owned(),
            })?;
        if cert.signature_algorithm.algorithm.to_id_string() != ED25519_OID
            || UnparsedPublicKey::new(&ED25519, &self.ca_key)
                .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
                .is_err()
        {
            return Err(EndorsementError::NotIssuedByCa {
                signer: signer.to_owned(),
            });
        }
        let (named, public) = read_certificate(signer, certificate)?;
        if named.as_slice() != [signer.to_owned()] {
            return Err(EndorsementError::WrongName {
                signer: signer.to_owned(),
                named,
            });
        }
        Ok(public)
    }

    /// Checks a signed statement: the certificate was issued by the CA and names exactly the
    /// claimed signer, and the signature verifies under the certificate's key.
    pub fn verify<'a, T: Statement>(
        &self,
        signed: &'a Signed<T>,
    ) -> Result<&'a T, EndorsementError> {
        let signer = signed.signer.as_str();
        let public = self.certified_key(signer, &signed.certificate)?;
        let message = signing_message(&signed.signer, &signed.statement);
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(&message.0, &signed.signature)
            .map_err(|_| EndorsementError::BadSignature {
                kind: T::KIND,
                signer: signer.to_owned(),
            })?;
        Ok(&signed.statement)
    }
}

/// The DNS subject-alternative names of a parsed certificate (a node certificate has exactly
/// one: the node id); `None` when the extension cannot be read.
pub fn dns_names(cert: &X509Certificate<'_>) -> Option<Vec<String>> {
    let names = cert.subject_alternative_name().ok()?.map(|ext| {
        ext.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some((*d).to_owned()),
                _ => None,
            })
            .collect()
    });
    Some(names.unwrap_or_default())
}

/// The DNS names and the Ed25519 public key of a certificate.
fn read_certificate(signer: &str, der: &[u8]) -> Result<(Vec<String>, Vec<u8>), EndorsementError> {
    let unparsable = || EndorsementError::Unparsable {
        signer: signer.to_owned(),
    };
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| unparsable())?;
    let names = dns_names(&cert).ok_or_else(unparsable)?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm.to_id_string() != ED25519_OID {
        return Err(EndorsementError::NotEd25519 {
            signer: signer.to_owned(),
        });
    }
    Ok((names, spki.subject_public_key.data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ED25519};

    struct Note(u32);
    impl Statement for Note {
        const KIND: &'static str = "note";
        fn digest(&self) -> Digest {
            Digest::builder("note")
                .bytes(&self.0.to_le_bytes())
                .finish()
        }
    }
    impl Clone for Note {
        fn clone(&self) -> Self {
            Note(self.0)
        }
    }

    fn ca() -> (Issuer<'static, KeyPair>, Vec<u8>) {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (Issuer::new(params, key), cert.der().to_vec())
    }

    fn node(issuer: &Issuer<'static, KeyPair>, name: &str) -> (Vec<u8>, Vec<u8>) {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, issuer)
            .unwrap();
        (key.serialize_der(), cert.der().to_vec())
    }

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn a_statement_verifies_and_every_change_is_caught() {
        let (issuer, ca_der) = ca();
        let trust = ConsortiumTrust::from_ca_certificate(&ca_der).unwrap();
        let (key, cert) = node(&issuer, "bank");
        let signer = NodeSigner::new(id("bank"), &key, cert.clone()).unwrap();
        let signed = signer.sign(Note(7));
        assert_eq!(trust.verify(&signed).unwrap().0, 7);

        let mut changed = signed.clone();
        changed.statement = Note(8);
        assert!(matches!(
            trust.verify(&changed),
            Err(EndorsementError::BadSignature { .. })
        ));

        // Claiming another signer with the same certificate.
        let mut renamed = signed.clone();
        renamed.signer = id("insurer");
        assert!(matches!(
            trust.verify(&renamed),
            Err(EndorsementError::WrongName { .. })
        ));

        // A certificate from another CA, even naming the right node.
        let (other_issuer, _) = ca();
        let (other_key, other_cert) = node(&other_issuer, "bank");
        let forged = NodeSigner::new(id("bank"), &other_key, other_cert)
            .unwrap()
            .sign(Note(7));
        assert!(matches!(
            trust.verify(&forged),
            Err(EndorsementError::NotIssuedByCa { .. })
        ));

        // Garbage certificates are refused, never a panic.
        let mut garbage = signed.clone();
        garbage.certificate = vec![0x30, 0x03, 1, 2, 3];
        assert!(trust.verify(&garbage).is_err());
    }

    #[test]
    fn a_node_key_must_belong_to_its_certificate_and_name() {
        let (issuer, _) = ca();
        let (key, cert) = node(&issuer, "bank");
        let (other_key, _) = node(&issuer, "insurer");
        let err = NodeSigner::new(id("insurer"), &key, cert.clone()).unwrap_err();
        assert!(err.to_string().contains("configured as insurer"), "{err}");
        let err = NodeSigner::new(id("bank"), &other_key, cert).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }
}
