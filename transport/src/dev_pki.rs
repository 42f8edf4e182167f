//! A consortium PKI held in memory: a CA and one Ed25519 certificate per node, as
//! [`crate::pki::ConsortiumCa`] makes them on disk, for the in-memory drives of the protocol,
//! tests and fuzzing. It writes nothing and is not for production: its CA key lives only as
//! long as the value.

use fedbank_common::endorsement::{ConsortiumTrust, Credentials, EndorsementError, NodeSigner};
use fedbank_common::ids::NodeId;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ED25519};
use std::collections::BTreeMap;

/// Why the in-memory PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevPkiError {
    /// rcgen failed.
    #[error("generating {0}")]
    Generate(String),
    /// A node's credentials do not check out.
    #[error(transparent)]
    Endorsement(#[from] EndorsementError),
    /// A node that was not issued a certificate.
    #[error("no certificate was issued to {0}")]
    Unknown(NodeId),
}

/// A CA and the keys and certificates of the nodes it issued.
pub struct DevConsortium {
    issuer: Issuer<'static, KeyPair>,
    ca: Vec<u8>,
    nodes: BTreeMap<NodeId, (Vec<u8>, Vec<u8>)>,
}

impl DevConsortium {
    /// A new CA with a certificate for each of `nodes`.
    pub fn new<'a>(nodes: impl IntoIterator<Item = &'a NodeId>) -> Result<Self, DevPkiError> {
        let fail = |what: &str| {
            let what = what.to_owned();
            move |e: rcgen::Error| DevPkiError::Generate(format!("{what}: {e}"))
        };
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(fail("CA key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(fail("CA parameters"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).map_err(fail("CA certificate"))?;
        let mut consortium = Self {
            issuer: Issuer::new(params, key),
            ca: cert.der().to_vec(),
            nodes: BTreeMap::new(),
        };
        for node in nodes {
            consortium.issue(node)?;
        }
        Ok(consortium)
    }

    /// Issues (or re-issues) a certificate for `node`.
    pub fn issue(&mut self, node: &NodeId) -> Result<(), DevPkiError> {
        let fail = |e: rcgen::Error| DevPkiError::Generate(format!("certificate of {node}: {e}"));
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(fail)?;
        let cert = CertificateParams::new(vec![node.to_string()])
            .map_err(fail)?
            .signed_by(&key, &self.issuer)
            .map_err(fail)?;
        self.nodes
            .insert(node.clone(), (key.serialize_der(), cert.der().to_vec()));
        Ok(())
    }

    /// The CA certificate, DER.
    pub fn ca_certificate(&self) -> &[u8] {
        &self.ca
    }

    /// Trust in this CA.
    pub fn trust(&self) -> ConsortiumTrust {
        // The CA was made here, with an Ed25519 key and a valid self-signature.
        ConsortiumTrust::from_ca_certificate(&self.ca)
            .unwrap_or_else(|e| unreachable!("the in-memory CA is valid: {e}"))
    }

    /// The signer of `node`.
    pub fn signer(&self, node: &NodeId) -> Result<NodeSigner, DevPkiError> {
        let (key, cert) = self
            .nodes
            .get(node)
            .ok_or_else(|| DevPkiError::Unknown(node.clone()))?;
        Ok(NodeSigner::new(node.clone(), key, cert.clone())?)
    }

    /// Signer and trust of `node`, as a participant machine takes them.
    pub fn credentials(&self, node: &NodeId) -> Result<Credentials, DevPkiError> {
        Ok(Credentials {
            signer: self.signer(node)?,
            trust: self.trust(),
        })
    }

    /// The private key (PKCS#8) and certificate (DER) of `node`.
    pub fn key_and_certificate(&self, node: &NodeId) -> Option<(&[u8], &[u8])> {
        self.nodes
            .get(node)
            .map(|(k, c)| (k.as_slice(), c.as_slice()))
    }
}

/// One in-memory consortium per process, for simulations and tests that drive several nodes'
/// machines in one process: every node id is issued a certificate on first use, and keeps it.
fn shared() -> &'static std::sync::Mutex<DevConsortium> {
    static SHARED: std::sync::OnceLock<std::sync::Mutex<DevConsortium>> =
        std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        std::sync::Mutex::new(
            DevConsortium::new(std::iter::empty())
                .unwrap_or_else(|e| unreachable!("an empty in-memory CA can be made: {e}")),
        )
    })
}

/// Credentials of `node` in the process's shared in-memory consortium (issued on first use).
pub fn shared_credentials(node: &NodeId) -> Result<Credentials, DevPkiError> {
    let mut consortium = shared()
        .lock()
        .map_err(|_| DevPkiError::Generate("the shared consortium's lock was poisoned".into()))?;
    if consortium.key_and_certificate(node).is_none() {
        consortium.issue(node)?;
    }
    consortium.credentials(node)
}

/// Trust in the process's shared in-memory consortium.
pub fn shared_trust() -> ConsortiumTrust {
    match shared().lock() {
        Ok(c) => c.trust(),
        Err(poisoned) => poisoned.into_inner().trust(),
    }
}
