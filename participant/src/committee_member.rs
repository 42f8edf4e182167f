//! A key-committee member: key share, policy record, partial decryptions.
//!
//! A member that crashes must be able to serve its job again when it restarts, and must not be
//! talked into decrypting a slot twice under different manifests because it forgot the first.
//! [`MemberFiles`] is where a member keeps both across restarts: its secret share (owner-only)
//! and its record of decrypted slots. The node writes the share before its public share leaves
//! and the record before each partial decryption leaves (see `ParticipantOutput::SaveMember`), so what
//! is on disk is never behind what the coordinator has seen.

use fedbank_common::committee::{DecryptionRequest, EvidenceError, PartialDecryption};
use fedbank_common::digest::Digest;
use fedbank_common::endorsement::ConsortiumTrust;
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::policy::{self, Approval, JobMandate, MemberRecord, PolicyRefusal};
use fedbank_common::secagg::{
    CryptoError, KeyError, KeySetup, PartialDecryptor, PublicKeyShare, RingScalar,
    SchemeParameters, SecretKeyShare,
};
use fedbank_common::storage::{self, StorageError};
use std::path::{Path, PathBuf};

/// Where a member keeps its state for one job: `<dir>/<job>.key-share` (secret, owner-only) and
/// `<dir>/<job>.member-record`.
#[derive(Debug, Clone)]
pub struct MemberFiles {
    /// The secret key share.
    pub share: PathBuf,
    /// The record of mandates and decrypted slots.
    pub record: PathBuf,
}

impl MemberFiles {
    /// The files for `job` in `dir`.
    pub fn in_dir(dir: &Path, job: &JobId) -> Self {
        Self {
            share: dir.join(format!("{job}.key-share")),
            record: dir.join(format!("{job}.member-record")),
        }
    }
}

