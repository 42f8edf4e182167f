//! What a participant tells its operator: one typed event per notable step
//! ([`ParticipantProgress`]), which the shell renders (its `Display` is the line, prefixed with
//! the node) and tests can match on. Its own figures here never leave the institution.

use fedbank_common::ids::NodeId;
use std::fmt;

/// A notable step of a participant's part of the job.
#[derive(Clone, Debug, PartialEq)]
pub enum ParticipantProgress {
    /// Its encrypted contribution was committed to.
    Committed {
        /// Round.
        round: u32,
        /// Quantity label.
        quantity: String,
    },
    /// Its ciphertext was sent against the round's roster.
    Sent {
        /// Round.
        round: u32,
        /// Quantity label.
        quantity: String,
    },
    /// It cannot contribute to a round (and told the coordinator why).
    CannotContribute {
        /// Round.
        round: u32,
        /// Why.
        reason: String,
    },
    /// Its customers were assigned to the released segments, locally.
    Assigned {
        /// Its customers.
        customers: usize,
        /// Segments released.
        segments: usize,
    },
    /// Its own figures on its hold-out customers, kept locally.
    HoldOutFigures {
        /// Hold-out customers.
        customers: usize,
        /// AUC of the federated model.
        federated_auc: Option<f64>,
        /// AUC of a model of its own data alone.
        local_only_auc: Option<f64>,
    },
    /// Its rates were sent under the auditor's key.
    RatesSent {
        /// Alert rules.
        rules: usize,
    },
    /// The coordinator refused one of its messages (and changed nothing); its words, with what
    /// to do, on one printable line.
    RefusedByCoordinator {
        /// Round concerned, when the coordinator named one.
        round: Option<u32>,
        /// The coordinator's reason and advice.
        reason: String,
    },
}

/// A participant's progress event with the node it is about.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeProgress {
    /// The participant.
    pub node: NodeId,
    /// What happened.
    pub event: ParticipantProgress,
}

impl fmt::Display for NodeProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParticipantProgress as P;
        let node = &self.node;
        let show = |a: Option<f64>| a.map_or("n/a".to_owned(), |a| format!("{a:.4}"));
        match &self.event {
            P::Committed { round, quantity } => {
                write!(f, "{node}: round {round} ({quantity}) contribution committed")
            }
            P::Sent { round, quantity } => {
                write!(f, "{node}: round {round} ({quantity}) contribution sent")
            }
            P::CannotContribute { round, reason } => {
                write!(f, "{node}: cannot contribute to round {round}: {reason}")
            }
            P::Assigned {
                customers,
                segments,
            } => write!(
                f,
                "{node}: assigned its {customers} customers to the {segments} released segments (kept locally)"
            ),
            P::HoldOutFigures {
                customers,
                federated_auc,
                local_only_auc,
            } => write!(
                f,
                "{node}: on its {customers} hold-out customers the federated model has AUC {}, a model of its own data alone {} (kept locally)",
                show(*federated_auc),
                show(*local_only_auc)
            ),
            P::RatesSent { rules } => write!(
                f,
                "{node}: its rates for {rules} alert rules sent under the auditor's key"
            ),
            P::RefusedByCoordinator { round, reason } => {
                let round = round.map(|r| format!(" (round {r})")).unwrap_or_default();
                write!(
                    f,
                    "{node}: the coordinator refused a message of this node{round}: {reason}"
                )
            }
        }
    }
}
