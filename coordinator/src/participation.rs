//! Who took part in each round, read back from the coordinator's own signed trail: the
//! `participation` record of `result.json` and the human report's section on it. Read from the
//! trail, it covers every attempt of every round across restarts of the coordinator.
//!
//! Values clipped to a declared bound are here as each round's consortium-wide count, decrypted
//! with the round's aggregate (`aggregate.decrypted.clipped_values`). What it does not hold is
//! any one institution's count: only the institution knows it (its own trail records it).

use fedbank_common::audit::events::{
    events_of, AggregateDecrypted, DecryptionRequested, DecryptionRetried, ParticipantDropped,
    RoundStarted,
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
    /// Values the contributors clipped to a declared bound, summed over them (absent where the
    /// round does not carry the count: a differentially private job, a presence round, or a
    /// decryption that did not complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipped_values: Option<u64>,
}

impl RoundParticipation {
    /// Whether fewer institutions contributed than were asked.
    pub fn short(&self) -> bool {
        self.contributors.len() < self.asked
    }
}

/// Rounds with the same count of clipped values ([`Participation::clipping_runs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClippingRun {
    /// The round, or the first and last (`2–88`).
    pub rounds: String,
    /// What they computed.
    pub quantity: String,
    /// Values clipped in each.
    pub clipped: u64,
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
        let clipped: BTreeMap<u32, u64> = events_of::<AggregateDecrypted>(events)
            .filter_map(|a| Some((a.round, a.clipped_values?)))
            .collect();
        let mut all = BTreeSet::new();
        let rounds: Vec<RoundParticipation> = events_of::<DecryptionRequested>(events)
            .map(|r| {
                all.extend(r.contributors.iter().cloned());
                RoundParticipation {
                    round: r.round,
                    quantity: r.quantity,
                    asked: asked.get(&r.round).map_or(0, BTreeSet::len),
                    contributors: r.contributors,
                    clipped_values: clipped.get(&r.round).copied(),
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

    /// Values clipped to a declared bound, summed over every decrypted round that counts them
    /// (`None` when no round does).
    pub fn clipped_values(&self) -> Option<u64> {
        self.rounds
            .iter()
            .filter_map(|r| r.clipped_values)
            .reduce(|a, b| a + b)
    }

    /// Consecutive decrypted rounds of one computation with the same non-zero count of clipped
    /// values, as one line each (a k-means job clips the same values in every iteration).
    pub fn clipping_runs(&self) -> Vec<ClippingRun> {
        let mut runs: Vec<(u32, u32, &str, u64)> = Vec::new();
        for r in &self.rounds {
            let Some(n) = r.clipped_values.filter(|n| *n > 0) else {
                continue;
            };
            match runs.last_mut() {
                Some((_, last, quantity, count))
                    if *quantity == r.quantity && *count == n && *last + 1 == r.round =>
                {
                    *last = r.round
                }
                _ => runs.push((r.round, r.round, &r.quantity, n)),
            }
        }
        runs.into_iter()
            .map(|(first, last, quantity, clipped)| ClippingRun {
                rounds: if first == last {
                    format!("{first}")
                } else {
                    format!("{first}–{last}")
                },
                quantity: quantity.to_owned(),
                clipped,
            })
            .collect()
    }

    /// The report's paragraph on clipped values: where they were clipped, or why there is no
    /// count.
    fn clipping_markdown(&self) -> String {
        let mut md = String::new();
        match self.clipped_values() {
            None => {
                let _ = writeln!(
                    md,
                    "\nNo count of values clipped to a declared bound is released for this job \
                     (a differentially private job releases none: an exact count would spend \
                     privacy its budget does not account for). Each institution's trail records \
                     its own count."
                );
            }
            Some(0) => {
                let _ = writeln!(md, "\nNo value was clipped to a declared bound.");
            }
            Some(_) => {
                let most = self
                    .rounds
                    .iter()
                    .filter_map(|r| r.clipped_values)
                    .max()
                    .unwrap_or(0);
                let _ = writeln!(
                    md,
                    "\nValues were clipped to a declared bound: up to {most} in one round, summed \
                     over the round's contributors (counted securely with the round's \
                     aggregate; no institution's own count is known). A round reads the \
                     customers' values again, so the same value counts in every round that \
                     reads it. The result is over the clipped values.\n"
                );
                let _ = writeln!(md, "| rounds | computed | values clipped in each |");
                let _ = writeln!(md, "|---|---|---|");
                for run in self.clipping_runs() {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} |",
                        run.rounds, run.quantity, run.clipped
                    );
                }
                md.push('\n');
            }
        }
        md
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
        md.push_str(&self.clipping_markdown());
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
