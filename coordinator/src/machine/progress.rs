//! What the coordinator tells its operator as the job goes: one typed event per notable step
//! ([`CoordinatorProgress`]), which the shell renders (its `Display` is the line an operator
//! reads) and tests can match on. The trail, not this, is the evidence.

use super::JobFailure;
use fedbank_common::ids::NodeId;
use std::fmt;

/// A notable step of the coordinator's job.
#[derive(Clone, Debug, PartialEq)]
pub enum CoordinatorProgress {
    /// A node said Hello and was admitted.
    Joined {
        /// The node.
        node: NodeId,
        /// Whether it sits on the key committee.
        member: bool,
    },
    /// The key ceremony started.
    KeySetup {
        /// The committee.
        committee: Vec<NodeId>,
    },
    /// A job resumed from its checkpoint.
    Resumed {
        /// Job id.
        job: String,
        /// Rounds completed before the restart.
        completed: usize,
        /// The round that comes next.
        next_round: u32,
    },
    /// A round (or a retry of it) was asked for.
    RoundStarted {
        /// Round.
        round: u32,
        /// Its quantity label.
        label: &'static str,
        /// Attempt.
        attempt: u32,
        /// Participants asked.
        asked: usize,
    },
    /// A participant committed to its contribution.
    Committed {
        /// Round.
        round: u32,
        /// The participant.
        from: NodeId,
    },
    /// The roster of a round was fixed.
    RosterFixed {
        /// Round.
        round: u32,
        /// Commitments listed.
        commitments: usize,
    },
    /// A participant's ciphertext arrived.
    Contributed {
        /// Round.
        round: u32,
        /// The participant.
        from: NodeId,
    },
    /// A participant said it cannot contribute.
    CannotContribute {
        /// Round.
        round: u32,
        /// The participant.
        from: NodeId,
        /// Its reason.
        reason: String,
    },
    /// A node refused one of the coordinator's messages and said so (its words, on one
    /// printable line).
    RefusedByNode {
        /// The node.
        node: NodeId,
        /// Its reason.
        reason: String,
    },
    /// A participant disconnected before contributing.
    LeftBeforeContributing {
        /// Round.
        round: u32,
        /// The participant.
        node: NodeId,
    },
    /// The committee was asked to decrypt a round's aggregate.
    Decrypting {
        /// Round.
        round: u32,
        /// Contributions in the aggregate.
        contributions: usize,
    },
    /// Too few contributors: the round runs again.
    TooFewContributors {
        /// Round.
        round: u32,
        /// Contributors.
        got: usize,
        /// Fewest allowed.
        min: usize,
    },
    /// Committee members went away during a decryption: nothing released, the round runs again
    /// under a new number once the committee is back.
    DecryptionLost {
        /// Round.
        round: u32,
        /// The members that went away.
        members: Vec<NodeId>,
        /// The round number it runs again as.
        rerun_as: u32,
        /// This retry.
        retry: u32,
        /// Retries allowed.
        max_retries: u32,
    },
    /// The auditor's alert keys were accepted.
    AlertKeysAccepted {
        /// The auditor.
        auditor: NodeId,
        /// Bytes of its server key.
        server_key_bytes: usize,
    },
    /// Contributors were asked for their rates under the auditor's key.
    AlertsAsked {
        /// Round.
        round: u32,
        /// Contributors asked.
        asked: usize,
    },
    /// A contributor's encrypted rates were compared with the limits.
    RatesCompared {
        /// Round.
        round: u32,
        /// The contributor.
        from: NodeId,
        /// Limits compared.
        limits: usize,
        /// Seconds the comparison took.
        seconds: f64,
    },
    /// A contributor is no longer waited for in the alert step.
    AlertDropped {
        /// Round.
        round: u32,
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The over-limit bits were added; the auditor is asked to decrypt the counts.
    AlertsTallied {
        /// Round.
        round: u32,
        /// Contributors in the tally.
        contributors: usize,
        /// Seconds the additions took.
        seconds: f64,
        /// Counts to decrypt (one per rule).
        counts: usize,
    },
    /// The auditor's counts differ from the verified counts for these rules.
    AlertCountsDiffer {
        /// The rules.
        rules: Vec<String>,
    },
    /// The job finished.
    Finished,
    /// The job failed.
    Failed(JobFailure),
}

fn names(nodes: &[NodeId]) -> Vec<&str> {
    nodes.iter().map(NodeId::as_str).collect()
}

impl fmt::Display for CoordinatorProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CoordinatorProgress as P;
        match self {
            P::Joined { node, member } => {
                write!(f, "{node} joined{}", if *member { " (committee)" } else { "" })
            }
            P::KeySetup { committee } => {
                write!(f, "key setup with committee {:?}", names(committee))
            }
            P::Resumed {
                job,
                completed,
                next_round,
            } => write!(
                f,
                "resumed job {job} after {completed} completed rounds; next round {next_round}"
            ),
            P::RoundStarted {
                round,
                label,
                attempt,
                asked,
            } => write!(
                f,
                "round {round} ({label}) attempt {attempt}: asked {asked} participants"
            ),
            P::Committed { round, from } => write!(f, "round {round}: commitment from {from}"),
            P::RosterFixed { round, commitments } => write!(
                f,
                "round {round}: {commitments} commitments, roster fixed, asking for the ciphertexts"
            ),
            P::Contributed { round, from } => write!(f, "round {round}: contribution from {from}"),
            P::CannotContribute {
                round,
                from,
                reason,
            } => write!(f, "round {round}: {from} cannot contribute: {reason}"),
            P::RefusedByNode { node, reason } => {
                write!(f, "{node} refused a message of the coordinator: {reason}")
            }
            P::LeftBeforeContributing { round, node } => {
                write!(f, "round {round}: {node} disconnected before contributing")
            }
            P::Decrypting {
                round,
                contributions,
            } => write!(
                f,
                "round {round}: {contributions} contributions, asking the committee to decrypt"
            ),
            P::TooFewContributors { round, got, min } => write!(
                f,
                "round {round}: only {got} of at least {min} contributors, retrying"
            ),
            P::DecryptionLost {
                round,
                members,
                rerun_as,
                retry,
                max_retries,
            } => write!(
                f,
                "round {round}: committee member(s) {:?} went away during decryption; nothing \
                 released; the round runs again as round {rerun_as} once the committee is back \
                 (retry {retry} of {max_retries})",
                names(members)
            ),
            P::AlertKeysAccepted {
                auditor,
                server_key_bytes,
            } => write!(
                f,
                "auditor {auditor}: alert keys accepted ({server_key_bytes} bytes of server key)"
            ),
            P::AlertsAsked { round, asked } => write!(
                f,
                "round {round} (alerts): asked {asked} contributors for their rates under the auditor's key"
            ),
            P::RatesCompared {
                round,
                from,
                limits,
                seconds,
            } => write!(
                f,
                "round {round}: rates from {from} compared with {limits} limits in {seconds:.2} s"
            ),
            P::AlertDropped {
                round,
                node,
                reason,
            } => write!(f, "round {round}: {node} {reason}"),
            P::AlertsTallied {
                round,
                contributors,
                seconds,
                counts,
            } => write!(
                f,
                "round {round}: {contributors} over-limit bits per rule added in {seconds:.2} s; \
                 asking the auditor to decrypt {counts} counts"
            ),
            P::AlertCountsDiffer { rules } => write!(
                f,
                "the auditor's alert counts differ from the verified counts for rules {rules:?}"
            ),
            P::Finished => f.write_str("job finished"),
            P::Failed(failure) => write!(f, "job failed: {failure}"),
        }
    }
}
