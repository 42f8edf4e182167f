//! The key ceremony as a participant and committee member sees it (docs/threat-model.md §4):
//! a member commits to its public-key share, reveals it signed only against a commitment set
//! holding every member's signed commitment, and every participant forms the joint key itself
//! from a transcript it checked, and never replaces it but by the key of a later key epoch.

use super::{NodeViolation, ParticipantMachine, ParticipantOutbound, ParticipantOutput};
use crate::committee_member::CommitteeMember;
use fedbank_common::audit::events as trail;
use fedbank_common::key_ceremony::{
    CommitmentSet, KeyBundle, RevealedShare, ShareCommitment, ShareReveal,
};
use fedbank_common::secagg::{JointPublicKey, KeySetup, RingScalar};

impl<S: RingScalar> ParticipantMachine<S> {
    fn expected_setup(&self, setup: &KeySetup) -> Result<(), NodeViolation> {
        let spec = self.job.spec();
        if setup.job != spec.job
            || setup.profile != spec.profile
            || setup.committee != spec.committee
        {
            return Err(NodeViolation::WrongJob {
                message: "key setup",
                what: format!(
                    "job {} profile {} committee {:?}",
                    setup.job, setup.profile, setup.committee
                ),
            });
        }
        Ok(())
    }

    pub(super) fn on_key_setup(&mut self, setup: KeySetup) -> Result<(), NodeViolation> {
        self.expected_setup(&setup)?;
        if !setup.committee.contains(&self.id) {
            return Err(NodeViolation::NotAMember("KeySetup"));
        }
        let member = match &self.member {
            // A repeated setup for the same epoch (after a reconnect) gets the same share.
            Some(m) if m.public_share().setup() == &setup => m,
            // Another setup of an epoch this member holds (a coordinator restarted without its
            // checkpoint, or one that deviates): refused, whatever it changes.
            Some(m) if m.public_share().setup().key_epoch >= setup.key_epoch => {
                return Err(NodeViolation::SecondKeySetup {
                    job: setup.job.to_string(),
                    epoch: setup.key_epoch,
                    held: m.public_share().setup().digest().to_hex(),
                });
            }
            // A later epoch (opened by the operator after the coordinator lost its checkpoint),
            // or the first: a fresh share, which takes over what earlier epochs decrypted.
            _ => {
                let mut m = CommitteeMember::generate(
                    &setup,
                    &self.id,
                    self.job.params().clone(),
                    &crate::MemberTerms::of(&self.job, self.trust.clone()),
                )?;
                if let Some(earlier) = &self.member {
                    m.carry_over(earlier.record().clone());
                }
                self.outputs.push_back(ParticipantOutput::SaveMember {
                    share: Some(m.secret_share()),
                    record: m.record().clone(),
                });
                self.member = Some(m);
                self.member
                    .as_ref()
                    .ok_or(NodeViolation::NotAMember("KeySetup"))?
            }
        };
        let share = member.public_share().digest();
        let commitment = self.signer.sign(ShareCommitment {
            setup: setup.digest(),
            member: self.id.clone(),
            share,
        });
        self.audit(trail::KeySetup::CommitmentSent {
            job: setup.job.clone(),
            key_epoch: setup.key_epoch,
            setup_digest: setup.digest().to_hex(),
            share_digest: share.to_hex(),
        });
        self.send(ParticipantOutbound::Commitment(commitment));
        Ok(())
    }

    /// A member reveals its share only once it holds every member's signed commitment, so no
    /// member can choose its share after seeing another's (a rogue key).
    pub(super) fn on_commitments(&mut self, set: CommitmentSet) -> Result<(), NodeViolation> {
        self.expected_setup(&set.setup)?;
        let Some(member) = &self.member else {
            return Err(NodeViolation::NotAMember("CommitmentSet"));
        };
        let public = member.public_share();
        if public.setup() != &set.setup {
            return Err(NodeViolation::WrongJob {
                message: "CommitmentSet",
                what: format!(
                    "key epoch {} (this member's share is for another setup)",
                    set.setup.key_epoch
                ),
            });
        }
        set.verify(&self.trust)?;
        let share = public.digest();
        if set.committed_share(&self.id) != Some(share) {
            return Err(NodeViolation::NotMyCommitment);
        }
        let set_digest = set.digest();
        let reveal = self.signer.sign(ShareReveal {
            setup: set.setup.digest(),
            member: self.id.clone(),
            share,
            commitments: set_digest,
        });
        self.audit(trail::KeySetup::ShareRevealed {
            job: set.setup.job.clone(),
            key_epoch: set.setup.key_epoch,
            commitments_digest: set_digest.to_hex(),
            share_digest: share.to_hex(),
        });
        self.send(ParticipantOutbound::KeyShare(RevealedShare {
            share: public,
            reveal,
        }));
        Ok(())
    }

    /// The joint key is formed here, from shares this node checked itself; the coordinator's
    /// word counts for nothing. Once accepted, the key is never replaced, except by the key of a
    /// later epoch (the operator opened it after the coordinator lost its checkpoint).
    pub(super) fn on_key_bundle(&mut self, bundle: KeyBundle<S>) -> Result<(), NodeViolation> {
        self.expected_setup(bundle.setup())?;
        let key: JointPublicKey<S> = bundle.verify(&self.trust)?;
        let digest = key.digest();
        if let Some(held) = &self.key {
            if held.digest() == digest {
                return Ok(());
            }
            // Only the key of a later epoch follows: the committee set it up once, for an epoch
            // the operator opened, and its members still refuse anything decrypted before over
            // another contributor set. Another key of the same epoch, or of an earlier one, is
            // a coordinator trying to swap keys.
            if held.setup().key_epoch >= bundle.setup().key_epoch {
                return Err(NodeViolation::KeyReplaced {
                    job: self.job.spec().job.to_string(),
                    accepted: held.digest(),
                    got: digest,
                });
            }
        }
        self.audit(trail::KeyAccepted {
            job: bundle.setup().job.clone(),
            key_epoch: bundle.setup().key_epoch,
            setup_digest: bundle.setup().digest().to_hex(),
            commitments_digest: bundle.commitments.digest().to_hex(),
            shares: bundle
                .shares
                .iter()
                .map(|s| trail::ShareDigest {
                    member: s.share.member().clone(),
                    digest: s.share.digest().to_hex(),
                })
                .collect(),
            joint_key_digest: digest.to_hex(),
        });
        self.key = Some(key);
        Ok(())
    }
}
