//! Verifying a trail, and cross-checking the coordinator's trail against the nodes' own.

use super::event::{AuditEvent, EventKind, GENESIS_PREV};
use super::events::{
    events_of, AggregateDecrypted, AlertDecrypted, AlertKeys, AlertReceived, AlertSent,
    AlertTallyRequested, ContributionReceived, ContributionSent, CoordinatorRestarted,
    DecryptionApproved, DecryptionReleased, DecryptionRequested, JobCompleted, JobEnded,
    JobResumed, Joined, KeyAccepted, KeySetup, RosterFixed, RoundStarted, TrailEvent,
};
use super::hex::unhex;
use ring::signature::{UnparsedPublicKey, ED25519};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Longest line a trail may hold.
pub const MAX_LINE: usize = 1 << 20;

/// The first problem found in a trail. Lines are numbered from 1.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The trail could not be read.
    #[error("reading {path}")]
    Io {
        /// The trail.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The trail holds no event.
    #[error("the trail is empty")]
    Empty,
    /// A line is longer than [`MAX_LINE`].
    #[error("line {line}: longer than {MAX_LINE} bytes")]
    LineTooLong {
        /// Line number.
        line: usize,
    },
    /// The last line has no newline: the trail was cut.
    #[error("line {line}: the trail ends in the middle of an event (truncated)")]
    Truncated {
        /// Line number.
        line: usize,
    },
    /// A line is not an event.
    #[error("line {line}: not a trail event: {reason}")]
    Malformed {
        /// Line number.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A line parses but is not written the way the writer writes it.
    #[error(
        "line {line} (seq {seq}): the event was changed (its bytes are not the canonical form)"
    )]
    NotCanonical {
        /// Line number.
        line: usize,
        /// Its sequence number.
        seq: u64,
    },
    /// The first event does not open the trail.
    #[error("line 1: a trail must start with a trail.opened event holding the public key")]
    NotOpened,
    /// The trail is signed by another key than expected.
    #[error("the trail is signed by key {found}, expected {expected}")]
    KeyMismatch {
        /// Key expected (from the writer's certificate).
        expected: String,
        /// Key named in the trail.
        found: String,
    },
    /// Events are missing before this line.
    #[error("line {line}: event seq {expected} is missing (removed); found seq {found} ({event})")]
    Removed {
        /// Line number.
        line: usize,
        /// Sequence number expected.
        expected: u64,
        /// Sequence number found.
        found: u64,
        /// The type of the event found.
        event: String,
    },
    /// A later event was moved before this line (the expected one comes further down).
    #[error("line {line}: seq {found} ({event}) appears before seq {expected}, which comes later in the file (the events were reordered)")]
    Reordered {
        /// Line number.
        line: usize,
        /// Sequence number expected.
        expected: u64,
        /// Sequence number found.
        found: u64,
        /// The type of the event found.
        event: String,
    },
    /// An event appears out of order or twice.
    #[error("line {line}: seq {found} ({event}) where seq {expected} was expected (an event was inserted or reordered)")]
    InsertedOrReordered {
        /// Line number.
        line: usize,
        /// Sequence number expected.
        expected: u64,
        /// Sequence number found.
        found: u64,
        /// The type of the event found.
        event: String,
    },
    /// The event does not chain to the previous one.
    #[error("line {line} (seq {seq}): its prev hash does not match the previous event (an event was inserted, removed or changed before it)")]
    BrokenChain {
        /// Line number.
        line: usize,
        /// Its sequence number.
        seq: u64,
    },
    /// The event's content does not match its hash.
    #[error("line {line} (seq {seq}, {event}): the event was changed (hash mismatch)")]
    Changed {
        /// Line number.
        line: usize,
        /// Its sequence number.
        seq: u64,
        /// Its type.
        event: String,
    },
    /// The signature does not verify.
    #[error("line {line} (seq {seq}): the signature does not verify under the trail's key")]
    BadSignature {
        /// Line number.
        line: usize,
        /// Its sequence number.
        seq: u64,
    },
    /// Another writer appears within the trail.
    #[error("line {line}: written by {found}, but the trail belongs to {writer}")]
    WriterChanged {
        /// Line number.
        line: usize,
        /// The trail's writer.
        writer: String,
        /// Writer found.
        found: String,
    },
}