/// Why a member could not serve a request or load its state.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The policy refused the request.
    #[error(transparent)]
    Refused(#[from] PolicyRefusal),
    /// The request's evidence (signed statements, masks, their sum) did not check out.
    #[error("refused: {0}")]
    Evidence(#[from] EvidenceError),
    /// The request was malformed or did not fit the key.
    #[error("decryption request rejected")]
    Crypto(#[from] CryptoError),
    /// The key share could not be made.
    #[error("key share")]
    Key(#[from] KeyError),
    /// The key share could not be stored or loaded.
    #[error("key share storage")]
    Storage(#[from] StorageError),
    /// The stored share does not fit the expected setup.
    #[error("stored key share is for job {found_job} epoch {found_epoch}, member {found_member}; expected job {job} epoch {epoch}, member {member}")]
    WrongShare {
        /// Expected job.
        job: String,
        /// Expected epoch.
        epoch: u32,
        /// Expected member.
        member: NodeId,
        /// Job of the stored share.
        found_job: String,
        /// Epoch of the stored share.
        found_epoch: u32,
        /// Member of the stored share.
        found_member: NodeId,
    },
    /// The saved record does not belong to the saved share's job mandate.
    #[error("{path}: the saved member record is for another job mandate than the saved key share")]
    RecordMismatch {
        /// The record file.
        path: PathBuf,
    },
}

/// The terms of a job a member serves, from the job file it agreed to.
#[derive(Clone, Debug)]
pub struct MemberTerms {
    /// Fewest distinct contributors an aggregate must have.
    pub min_participants: usize,
    /// The job's enrolled participants.
    pub participants: Vec<NodeId>,
    /// Digest of the job file.
    pub job_digest: Digest,
    /// The consortium CA, to check contributors' signed statements.
    pub trust: ConsortiumTrust,
}

impl MemberTerms {
    /// The terms of `job`, checked against `trust`.
    pub fn of(job: &fedbank_common::job::ValidJob, trust: ConsortiumTrust) -> Self {
        Self {
            min_participants: job.spec().min_participants,
            participants: job.spec().participants.clone(),
            job_digest: job.digest(),
            trust,
        }
    }
}

/// A committee member for one job and key epoch.
pub struct CommitteeMember<S: RingScalar> {
    share: SecretKeyShare<S>,
    decryptor: PartialDecryptor<S>,
    record: MemberRecord,
    trust: ConsortiumTrust,
}

impl<S: RingScalar> CommitteeMember<S> {
    /// Samples a new key share for `setup` and takes the job's mandate.
    pub fn generate(
        setup: &KeySetup,
        member: &NodeId,
        params: SchemeParameters,
        terms: &MemberTerms,
    ) -> Result<Self, MemberError> {
        let share = SecretKeyShare::generate(setup, member)?;
        Self::from_share(share, params, terms)
    }

    /// Loads a share saved with [`CommitteeMember::save_share`]; refuses a file others can read
    /// and a share for another job, epoch or member.
    pub fn load(
        path: &Path,
        setup: &KeySetup,
        member: &NodeId,
        params: SchemeParameters,
        terms: &MemberTerms,
    ) -> Result<Self, MemberError> {
        let share: SecretKeyShare<S> = storage::load(path, true)?;
        if share.setup() != setup || share.member() != member {
            return Err(MemberError::WrongShare {
                job: setup.job.to_string(),
                epoch: setup.key_epoch,
                member: member.clone(),
                found_job: share.setup().job.to_string(),
                found_epoch: share.setup().key_epoch,
                found_member: share.member().clone(),
            });
        }
        Self::from_share(share, params, terms)
    }

    /// The member saved in `files` for `job`, if a share was saved: the share must be this
    /// member's for this job (any key epoch: the coordinator's key setup says which one is
    /// current), and the record's slots are taken over so that none is decrypted twice under
    /// another manifest. `Ok(None)` when no share was ever saved.
    pub fn restore(
        files: &MemberFiles,
        (job, member): (&JobId, &NodeId),
        params: SchemeParameters,
        terms: &MemberTerms,
    ) -> Result<Option<Self>, MemberError> {
        if !files.share.exists() {
            return Ok(None);
        }
        let share: SecretKeyShare<S> = storage::load(&files.share, true)?;
        if &share.setup().job != job || share.member() != member {
            return Err(MemberError::WrongShare {
                job: job.to_string(),
                epoch: share.setup().key_epoch,
                member: member.clone(),
                found_job: share.setup().job.to_string(),
                found_epoch: share.setup().key_epoch,
                found_member: share.member().clone(),
            });
        }
        let mut restored = Self::from_share(share, params, terms)?;
        if files.record.exists() {
            let record: MemberRecord = storage::load(&files.record, false)?;
            // The record is the share's, or one of an earlier key epoch of the same job under
            // the same terms (the node stopped between saving a new epoch's share and its
            // record): either way its slots are taken over.
            let same_terms = match (record.mandates.get(job), restored.record.mandates.get(job)) {
                (Some(kept), Some(now)) => {
                    kept.key_epoch <= now.key_epoch
                        && JobMandate {
                            key_epoch: now.key_epoch,
                            ..kept.clone()
                        } == *now
                }
                _ => false,
            };
            if !same_terms {
                return Err(MemberError::RecordMismatch {
                    path: files.record.clone(),
                });
            }
            restored.carry_over(record);
        }
        Ok(Some(restored))
    }

    /// Takes over what `earlier` decrypted — its slots, contributions and computations, of this
    /// key epoch or an earlier one of the same job — so that no slot is decrypted under another
    /// manifest, no contribution used twice and no computation decrypted over another contributor
    /// set in a later epoch either (docs/threat-model.md §5, rules 5–7).
    pub fn carry_over(&mut self, earlier: MemberRecord) {
        self.record.decrypted.extend(earlier.decrypted);
        self.record.contributions.extend(earlier.contributions);
        self.record.computations.extend(earlier.computations);
    }

    /// Wraps an existing share (for example one kept in a test's key cache).
    pub fn from_share(
        share: SecretKeyShare<S>,
        params: SchemeParameters,
        terms: &MemberTerms,
    ) -> Result<Self, MemberError> {
        let decryptor = PartialDecryptor::new(&share, params)?;
        let mut record = MemberRecord::default();
        let setup = share.setup();
        record.mandates.insert(
            setup.job.clone(),
            JobMandate {
                key_epoch: setup.key_epoch,
                profile: setup.profile,
                min_participants: terms.min_participants,
                participants: terms.participants.clone(),
                job_digest: terms.job_digest,
            },
        );
        Ok(Self {
            share,
            decryptor,
            record,
            trust: terms.trust.clone(),
        })
    }

    /// Writes the secret share to `path` with owner-only permissions.
    pub fn save_share(&self, path: &Path) -> Result<(), MemberError> {
        Ok(storage::save(path, &self.share, true)?)
    }

    /// A copy of the secret share, for the node to keep on disk (see [`MemberFiles`]).
    pub fn secret_share(&self) -> Box<SecretKeyShare<S>> {
        Box::new(self.share.clone())
    }

    /// The public-key share to send to the coordinator.
    pub fn public_share(&self) -> PublicKeyShare<S> {
        self.share.public_share()
    }

    /// This member's id.
    pub fn id(&self) -> &NodeId {
        self.share.member()
    }

    /// The member's record of mandates and decrypted slots.
    pub fn record(&self) -> &MemberRecord {
        &self.record
    }

    /// Checks a request's evidence and the policy and, if allowed, returns the partial
    /// decryption of the member's own sum of the signed masks and records the slot, the
    /// contributions and the computations. A refused or malformed request changes nothing.
    pub fn handle(
        &mut self,
        request: &DecryptionRequest<S>,
    ) -> Result<PartialDecryption<S>, MemberError> {
        request.validate()?;
        // The cheap checks first (mandate, contributor list, slot), then the evidence, then the
        // policy with what the evidence says was used.
        policy::check(&self.record, &request.manifest, &[])?;
        let mandate = self
            .record
            .mandates
            .get(&request.manifest.job)
            .ok_or_else(|| PolicyRefusal::UnknownJob {
                job: request.manifest.job.clone(),
            })?;
        let verified = request.verify(&self.trust, &mandate.participants, mandate.job_digest)?;
        let approval = policy::check(&self.record, &request.manifest, &verified.uses)?;
        let manifest_digest = match &approval {
            Approval::First { manifest, .. } | Approval::Repeat { manifest, .. } => *manifest,
        };
        let values = self.decryptor.partial_decrypt(
            &verified.summed_masks,
            request.manifest.value_count as usize,
            &manifest_digest,
        )?;
        self.record
            .record(&approval, &request.manifest, &verified.uses);
        tracing::info!(
            member = %self.id(),
            job = %request.manifest.job,
            round = request.manifest.round,
            quantity = %request.manifest.quantity,
            contributors = request.manifest.contributors.len(),
            manifest = %manifest_digest,
            repeat = matches!(approval, Approval::Repeat { .. }),
            "partial decryption released"
        );
        Ok(PartialDecryption {
            member: self.id().clone(),
            manifest_digest,
            values,
        })
    }
}
