//! What a run directory holds as evidence, and whether it is whole: every trail verified, the
//! job's nodes each with a trail signed by its certificate's key, every trail reaching the job's
//! end, and every file a node bound to its trail unchanged.

use super::{first, short, typed, ArtifactEvidence, AuditReportError, Failure, NodeEvidence};
use fedbank_common::audit::events::{
    check_fields, ArtifactWritten, JobCompleted, JobEnded, JobFailed, JobStarted, TrailRepaired,
};
use fedbank_common::audit::{hex, sha256_hex, verify, ArtifactState, TrailReport, VerifyError};
use fedbank_common::endorsement::{ConsortiumTrust, EndorsementError};
use fedbank_common::ids::NodeId;
use fedbank_common::storage::StorageError;
use fedbank_transport::pki::{read_certificate, PkiError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The verified trails and everything checked about them.
pub(super) struct Evidence {
    /// Trail files found.
    pub trail_files: usize,
    /// The coordinator's trail, if one verifies.
    pub coordinator: Option<(PathBuf, TrailReport)>,
    /// The other verified trails.
    pub nodes: Vec<(PathBuf, TrailReport)>,
    /// The job as the coordinator's `job.started` records it.
    pub job: Option<JobStarted>,
    /// Every node of the job, and the coordinator.
    pub node_rows: Vec<NodeEvidence>,
    /// Files bound to a trail.
    pub artifacts: Vec<ArtifactEvidence>,
    /// SHA-256 of the consortium CA certificate (DER).
    pub ca_fingerprint: Option<String>,
    /// What is wrong with the evidence.
    pub failures: Vec<Failure>,
}

fn file_name(path: &Path) -> String {
    format!(
        "trails/{}",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

fn last_event(r: &TrailReport) -> String {
    r.events.last().map_or_else(String::new, |e| {
        format!("seq {} ({}, {})", e.seq, e.event, e.time)
    })
}

/// Reads and verifies every trail in `<run>/trails`, and checks the evidence is whole.
pub(super) fn gather(run: &Path) -> Result<Evidence, AuditReportError> {
    let trails_dir = run.join("trails");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&trails_dir)
        .map_err(|source| AuditReportError {
            path: trails_dir.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "trail"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    let mut verified: Vec<(PathBuf, TrailReport)> = Vec::new();
    for path in &paths {
        let file = file_name(path);
        match verify(path, None) {
            // A signed event whose fields are not those of its kind is read by nothing below:
            // the trail fails rather than lose a cross-check silently.
            Ok(r) => match r.events.iter().find_map(|e| check_fields(e).err()) {
                Some(unreadable) => failures.push(Failure::tampered(file, unreadable.to_string())),
                None => verified.push((path.clone(), r)),
            },
            Err(e @ VerifyError::Io { .. }) => {
                failures.push(Failure::unreadable(file, format!("{e}: {}", source_of(&e))))
            }
            // A cut trail may be a crash in the middle of a write as well as an edit.
            Err(e @ (VerifyError::Truncated { .. } | VerifyError::Empty)) => {
                failures.push(Failure::incomplete(file, e.to_string()))
            }
            Err(e) => failures.push(Failure::tampered(file, e.to_string())),
        }
    }
    // One trail per writer.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    verified.retain(|(path, r)| match seen.get(&r.writer) {
        Some(other) => {
            failures.push(Failure::tampered(
                r.writer.clone(),
                format!(
                    "{} and {other} are both trails of {}",
                    file_name(path),
                    r.writer
                ),
            ));
            false
        }
        None => {
            seen.insert(r.writer.clone(), file_name(path));
            true
        }
    });
    let coordinator = match verified.iter().position(|(_, r)| r.role == "coordinator") {
        Some(i) => Some(verified.remove(i)),
        None => {
            failures.push(Failure::incomplete(
                "coordinator",
                "no coordinator trail verifies in trails/".to_owned(),
            ));
            None
        }
    };
    if let Some((path, extra)) = verified.iter().find(|(_, r)| r.role == "coordinator") {
        failures.push(Failure::tampered(
            extra.writer.clone(),
            format!("{} is a second coordinator trail", file_name(path)),
        ));
    }
    let job = coordinator
        .as_ref()
        .and_then(|(_, c)| first::<JobStarted>(&c.events).map(|(_, j)| j));
    if let (Some((_, c)), None) = (&coordinator, &job) {
        failures.push(Failure::incomplete(
            c.writer.clone(),
            "the coordinator's trail has no job.started: the job's nodes are unknown".to_owned(),
        ));
    }

    // The job defines the nodes; each has a trail, and no trail is of anyone else.
    let roles = job.as_ref().map(node_roles).unwrap_or_default();
    let failed_files: Vec<String> = failures.iter().map(|f| f.subject.clone()).collect();
    let mut node_rows = Vec::new();
    if let Some((path, c)) = &coordinator {
        node_rows.push(NodeEvidence::of(
            c.writer.clone(),
            "coordinator",
            Some((path, c)),
        ));
    }
    for (node, role) in &roles {
        let trail = verified.iter().find(|(_, r)| &r.writer == node);
        node_rows.push(NodeEvidence::of(
            node.clone(),
            role,
            trail.map(|(p, r)| (p, r)),
        ));
        if trail.is_none() && job.is_some() {
            let file = format!("trails/{node}.trail");
            if !failed_files.contains(&file) {
                failures.push(Failure::incomplete(
                    node.clone(),
                    format!("no trail of {node} ({role}) in trails/: the job names it"),
                ));
            }
        }
    }
    if let Some(j) = &job {
        for (path, r) in verified
            .iter()
            .filter(|(_, r)| !roles.contains_key(&r.writer))
        {
            failures.push(Failure::tampered(
                r.writer.clone(),
                format!(
                    "{} is the trail of {} ({}), which is not a node of job {}",
                    file_name(path),
                    r.writer,
                    r.role,
                    j.job
                ),
            ));
        }
    }

    // Every trail is signed by its writer's certificate key.
    let ca_fingerprint = check_certificates(run, &mut node_rows, &mut failures);

    // Every trail reaches the job's end.
    if let (Some((_, c)), Some(_)) = (&coordinator, &job) {
        let ended = first::<JobCompleted>(&c.events)
            .map(|(e, _)| e)
            .or_else(|| first::<JobFailed>(&c.events).map(|(e, _)| e));
        match ended {
            None => failures.push(Failure::incomplete(
                c.writer.clone(),
                format!(
                    "the coordinator's trail ends at {} before the job's end (no job.completed or job.failed)",
                    last_event(c)
                ),
            )),
            Some(end) => {
                for (_, r) in verified.iter().filter(|(_, r)| roles.contains_key(&r.writer)) {
                    if first::<JobEnded>(&r.events).is_none() {
                        failures.push(Failure::incomplete(
                            r.writer.clone(),
                            format!(
                                "its trail ends at {} before the job's end: the coordinator recorded {} (seq {}) and {} has no job.ended",
                                last_event(r),
                                end.event,
                                end.seq,
                                r.writer
                            ),
                        ));
                    }
                }
            }
        }
    }

    // Every file bound to a trail is the file that was written.
    let mut artifacts = Vec::new();
    if let Some((_, c)) = &coordinator {
        for (e, a) in typed::<ArtifactWritten>(&c.events) {
            let state = a.check(run);
            match &state {
                ArtifactState::Matches => {}
                ArtifactState::Changed { sha256 } => failures.push(Failure::tampered(
                    a.file.clone(),
                    format!(
                        "changed after it was written: its SHA-256 is {}…, the coordinator recorded {}… (seq {})",
                        short(sha256),
                        short(&a.sha256),
                        e.seq
                    ),
                )),
                ArtifactState::Absent => failures.push(Failure::incomplete(
                    a.file.clone(),
                    format!("bound to the coordinator's trail (seq {}) but not in the run", e.seq),
                )),
                ArtifactState::Unreadable { reason } => {
                    failures.push(Failure::unreadable(a.file.clone(), reason.clone()))
                }
            }
            artifacts.push(ArtifactEvidence::of(&c.writer, e.seq, a, state));
        }
        let completed = first::<JobCompleted>(&c.events).is_some();
        let present = run.join("result.json").exists();
        if (completed || present) && !artifacts.iter().any(|a| a.file == "result.json") {
            failures.push(Failure::incomplete(
                "result.json",
                format!(
                    "{}, but the coordinator's trail binds none (no artifact.written)",
                    if present {
                        "the run holds a result.json"
                    } else {
                        "the job completed"
                    }
                ),
            ));
        }
    }
    for (_, r) in &verified {
        for (e, a) in typed::<ArtifactWritten>(&r.events) {
            let state = a.check(&trails_dir);
            let shown = format!("{} of {}", a.file, r.writer);
            match &state {
                ArtifactState::Changed { sha256 } => failures.push(Failure::tampered(
                    shown,
                    format!(
                        "changed after it was written: its SHA-256 is {}…, {} recorded {}… (seq {})",
                        short(sha256),
                        r.writer,
                        short(&a.sha256),
                        e.seq
                    ),
                )),
                ArtifactState::Unreadable { reason } => {
                    failures.push(Failure::unreadable(shown, reason.clone()))
                }
                // A participant's local outputs stay at the institution; checked where present.
                ArtifactState::Matches | ArtifactState::Absent => {}
            }
            artifacts.push(ArtifactEvidence::of(&r.writer, e.seq, a, state));
        }
    }

    // The partial line a node moved aside when it repaired its trail is evidence too: it must be
    // beside the trail, with the bytes the repair recorded.
    let trails = coordinator.iter().chain(verified.iter());
    for (_, r) in trails {
        for (e, repaired) in typed::<TrailRepaired>(&r.events) {
            let state = match fedbank_common::audit::file_sha256(
                &trails_dir.join(&repaired.partial_file),
            ) {
                Ok((sha256, _)) if sha256 == repaired.sha256 => ArtifactState::Matches,
                Ok((sha256, _)) => ArtifactState::Changed { sha256 },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => ArtifactState::Absent,
                Err(e) => ArtifactState::Unreadable {
                    reason: e.to_string(),
                },
            };
            let shown = format!("{} of {}", repaired.partial_file, r.writer);
            match &state {
                ArtifactState::Matches => {}
                ArtifactState::Changed { sha256 } => failures.push(Failure::tampered(
                    shown,
                    format!(
                        "changed after {} repaired its trail: its SHA-256 is {}…, the repair recorded {}… (seq {})",
                        r.writer,
                        short(sha256),
                        short(&repaired.sha256),
                        e.seq
                    ),
                )),
                ArtifactState::Absent => failures.push(Failure::incomplete(
                    shown,
                    format!(
                        "{} repaired its trail (seq {}) and kept the partial line in this file, which is not beside the trail",
                        r.writer, e.seq
                    ),
                )),
                ArtifactState::Unreadable { reason } => {
                    failures.push(Failure::unreadable(shown, reason.clone()))
                }
            }
            artifacts.push(ArtifactEvidence {
                writer: r.writer.clone(),
                seq: e.seq,
                what: "partial line moved aside by trail.repaired".to_owned(),
                file: repaired.partial_file,
                sha256: repaired.sha256,
                bytes: repaired.bytes,
                state,
            });
        }
    }

    Ok(Evidence {
        trail_files: paths.len(),
        coordinator,
        nodes: verified,
        job,
        node_rows,
        artifacts,
        ca_fingerprint,
        failures,
    })
}

fn source_of(e: &VerifyError) -> String {
    match e {
        VerifyError::Io { source, .. } => source.to_string(),
        _ => String::new(),
    }
}

/// Every node of the job with its role, participants first.
fn node_roles(job: &JobStarted) -> BTreeMap<String, String> {
    let mut roles = BTreeMap::new();
    let member = |n: &NodeId| job.committee.contains(n);
    for p in &job.participants {
        let role = if member(p) {
            "participant, committee member"
        } else {
            "participant"
        };
        roles.insert(p.to_string(), role.to_owned());
    }
    for m in job
        .committee
        .iter()
        .filter(|m| !job.participants.contains(m))
    {
        roles.insert(m.to_string(), "committee member".to_owned());
    }
    if let Some(a) = &job.auditor {
        roles.insert(a.to_string(), "auditor".to_owned());
    }
    roles
}

/// Checks each trail's key against its writer's certificate in `<run>/certs`, issued by the
/// consortium CA there; fills in the fingerprints and returns the CA's.
fn check_certificates(
    run: &Path,
    rows: &mut [NodeEvidence],
    failures: &mut Vec<Failure>,
) -> Option<String> {
    let certs = run.join("certs");
    let ca_path = certs.join("ca.pem");
    let ca = match read_certificate(&ca_path) {
        Ok(ca) => ca,
        Err(e) => {
            failures.push(Failure::incomplete(
                "certs/ca.pem",
                format!("no usable consortium CA certificate ({e}): no trail's key can be checked against a certificate"),
            ));
            return None;
        }
    };
    let trust = match ConsortiumTrust::from_ca_certificate(&ca) {
        Ok(t) => t,
        Err(e) => {
            failures.push(Failure::tampered("certs/ca.pem", e.to_string()));
            return None;
        }
    };
    for row in rows.iter_mut() {
        let file = format!("certs/{}.pem", row.node);
        let der = match read_certificate(&certs.join(format!("{}.pem", row.node))) {
            Ok(der) => der,
            Err(PkiError::Storage(StorageError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                failures.push(Failure::incomplete(
                    row.node.clone(),
                    format!("no certificate {file}: the node's identity and its trail's key are not checked"),
                ));
                continue;
            }
            Err(e) => {
                failures.push(Failure::tampered(row.node.clone(), format!("{file}: {e}")));
                continue;
            }
        };
        row.certificate_sha256 = Some(sha256_hex(&der));
        match trust.certified_key(&row.node, &der) {
            Err(EndorsementError::WrongName { named, .. }) => failures.push(Failure::tampered(
                row.node.clone(),
                format!(
                    "{file} is the certificate of {}, not of {}",
                    named.join(", "),
                    row.node
                ),
            )),
            Err(e) => failures.push(Failure::tampered(
                row.node.clone(),
                format!("certificate {file}: {e}"),
            )),
            Ok(_) if row.signing_key.is_none() => {}
            Ok(key) => {
                let key = hex(&key);
                let matches = row.signing_key.as_deref() == Some(key.as_str());
                row.key_matches_certificate = Some(matches);
                if !matches {
                    failures.push(Failure::tampered(
                        row.node.clone(),
                        format!(
                            "its trail is signed by key {}…, but its certificate {file} holds key {}…",
                            short(row.signing_key.as_deref().unwrap_or_default()),
                            short(&key)
                        ),
                    ));
                }
            }
        }
    }
    Some(sha256_hex(&ca))
}