/// A verified trail.
#[derive(Debug, Clone)]
pub struct TrailReport {
    /// Node that wrote it.
    pub writer: String,
    /// Its role.
    pub role: String,
    /// Its public key, hex.
    pub public_key: String,
    /// The events, in order.
    pub events: Vec<AuditEvent>,
}

/// Reads and verifies the trail at `path`; with `expected_key`, also checks the signing key.
pub fn verify(path: &Path, expected_key: Option<&str>) -> Result<TrailReport, VerifyError> {
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    verify_reader(file, expected_key).map_err(|e| match e {
        VerifyError::Io { source, .. } => VerifyError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })
}

/// Whether an event numbered `seq` appears in the rest of the trail (to tell a moved event from
/// a removed one).
fn appears_later(reader: &mut impl BufRead, seq: u64) -> bool {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {
                if serde_json::from_slice::<Seq>(buf.trim_ascii_end()).is_ok_and(|s| s.seq == seq) {
                    return true;
                }
            }
        }
    }
}

/// [`verify`] over any reader (a file, or bytes in memory for tests and fuzzing).
pub fn verify_reader(
    reader: impl Read,
    expected_key: Option<&str>,
) -> Result<TrailReport, VerifyError> {
    let mut reader = BufReader::new(reader);
    let mut events: Vec<AuditEvent> = Vec::new();
    let mut key: Option<(String, Vec<u8>)> = None;
    let mut role = String::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| VerifyError::Io {
                path: PathBuf::new(),
                source,
            })?;
        if read == 0 {
            break;
        }
        line += 1;
        if buf.len() > MAX_LINE {
            return Err(VerifyError::LineTooLong { line });
        }
        if buf.last() != Some(&b'\n') {
            return Err(VerifyError::Truncated { line });
        }
        let text =
            std::str::from_utf8(&buf[..buf.len() - 1]).map_err(|e| VerifyError::Malformed {
                line,
                reason: e.to_string(),
            })?;
        let event: AuditEvent = serde_json::from_str(text).map_err(|e| VerifyError::Malformed {
            line,
            reason: e.to_string(),
        })?;
        if serde_json::to_string(&event).ok().as_deref() != Some(text) {
            return Err(VerifyError::NotCanonical {
                line,
                seq: event.seq,
            });
        }
        let expected = events.len() as u64;
        if event.seq > expected {
            let (found, event) = (event.seq, event.event);
            return Err(if appears_later(&mut reader, expected) {
                VerifyError::Reordered {
                    line,
                    expected,
                    found,
                    event,
                }
            } else {
                VerifyError::Removed {
                    line,
                    expected,
                    found,
                    event,
                }
            });
        }
        if event.seq < expected {
            return Err(VerifyError::InsertedOrReordered {
                line,
                expected,
                found: event.seq,
                event: event.event,
            });
        }
        let prev = events.last().map_or(GENESIS_PREV, |e| e.hash.as_str());
        if event.prev != prev {
            return Err(VerifyError::BrokenChain {
                line,
                seq: event.seq,
            });
        }
        if event.compute_hash().ok().as_ref() != Some(&event.hash) {
            return Err(VerifyError::Changed {
                line,
                seq: event.seq,
                event: event.event.clone(),
            });
        }
        if key.is_none() {
            let opened = event.event == EventKind::TrailOpened.name();
            let public = event.fields.get("public_key").and_then(|v| v.as_str());
            let (Some(public), true) = (public, opened) else {
                return Err(VerifyError::NotOpened);
            };
            let bytes = unhex(public).ok_or(VerifyError::NotOpened)?;
            if let Some(expected) = expected_key {
                if expected != public {
                    return Err(VerifyError::KeyMismatch {
                        expected: expected.to_owned(),
                        found: public.to_owned(),
                    });
                }
            }
            role = event
                .fields
                .get("role")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            key = Some((public.to_owned(), bytes));
        }
        let (_, key_bytes) = key.as_ref().ok_or(VerifyError::NotOpened)?;
        let signature = unhex(&event.signature).unwrap_or_default();
        if UnparsedPublicKey::new(&ED25519, key_bytes)
            .verify(event.hash.as_bytes(), &signature)
            .is_err()
        {
            return Err(VerifyError::BadSignature {
                line,
                seq: event.seq,
            });
        }
        if let Some(first) = events.first() {
            if first.writer != event.writer {
                return Err(VerifyError::WriterChanged {
                    line,
                    writer: first.writer.clone(),
                    found: event.writer.clone(),
                });
            }
        }
        events.push(event);
    }
    let (public_key, _) = key.ok_or(VerifyError::Empty)?;
    let writer = events.first().map(|e| e.writer.clone()).unwrap_or_default();
    Ok(TrailReport {
        writer,
        role,
        public_key,
        events,
    })
}

