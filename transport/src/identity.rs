//! The node id bound to a certificate: its single DNS subject-alternative name.

use fedbank_common::endorsement::dns_names;
use fedbank_common::ids::{IdError, NodeId};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why no node id could be read from a certificate.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("the peer's certificate could not be parsed")]
    Unparsable,
    /// The certificate does not name exactly one node.
    #[error("the peer's certificate names {0} DNS identities; a fedbank node certificate names exactly one")]
    NotOneName(usize),
    /// The name is not a valid node id.
    #[error("the peer's certificate names an invalid node id")]
    BadId(#[from] IdError),
}

/// The node id of a (verified) certificate.
pub fn node_id(cert: &CertificateDer<'_>) -> Result<NodeId, IdentityError> {
    let (_, parsed) =
        X509Certificate::from_der(cert.as_ref()).map_err(|_| IdentityError::Unparsable)?;
    let names = dns_names(&parsed).ok_or(IdentityError::Unparsable)?;
    match names.as_slice() {
        [one] => Ok(NodeId::new(one.clone())?),
        other => Err(IdentityError::NotOneName(other.len())),
    }
}
