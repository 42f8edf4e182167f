//! Who took part in each round, read back from the coordinator's own signed trail: the
//! `participation` record of `result.json` and the human report's section on it. Read from the
//! trail, it covers every attempt of every round across restarts of the coordinator.
//!
//! What it does not hold: how many values each institution clipped to a declared bound (only the
//! institution knows; the audit report sums what their trails record).

use fedbank_common::audit::events::{
    events_of, DecryptionRequested, DecryptionRetried, ParticipantDropped, RoundStarted,
};
use fedbank_common::audit::AuditEvent;
use fedbank_common::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Participation over the whole job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Participation {
    /// Each round that was decrypted, in order.
    pub rounds: Vec<RoundParticipation>,
    /// Institutions that contributed to at least one decrypted aggregate.
    pub contributors: Vec<NodeId>,
    /// Every time an institution was left out of a round, with the reason.
    pub dropped: Vec<DroppedParticipant>,
    /// Decryptions run again because a committee member went away.
    pub retried: Vec<String>,
}

/// One decrypted round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundParticipation {
    /// Round number.
    pub round: u32,
    /// What it computed.
    pub quantity: String,
    /// Institutions asked.
    pub asked: usize,
    /// Institutions whose contributions are in the decrypted aggregate.
    pub contributors: Vec<NodeId>,
}

impl RoundParticipation {
    /// Whether fewer institutions contributed than were asked.
    pub fn short(&self) -> bool {
        self.contributors.len() < self.asked
    }
}

/// An institution left out of a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DroppedParticipant {
    /// The institution.
    pub node: NodeId,
    /// The round (attempt numbers aside).
    pub round: u32,
    /// Why.
    pub reason: String,
}

impl Participation {
    /// Participation as the coordinator's trail `events` record it.
    pub fn from_trail(events: &[AuditEvent]) -> Self {
        let mut asked: BTreeMap<u32, BTreeSet<NodeId>> = BTreeMap::new();
        for r in events_of::<RoundStarted>(events) {
            asked.entry(r.round).or_default().extend(r.asked);
        }
        let mut all = BTreeSet::new();
        let rounds: Vec<RoundParticipation> = events_of::<DecryptionRequested>(events)
            .map(|r| {
                all.extend(r.contributors.iter().cloned());
                RoundParticipation {
                    round: r.round,
                    quantity: r.quantity,
                    asked: asked.get(&r.round).map_or(0, BTreeSet::len),
                    contributors: r.contributors,
                }
            })
            .collect();
        let dropped = events_of::<ParticipantDropped>(events)
            .map(|d| DroppedParticipant {
                node: d.node,
                round: d.round,
                reason: d.reason,
            })
            .collect();
        let retried = events_of::<DecryptionRetried>(events)
            .map(|e| {
                format!(
                    "round {} {}: {} went away; run again as round {} (retry {} of {})",
                    e.round,
                    e.quantity,
                    e.missing_members
                        .iter()
                        .map(NodeId::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                    e.next_round,
                    e.retry,
                    e.max_retries
                )
            })
            .collect();
        Self {
            rounds,
            contributors: all.into_iter().collect(),
            dropped,
            retried,
        }
    }

    /// The section of a human report on who took part and who was left out.
    pub fn markdown(&self, enrolled: usize) -> String {
        let mut md = String::from("\n## Who took part\n\n");
        let _ = writeln!(
            md,
            "{} of the {enrolled} enrolled institutions contributed to the released figures.",
            self.contributors.len()
        );
        let short: Vec<&RoundParticipation> = self.rounds.iter().filter(|r| r.short()).collect();
        if short.is_empty() && self.dropped.is_empty() {
            let _ = writeln!(
                md,
                "Every institution asked contributed to every round ({} rounds).",
                self.rounds.len()
            );
        }
        if !short.is_empty() {
            let _ = writeln!(md, "\n| round | computed | asked | contributed |");
            let _ = writeln!(md, "|---|---|---|---|");
            for r in short {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    r.round,
                    r.quantity,
                    r.asked,
                    r.contributors.len()
                );
            }
        }
        for d in &self.dropped {
            let _ = writeln!(md, "- Left out: {d}.");
        }
        for r in &self.retried {
            let _ = writeln!(md, "- Decryption retried: {r}.");
        }
        md
    }
}

impl std::fmt::Display for DroppedParticipant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} from round {} ({})",
            self.node, self.round, self.reason
        )
    }
}