/// A difference between what the coordinator recorded and what a node recorded itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum CrossCheckFinding {
    /// The node recorded sending (or releasing) something the coordinator has no record of.
    MissingAtCoordinator {
        /// The node.
        node: String,
        /// What was recorded: event type and key fields.
        what: String,
    },
    /// The coordinator recorded receiving something the node has no record of sending.
    MissingAtNode {
        /// The node.
        node: String,
        /// What was recorded.
        what: String,
    },
    /// The node recorded sending something the coordinator had asked for before it stopped and
    /// resumed (`job.resumed`), and the coordinator has no record of receiving it: it was in
    /// flight at the restart. Not a disagreement; the audit report shows it with the restart.
    InFlightAtRestart {
        /// The node.
        node: String,
        /// What was recorded.
        what: String,
    },
    /// Both recorded the same item with different digests.
    DigestDiffers {
        /// The node.
        node: String,
        /// The item.
        what: String,
        /// Digest in the coordinator's trail.
        coordinator: String,
        /// Digest in the node's trail.
        node_digest: String,
    },
    /// The count the coordinator recorded decrypting is not the sum of what the contributors'
    /// own trails record (every contributor's trail present).
    CountDiffers {
        /// What was counted.
        what: String,
        /// The count in the coordinator's trail.
        coordinator: u64,
        /// The sum over the contributors' trails.
        nodes: u64,
        /// The contributors summed.
        contributors: Vec<String>,
    },
}

impl fmt::Display for CrossCheckFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingAtCoordinator { node, what } => {
                write!(f, "{node} recorded {what}, the coordinator did not")
            }
            Self::InFlightAtRestart { node, what } => write!(
                f,
                "{node} recorded {what}, asked for before the coordinator stopped; the coordinator, restarted, has no record of receiving it (in flight at the restart)"
            ),
            Self::MissingAtNode { node, what } => {
                write!(f, "the coordinator recorded {what} from {node}, {node} did not")
            }
            Self::DigestDiffers {
                node,
                what,
                coordinator,
                node_digest,
            } => write!(
                f,
                "{what} of {node}: the coordinator recorded digest {coordinator}, {node} recorded {node_digest}"
            ),
            Self::CountDiffers {
                what,
                coordinator,
                nodes,
                contributors,
            } => write!(
                f,
                "{what}: the coordinator recorded decrypting {coordinator}, the trails of its contributors ({}) sum to {nodes}",
                contributors.join(", ")
            ),
        }
    }
}

/// (node, job, round, quantity) of an item both sides record.
type ItemKey = (String, String, String, String);
/// The digest recorded per item.
type Items = BTreeMap<ItemKey, String>;

/// The items of `E` events among `events`, keyed and with their digest by `item`.
fn items<E: TrailEvent>(events: &[AuditEvent], item: impl Fn(E) -> (ItemKey, String)) -> Items {
    events_of::<E>(events).map(item).collect()
}

/// One pair of events that the coordinator and a node both record.
struct Pair {
    /// What the item is, for findings.
    label: &'static str,
    /// The coordinator's record, keyed by the node it names.
    coordinator: fn(&[AuditEvent]) -> Items,
    /// The node's own record, keyed by its own name (the trail's writer).
    node: fn(&[AuditEvent], &str) -> Items,
    /// The seq of the coordinator's event that asked for the item (a round started, a
    /// decryption requested), to tell an item in flight at a restart from a missing one.
    asked_at: fn(&[AuditEvent], &ItemKey, &str) -> Option<u64>,
}

