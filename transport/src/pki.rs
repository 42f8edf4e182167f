//! The consortium's development PKI: one CA, one certificate per node, with the node id as the
//! certificate's only DNS subject-alternative name. Keys are Ed25519 (usable both for TLS 1.3
//! and for signing the node's audit trail) and written owner-only.
//!
//! ```text
//!   <dir>/ca.pem  <dir>/ca.key            consortium CA (keep the key offline in production)
//!   <dir>/<id>.pem  <dir>/<id>.key        per node: certificate and PKCS#8 key
//! ```

use fedbank_common::endorsement::{ConsortiumTrust, Credentials, EndorsementError, NodeSigner};
use fedbank_common::ids::NodeId;
use fedbank_common::storage::{self, StorageError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("generating {what}")]
    Generate {
        /// What was being generated.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A file could not be written or read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A PEM file could not be parsed.
    #[error("{path}: not a valid PEM {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// The CA exists already; `certs init` never overwrites a consortium CA.
    #[error(
        "{0} already exists; remove the directory or choose another --out to make a new consortium"
    )]
    CaExists(PathBuf),
}

/// Default validity of development certificates.
pub const DEFAULT_VALIDITY_DAYS: i64 = 365;

/// Paths of a node's credentials in a certificate directory.
pub struct CredentialPaths {
    /// The consortium CA certificate.
    pub ca: PathBuf,
    /// The node's certificate.
    pub cert: PathBuf,
    /// The node's private key.
    pub key: PathBuf,
}

impl CredentialPaths {
    /// Where `certs init` puts the credentials of `id` in `dir`.
    pub fn in_dir(dir: &Path, id: &NodeId) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{id}.pem")),
            key: dir.join(format!("{id}.key")),
        }
    }
}

fn generate(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Generate { what, source }
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(generate("CA parameters"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "fedbank consortium CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(10 * 365);
    Ok(params)
}

/// The consortium CA, able to issue node certificates.
pub struct ConsortiumCa {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

impl ConsortiumCa {
    /// Creates a new CA in `dir` (which is created); refuses if a CA is already there.
    pub fn create(dir: &Path) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            action: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        let ca_pem = dir.join("ca.pem");
        if ca_pem.exists() {
            return Err(PkiError::CaExists(ca_pem));
        }
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(generate("CA key"))?;
        let params = ca_params()?;
        let cert = params
            .self_signed(&key)
            .map_err(generate("CA certificate"))?;
        storage::write_atomic(&dir.join("ca.key"), key.serialize_pem().as_bytes(), true)?;
        storage::write_atomic(&ca_pem, cert.pem().as_bytes(), false)?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
        })
    }

    /// Loads the CA from `dir` to issue more certificates.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let key_path = dir.join("ca.key");
        storage::check_secret_permissions(&key_path)?;
        let key_pem = storage::read_limited(&key_path, 64 * 1024)?;
        let key =
            KeyPair::from_pem(&String::from_utf8_lossy(&key_pem)).map_err(|_| PkiError::Pem {
                path: key_path.clone(),
                what: "private key",
            })?;
        let cert_path = dir.join("ca.pem");
        let cert_pem = storage::read_limited(&cert_path, 64 * 1024)?;
        let issuer =
            Issuer::from_ca_cert_pem(&String::from_utf8_lossy(&cert_pem), key).map_err(|_| {
                PkiError::Pem {
                    path: cert_path,
                    what: "CA certificate",
                }
            })?;
        Ok(Self {
            issuer,
            dir: dir.to_path_buf(),
        })
    }

    /// Issues a certificate for `id`, valid from `not_before` to `not_after`, and writes it with
    /// its key into the CA's directory.
    pub fn issue_with_validity(
        &self,
        id: &NodeId,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<CredentialPaths, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(generate(format!("key of {id}")))?;
        let mut params = CertificateParams::new(vec![id.to_string()])
            .map_err(generate(format!("parameters of {id}")))?;
        params
            .distinguished_name
            .push(DnType::CommonName, id.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate(format!("certificate of {id}")))?;
        let paths = CredentialPaths::in_dir(&self.dir, id);
        storage::write_atomic(&paths.key, key.serialize_pem().as_bytes(), true)?;
        storage::write_atomic(&paths.cert, cert.pem().as_bytes(), false)?;
        Ok(paths)
    }

    /// Issues a certificate for `id` valid for `days` days from now.
    pub fn issue(&self, id: &NodeId, days: i64) -> Result<CredentialPaths, PkiError> {
        let now = OffsetDateTime::now_utc();
        self.issue_with_validity(id, now - Duration::hours(1), now + Duration::days(days))
    }
}

/// Reads one PEM certificate (at most 64 KiB) as DER.
pub fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    let bytes = storage::read_limited(path, 64 * 1024)?;
    CertificateDer::from_pem_slice(&bytes).map_err(|_| PkiError::Pem {
        path: path.to_path_buf(),
        what: "certificate",
    })
}

/// A node's loaded credentials: its certificate, key, and the consortium CA it trusts.
pub struct NodeCredentials {
    /// The node's certificate.
    pub cert: CertificateDer<'static>,
    /// The node's key (PKCS#8).
    pub key: PrivatePkcs8KeyDer<'static>,
    /// The consortium CA certificate.
    pub ca: CertificateDer<'static>,
}

impl NodeCredentials {
    /// Reads the credentials; the key file must be owner-only.
    pub fn load(paths: &CredentialPaths) -> Result<Self, PkiError> {
        storage::check_secret_permissions(&paths.key)?;
        let key_bytes = storage::read_limited(&paths.key, 64 * 1024)?;
        let key = match PrivateKeyDer::from_pem_slice(&key_bytes) {
            Ok(PrivateKeyDer::Pkcs8(k)) => k,
            _ => {
                return Err(PkiError::Pem {
                    path: paths.key.clone(),
                    what: "PKCS#8 private key",
                })
            }
        };
        Ok(Self {
            cert: read_certificate(&paths.cert)?,
            key,
            ca: read_certificate(&paths.ca)?,
        })
    }

    /// The key's PKCS#8 bytes, for the audit-trail signing identity.
    pub fn pkcs8(&self) -> &[u8] {
        self.key.secret_pkcs8_der()
    }

    /// The node's statement signer: refuses a certificate that names another node than `id`
    /// or a key that is not the certificate's, saying which is which.
    pub fn signer(&self, id: &NodeId) -> Result<NodeSigner, EndorsementError> {
        NodeSigner::new(id.clone(), self.pkcs8(), self.cert.to_vec())
    }

    /// The consortium CA, to check other nodes' signed statements.
    pub fn trust(&self) -> Result<ConsortiumTrust, EndorsementError> {
        ConsortiumTrust::from_ca_certificate(&self.ca)
    }

    /// Signer and trust together, as a participant machine takes them.
    pub fn consortium(&self, id: &NodeId) -> Result<Credentials, EndorsementError> {
        Ok(Credentials {
            signer: self.signer(id)?,
            trust: self.trust()?,
        })
    }
}
