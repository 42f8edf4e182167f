//! Drives a coordinator and its participants' state machines to the end of a job in memory,
//! every message through its wire encoding: the protocol without a network or a clock (time
//! stays 0, so no deadline passes). Tests and benchmarks use it to run whole jobs in a few
//! milliseconds per round.
//!
//! It stops with a [`DriveError`] at the first message a machine refuses or that does not
//! survive its encoding, and when nothing moves while the job still runs.

use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::ids::NodeId;
use fedbank_common::job::RoundKind;
use fedbank_common::protocol::Inbound;
use fedbank_common::secagg::RingScalar;
use fedbank_common::wire::WireError;
use fedbank_coordinator::{CoordinatorMachine, CoordinatorOutput, Input, Status};
use fedbank_participant::{ParticipantMachine, ParticipantOutput};
use std::collections::VecDeque;

/// The coordinator's trail events: type and fields.
pub type Trail = Vec<(&'static str, serde_json::Map<String, serde_json::Value>)>;

/// Why an in-memory run stopped before the job ended.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// A message could not be encoded or decoded.
    #[error("a message from {from} does not survive its wire encoding")]
    Wire {
        /// The sender.
        from: String,
        /// The codec's error.
        #[source]
        source: WireError,
    },
    /// The coordinator refused a node's connection or message.
    #[error("the coordinator refused {what} from {from}: {reason}")]
    CoordinatorRefused {
        /// The node.
        from: NodeId,
        /// A connection or a message.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A participant refused a coordinator message.
    #[error("participant {node} refused a coordinator message: {reason}")]
    ParticipantRefused {
        /// The node.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The coordinator sent to a node that is not in this run.
    #[error("the coordinator sent to {0}, which is not in this run")]
    UnknownNode(NodeId),
    /// Nothing moved while the job still runs.
    #[error("the job stalled: no message moved while it still runs")]
    Stalled,
}

/// Connects every node, then delivers messages until the job is no longer running; the
/// coordinator's final status and trail.
pub fn run_to_end<S: RingScalar>(
    coordinator: &mut CoordinatorMachine<S>,
    nodes: &mut [ParticipantMachine<S>],
) -> Result<(Status, Trail), DriveError> {
    run_to_end_with(coordinator, nodes, |_, _| {})
}

/// [`run_to_end`], handing every participant output other than a message (its audit events,
/// local files, figures) to `local`.
pub fn run_to_end_with<S: RingScalar>(
    coordinator: &mut CoordinatorMachine<S>,
    nodes: &mut [ParticipantMachine<S>],
    local: impl FnMut(&NodeId, ParticipantOutput<S>),
) -> Result<(Status, Trail), DriveError> {
    run_to_end_observed(coordinator, nodes, local, |_, _, _| {})
}

/// [`run_to_end_with`], also handing every aggregate the coordinator decrypted to `aggregate`.
pub fn run_to_end_observed<S: RingScalar>(
    coordinator: &mut CoordinatorMachine<S>,
    nodes: &mut [ParticipantMachine<S>],
    mut local: impl FnMut(&NodeId, ParticipantOutput<S>),
    mut aggregate: impl FnMut(u32, &RoundKind, &[DecodedQuantity]),
) -> Result<(Status, Trail), DriveError> {
    let mut trail = Vec::new();
    let mut to_coordinator: VecDeque<(NodeId, Vec<u8>)> = VecDeque::new();
    for node in nodes.iter_mut() {
        coordinator
            .handle(Input::Connected(node.id().clone()), 0)
            .map_err(|e| DriveError::CoordinatorRefused {
                from: node.id().clone(),
                what: "the connection",
                reason: e.to_string(),
            })?;
        node.on_connected();
    }
    loop {
        for node in nodes.iter_mut() {
            while let Some(out) = node.poll_output() {
                match out {
                    ParticipantOutput::Send(m) => {
                        let bytes = m.encode().map_err(|source| DriveError::Wire {
                            from: node.id().to_string(),
                            source,
                        })?;
                        to_coordinator.push_back((node.id().clone(), bytes))
                    }
                    other => local(node.id(), other),
                }
            }
        }
        let mut progressed = false;
        while let Some((from, bytes)) = to_coordinator.pop_front() {
            let message = Inbound::<S>::decode(&bytes).map_err(|source| DriveError::Wire {
                from: from.to_string(),
                source,
            })?;
            coordinator
                .handle(
                    Input::Message {
                        from: from.clone(),
                        message,
                    },
                    0,
                )
                .map_err(|e| DriveError::CoordinatorRefused {
                    from,
                    what: "a message",
                    reason: e.to_string(),
                })?;
            progressed = true;
        }
        while let Some(out) = coordinator.poll_output() {
            match out {
                CoordinatorOutput::Send { to, message } => {
                    let wire = |source| DriveError::Wire {
                        from: "the coordinator".to_owned(),
                        source,
                    };
                    let m = Inbound::<S>::decode(&message.encode().map_err(wire)?).map_err(wire)?;
                    let node = nodes
                        .iter_mut()
                        .find(|n| *n.id() == to)
                        .ok_or_else(|| DriveError::UnknownNode(to.clone()))?;
                    node.handle(m).map_err(|e| DriveError::ParticipantRefused {
                        node: to,
                        reason: e.to_string(),
                    })?;
                    progressed = true;
                }
                CoordinatorOutput::Audit { kind, fields } => trail.push((kind.name(), fields)),
                CoordinatorOutput::Aggregate {
                    round,
                    kind,
                    values,
                } => aggregate(round, &kind, &values),
                _ => {}
            }
        }
        match coordinator.status() {
            Status::Running if progressed => {}
            Status::Running => return Err(DriveError::Stalled),
            other => {
                // What the nodes did with the coordinator's last messages.
                for node in nodes.iter_mut() {
                    while let Some(out) = node.poll_output() {
                        if !matches!(out, ParticipantOutput::Send(_)) {
                            local(node.id(), out);
                        }
                    }
                }
                return Ok((other.clone(), trail));
            }
        }
    }
}