/// Never asked for in a way a restart could interrupt.
fn not_asked(_: &[AuditEvent], _: &ItemKey, _: &str) -> Option<u64> {
    None
}

/// The seq of the first coordinator event of kind `E` that `matches`.
fn asked<E: TrailEvent>(events: &[AuditEvent], matches: impl Fn(&E) -> bool) -> Option<u64> {
    events
        .iter()
        .find_map(|e| e.read::<E>()?.ok().filter(|x| matches(x)).map(|_| e.seq))
}

const PAIRS: [Pair; 5] = [
    Pair {
        label: "contribution",
        coordinator: |events| {
            items(events, |e: ContributionReceived| {
                let key = (
                    e.node.to_string(),
                    e.job.to_string(),
                    e.round.to_string(),
                    e.quantity,
                );
                (key, e.digest)
            })
        },
        node: |events, writer| {
            items(events, |e: ContributionSent| {
                let key = (
                    writer.to_owned(),
                    e.job.to_string(),
                    e.round.to_string(),
                    e.quantity,
                );
                (key, e.digest)
            })
        },
        asked_at: |events, (_, job, round, _), _| {
            asked::<RoundStarted>(events, |r| {
                r.job.as_str() == job && r.round.to_string() == *round
            })
        },
    },
    Pair {
        label: "partial decryption",
        coordinator: |events| {
            items(events, |e: DecryptionApproved| {
                let key = (
                    e.node.to_string(),
                    e.job.to_string(),
                    e.round.to_string(),
                    e.quantity,
                );
                (key, e.manifest)
            })
        },
        node: |events, writer| {
            items(events, |e: DecryptionReleased| {
                let key = (
                    writer.to_owned(),
                    e.job.to_string(),
                    e.round.to_string(),
                    e.quantity,
                );
                (key, e.manifest)
            })
        },
        asked_at: |events, _, manifest| {
            asked::<DecryptionRequested>(events, |r| r.manifest == manifest)
        },
    },
    Pair {
        label: "encrypted alert rates",
        coordinator: |events| {
            items(events, |e: AlertReceived| {
                let key = (
                    e.node.to_string(),
                    e.job.to_string(),
                    e.round.to_string(),
                    String::new(),
                );
                (key, e.digest)
            })
        },
        node: |events, writer| {
            items(events, |e: AlertSent| {
                let key = (
                    writer.to_owned(),
                    e.job.to_string(),
                    e.round.to_string(),
                    String::new(),
                );
                (key, e.digest)
            })
        },
        asked_at: not_asked,
    },
    Pair {
        label: "alert public key",
        coordinator: |events| {
            items(events, |e: AlertKeys| {
                let key = (
                    e.auditor.to_string(),
                    e.job.to_string(),
                    String::new(),
                    String::new(),
                );
                (key, e.public_key)
            })
        },
        node: |events, writer| {
            items(events, |e: AlertKeys| {
                let key = (
                    writer.to_owned(),
                    e.job.to_string(),
                    String::new(),
                    String::new(),
                );
                (key, e.public_key)
            })
        },
        asked_at: not_asked,
    },
    Pair {
        label: "alert decryption",
        coordinator: |events| {
            items(events, |e: AlertTallyRequested| {
                let key = (
                    e.auditor.to_string(),
                    e.job.to_string(),
                    e.round.to_string(),
                    String::new(),
                );
                (key, e.manifest)
            })
        },
        node: |events, writer| {
            events_of::<AlertDecrypted>(events)
                .filter_map(|e| match e {
                    AlertDecrypted::ByAuditor(e) => Some(e),
                    AlertDecrypted::AtCoordinator(_) => None,
                })
                .map(|e| {
                    let key = (
                        writer.to_owned(),
                        e.job.to_string(),
                        e.round.to_string(),
                        String::new(),
                    );
                    (key, e.manifest)
                })
                .collect()
        },
        asked_at: not_asked,
    },
];

/// Whether the coordinator resumed from a checkpoint after its event `seq`.
fn resumed_after(events: &[AuditEvent], seq: u64) -> bool {
    events
        .iter()
        .any(|e| e.seq > seq && e.event == EventKind::JobResumed.name())
}

impl CrossCheckFinding {
    /// Whether this finding is a disagreement (an item in flight at a restart is not).
    pub fn disagrees(&self) -> bool {
        !matches!(self, Self::InFlightAtRestart { .. })
    }
}

/// What a node recorded (`digest` of `what`) against what the coordinator recorded for it.
fn compare(
    node: &str,
    what: String,
    coordinator: Option<&String>,
    digest: String,
) -> Option<CrossCheckFinding> {
    match coordinator {
        None => Some(CrossCheckFinding::MissingAtCoordinator {
            node: node.to_owned(),
            what,
        }),
        Some(c) if *c != digest => Some(CrossCheckFinding::DigestDiffers {
            node: node.to_owned(),
            what,
            coordinator: c.clone(),
            node_digest: digest,
        }),
        Some(_) => None,
    }
}

/// Compares the coordinator's trail with nodes' own trails: every contribution a participant
/// sent against what the coordinator received, and every partial decryption a member released
/// against what the coordinator recorded. Both sides are read as their typed events
/// ([`super::events`]), so a writer and this check cannot disagree on a field's name.
pub fn cross_check(coordinator: &TrailReport, nodes: &[TrailReport]) -> Vec<CrossCheckFinding> {
    let mut findings = Vec::new();
    for pair in &PAIRS {
        let theirs = (pair.coordinator)(&coordinator.events);
        for node in nodes {
            let mine = (pair.node)(&node.events, &node.writer);
            let theirs_for_node: Items = theirs
                .iter()
                .filter(|((n, ..), _)| *n == node.writer)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let describe = |(_, job, round, quantity): &ItemKey| {
                format!("{} job {job} round {round} quantity {quantity}", pair.label)
            };
            for (key, digest) in &mine {
                let in_flight = !theirs_for_node.contains_key(key)
                    && (pair.asked_at)(&coordinator.events, key, digest)
                        .is_some_and(|asked| resumed_after(&coordinator.events, asked));
                if in_flight {
                    findings.push(CrossCheckFinding::InFlightAtRestart {
                        node: node.writer.clone(),
                        what: describe(key),
                    });
                    continue;
                }
                findings.extend(compare(
                    &node.writer,
                    describe(key),
                    theirs_for_node.get(key),
                    digest.clone(),
                ));
            }
            for key in theirs_for_node.keys().filter(|k| !mine.contains_key(*k)) {
                findings.push(CrossCheckFinding::MissingAtNode {
                    node: node.writer.clone(),
                    what: describe(key),
                });
            }
        }
    }
    // The joint key each participant formed itself and accepted is the one the coordinator
    // recorded forming for that key epoch.
    let formed: BTreeMap<u32, String> = events_of::<KeySetup>(&coordinator.events)
        .filter_map(|e| match e {
            KeySetup::JointKeyFormed {
                key_epoch,
                joint_key_digest,
                ..
            } => Some((key_epoch, joint_key_digest)),
            _ => None,
        })
        .collect();
    for node in nodes {
        for e in events_of::<KeyAccepted>(&node.events) {
            let what = format!(
                "joint public key of job {} key epoch {}",
                e.job, e.key_epoch
            );
            findings.extend(compare(
                &node.writer,
                what,
                formed.get(&e.key_epoch),
                e.joint_key_digest,
            ));
        }
    }
    // What each participant received at the job's end is what the coordinator released.
    let released: Option<String> =
        events_of::<JobCompleted>(&coordinator.events).find_map(|e| e.release_digest);
    for node in nodes {
        for e in events_of::<JobEnded>(&node.events) {
            if let Some(received) = e.release_digest {
                let what = format!("release of job {} (model or segments)", e.job);
                findings.extend(compare(&node.writer, what, released.as_ref(), received));
            }
        }
    }
    // Every contribution a participant revealed was revealed against the roster the
    // coordinator recorded fixing for that round attempt (docs/threat-model.md §9).
    let rosters: BTreeMap<(String, u32, u32), String> =
        events_of::<RosterFixed>(&coordinator.events)
            .map(|e| ((e.job.to_string(), e.round, e.attempt), e.roster))
            .collect();
    for node in nodes {
        for e in events_of::<ContributionSent>(&node.events) {
            let key = (e.job.to_string(), e.round, e.attempt);
            let what = format!("roster of job {} round {} attempt {}", key.0, key.1, key.2);
            findings.extend(compare(&node.writer, what, rosters.get(&key), e.roster));
        }
    }
    findings.extend(clipped_counts(coordinator, nodes));
    findings.extend(restarts(coordinator, nodes));
    findings
}

/// Each restart of the coordinator as the nodes saw it: a node that joined the coordinator
/// after its `n`-th `job.resumed` recorded `coordinator.restarted` with that `n`, and no node
/// recorded a restart the coordinator's trail does not have.
fn restarts(coordinator: &TrailReport, nodes: &[TrailReport]) -> Vec<CrossCheckFinding> {
    // The coordinator's restart in force at each event, and who joined it.
    let mut restart = 0;
    let mut joined: BTreeMap<(String, u32), String> = BTreeMap::new();
    let mut recorded: BTreeMap<u32, String> = BTreeMap::new();
    for e in &coordinator.events {
        if let Some(Ok(r)) = e.read::<JobResumed>() {
            restart = r.restart;
            recorded.insert(r.restart, r.job.to_string());
        } else if let Some(Ok(j)) = e.read::<Joined>() {
            if restart > 0 {
                joined.insert((j.node.to_string(), restart), j.job.to_string());
            }
        }
    }
    let describe = |job: &str, n: u32| format!("restart {n} of the coordinator of job {job}");
    let mut findings = Vec::new();
    for node in nodes {
        let seen: BTreeMap<u32, String> = events_of::<CoordinatorRestarted>(&node.events)
            .map(|e| (e.restart, e.job.to_string()))
            .collect();
        for (n, job) in &seen {
            if !recorded.contains_key(n) {
                findings.push(CrossCheckFinding::MissingAtCoordinator {
                    node: node.writer.clone(),
                    what: describe(job, *n),
                });
            }
        }
        for ((who, n), job) in &joined {
            if *who == node.writer && !seen.contains_key(n) {
                findings.push(CrossCheckFinding::MissingAtNode {
                    node: node.writer.clone(),
                    what: format!("{} (the node joined it)", describe(job, *n)),
                });
            }
        }
    }
    findings
}

/// Each decrypted count of clipped values against the sum of what its contributors' trails
/// record for that round (their last attempt of it): checked where every contributor's trail is
/// at hand. The coordinator never sees a contributor's own count, so a difference means a trail
/// does not tell what was encrypted.
fn clipped_counts(coordinator: &TrailReport, nodes: &[TrailReport]) -> Vec<CrossCheckFinding> {
    let manifests: BTreeMap<String, Vec<String>> =
        events_of::<DecryptionRequested>(&coordinator.events)
            .map(|r| {
                let contributors = r.contributors.iter().map(|c| c.to_string()).collect();
                (r.manifest, contributors)
            })
            .collect();
    let mut findings = Vec::new();
    for decrypted in events_of::<AggregateDecrypted>(&coordinator.events) {
        let (Some(count), Some(contributors)) =
            (decrypted.clipped_values, manifests.get(&decrypted.manifest))
        else {
            continue;
        };
        let sent: Option<Vec<u64>> = contributors
            .iter()
            .map(|c| {
                let node = nodes.iter().find(|n| n.writer == *c)?;
                events_of::<ContributionSent>(&node.events)
                    .filter(|e| e.job == decrypted.job && e.round == decrypted.round)
                    .max_by_key(|e| e.attempt)
                    .map(|e| e.clipped_values)
            })
            .collect();
        if let Some(sum) = sent.map(|s| s.iter().sum::<u64>()) {
            if sum != count {
                findings.push(CrossCheckFinding::CountDiffers {
                    what: format!(
                        "values clipped in job {} round {} quantity {}",
                        decrypted.job, decrypted.round, decrypted.quantity
                    ),
                    coordinator: count,
                    nodes: sum,
                    contributors: contributors.clone(),
                });
            }
        }
    }
    findings
}
