//! Crash recovery with real processes, each killed with SIGKILL in the middle of a job and
//! started again with the same configuration:
//! - `fedbank coordinator`: the participants reconnect with backoff; the job resumes from its
//!   checkpoint and ends with the same result as an uninterrupted run, and the coordinator's
//!   trail — which still verifies — shows the restart;
//! - a committee member's `fedbank participant`: it restores its key share and record from its
//!   state directory, the round it missed is run again, and the job ends with the same result.
//!
//! In the interrupted run the fourth institution, `payments`, is a silent peer: it connects with
//! its real certificate, says Hello and never contributes. Every round it is asked in therefore
//! stays open until its deadline, which gives the kill a window of 1.5 s that does not depend on
//! the machine's speed (a round closes as soon as everyone asked has answered, so without it the
//! whole job can end between two looks at the checkpoint).

use fedbank_common::audit::events::{CoordinatorRestarted, JobEnded};
use fedbank_common::audit::{SigningIdentity, TrailWriter};
use fedbank_common::ids::NodeId;
use fedbank_common::job::JobSpec;
use fedbank_common::protocol::{Hello, Inbound, NoticeKind, PROTOCOL_VERSION};
use fedbank_transport::pki::{CredentialPaths, NodeCredentials};
use fedbank_transport::{connect, frame, tls};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

fn fedbank() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedbank"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn ok(out: Output) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// A free UDP port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("port")
}

struct Consortium {
    dir: PathBuf,
}

const RUNNING: [&str; 3] = ["retail-bank", "insurer", "broker"];

impl Consortium {
    /// Certificates and data from a simulation of the stats job, a job file whose rounds wait
    /// 1.5 s for the absent `payments`, and node configurations.
    fn new(base: &Path, name: &str) -> Self {
        Self::with_timeouts(base, name, 1500, 30000)
    }

    /// As [`Consortium::new`], with rounds waiting `round_ms` for `payments` and decryptions
    /// waiting `decryption_ms` for the committee.
    fn with_timeouts(base: &Path, name: &str, round_ms: u64, decryption_ms: u64) -> Self {
        let dir = base.join(name);
        let sim = dir.join("sim");
        ok(fedbank()
            .args(["simulate", "--out", sim.to_str().expect("path")])
            .output()
            .expect("simulate"));
        let job = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/simulate-stats.toml"),
        )
        .expect("job")
        .replace(
            "round_timeout_ms = 30000",
            &format!("round_timeout_ms = {round_ms}"),
        )
        .replace(
            "decryption_timeout_ms = 30000",
            &format!("decryption_timeout_ms = {decryption_ms}"),
        )
        // A restarted member may need a few short rounds to be back: allow them.
        .replace("max_round_retries = 2", "max_round_retries = 20");
        std::fs::write(dir.join("job.toml"), job).expect("job file");
        let port = free_port();
        std::fs::write(
            dir.join("coordinator.toml"),
            format!(
                "job_file = \"job.toml\"\nid = \"coordinator\"\nlisten = \"127.0.0.1:{port}\"\n\
                 certs_dir = \"sim/certs\"\nout_dir = \"out\"\n"
            ),
        )
        .expect("coordinator config");
        for p in RUNNING {
            std::fs::write(
                dir.join(format!("{p}.toml")),
                format!(
                    "job_file = \"job.toml\"\nid = \"{p}\"\ndata = \"sim/data/{p}/customers.csv\"\n\
                     coordinator_address = \"127.0.0.1:{port}\"\ncoordinator_id = \"coordinator\"\n\
                     certs_dir = \"sim/certs\"\ntrail = \"out/{p}.trail\"\nconnect_attempts = 200\n"
                ),
            )
            .expect("participant config");
        }
        std::fs::create_dir_all(dir.join("out")).expect("out");
        Self { dir }
    }

    fn coordinator(&self) -> Child {
        fedbank()
            .args(["coordinator", "--config"])
            .arg(self.dir.join("coordinator.toml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("coordinator")
    }

    fn participant(&self, p: &str) -> Child {
        fedbank()
            .args(["participant", "--config"])
            .arg(self.dir.join(format!("{p}.toml")))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("participant")
    }

    fn participants(&self) -> Vec<Child> {
        RUNNING.iter().map(|p| self.participant(p)).collect()
    }

    /// `payments` as a silent peer in its own thread: it connects (retrying while the coordinator
    /// starts), says Hello, tells `ready`, then reads and drops whatever it is sent. It never
    /// contributes. Its connection ends within a second of the coordinator's death (a short idle
    /// timeout with frequent keep-alives), and it then connects to the restarted coordinator.
    /// It keeps an honest trail of what it did — nothing — and of the job's end when told.
    fn silent_payments(&self, ready: mpsc::Sender<()>) -> std::thread::JoinHandle<()> {
        #[derive(serde::Deserialize)]
        struct File {
            job: JobSpec,
        }
        let text = std::fs::read_to_string(self.dir.join("job.toml")).expect("job");
        let job = toml::from_str::<File>(&text)
            .expect("job file")
            .job
            .validate()
            .expect("valid job");
        let id = |s: &str| NodeId::new(s).expect("id");
        let creds = NodeCredentials::load(&CredentialPaths::in_dir(
            &self.dir.join("sim/certs"),
            &id("payments"),
        ))
        .expect("payments credentials");
        let addr: std::net::SocketAddr = std::fs::read_to_string(self.dir.join("coordinator.toml"))
            .expect("config")
            .lines()
            .find_map(|l| l.strip_prefix("listen = "))
            .expect("listen")
            .trim_matches('"')
            .parse()
            .expect("address");
        let trail_path = self.dir.join("out/payments.trail");
        std::thread::spawn(move || {
            let mut trail = TrailWriter::create(
                &trail_path,
                &id("payments"),
                "participant",
                SigningIdentity::from_pkcs8(creds.pkcs8()).expect("key"),
                SystemTime::now(),
            )
            .expect("payments trail");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr"))
                    .expect("endpoint");
                let mut config = tls::client_config(&creds).expect("tls");
                let mut transport = quinn::TransportConfig::default();
                transport.max_idle_timeout(Some(
                    Duration::from_secs(1).try_into().expect("idle timeout"),
                ));
                transport.keep_alive_interval(Some(Duration::from_millis(200)));
                config.transport_config(std::sync::Arc::new(transport));
                endpoint.set_default_client_config(config);
                let started = Instant::now();
                let limit = Duration::from_secs(90);
                let mut ready = Some(ready);
                'session: while started.elapsed() < limit {
                    let Ok(conn) = connect(&endpoint, addr, &id("coordinator")).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let hello = Hello {
                        protocol: PROTOCOL_VERSION,
                        job: job.spec().job.clone(),
                        job_digest: job.digest(),
                        data: None,
                    };
                    if frame::send(&conn, &hello).await.is_err() {
                        continue;
                    }
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    // Until told the job's end; a connection that ends is made again.
                    while let Ok(Ok(raw)) =
                        tokio::time::timeout(limit, frame::recv(&conn, Inbound::<u64>::limit)).await
                    {
                        let message = Inbound::<u128>::decode(&raw.bytes);
                        // What every node records: the restart of the coordinator it joined.
                        if let Ok(Inbound::Welcome(w)) = &message {
                            if w.restart > 0 {
                                trail
                                    .record(
                                        &CoordinatorRestarted {
                                            job: w.job.clone(),
                                            restart: w.restart,
                                        },
                                        SystemTime::now(),
                                    )
                                    .expect("coordinator.restarted");
                            }
                        }
                        if let Ok(Inbound::Notice(n)) = message {
                            let outcome = match n.kind {
                                NoticeKind::Finished => "finished",
                                NoticeKind::Aborted => "aborted",
                                _ => continue,
                            };
                            trail
                                .record(
                                    &JobEnded {
                                        job: job.spec().job.clone(),
                                        outcome: outcome.to_owned(),
                                        reason: None,
                                        release_digest: None,
                                    },
                                    SystemTime::now(),
                                )
                                .expect("job.ended");
                            break 'session;
                        }
                    }
                }
                endpoint.close(quinn::VarInt::from_u32(0), b"done");
            });
        })
    }

    fn checkpoint(&self) -> Option<serde_json::Value> {
        let text =
            std::fs::read_to_string(self.dir.join("out/coordinator.checkpoint.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn result(&self) -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.join("out/result.json")).expect("result"),
        )
        .expect("json")
    }
}

/// `node`'s process, and the others.
fn take_out(participants: Vec<(String, Child)>, node: &str) -> (Child, Vec<(String, Child)>) {
    let (one, others): (Vec<_>, Vec<_>) = participants.into_iter().partition(|(p, _)| p == node);
    let (_, child) = one.into_iter().next().expect("a running participant");
    (child, others)
}

/// Kills `node`'s process (SIGKILL, a crash) and returns the others.
fn kill_one(participants: Vec<(String, Child)>, node: &str) -> Vec<(String, Child)> {
    let (mut killed, others) = take_out(participants, node);
    killed.kill().expect("kill");
    let _ = killed.wait();
    others
}

fn wait(child: Child, what: &str) -> String {
    ok(child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what}: {e}")))
}

/// The result of an uninterrupted run, computed once per test binary.
fn reference(base: &Path) -> serde_json::Value {
    static REFERENCE: std::sync::Mutex<Option<serde_json::Value>> = std::sync::Mutex::new(None);
    let mut cached = REFERENCE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = &*cached {
        return r.clone();
    }
    let reference = Consortium::new(base, "reference");
    let coordinator = reference.coordinator();
    let participants = reference.participants();
    wait(coordinator, "coordinator");
    for p in participants {
        wait(p, "participant");
    }
    let result = reference.result();
    *cached = Some(result.clone());
    result
}

/// A consortium with the silent `payments`, started and watched until its first round is
/// complete: round 2 is then open, waiting for `payments` until its deadline.
struct Interrupted {
    c: Consortium,
    coordinator: Child,
    participants: Vec<(String, Child)>,
    silent: std::thread::JoinHandle<()>,
}

fn run_until_one_round_is_done(
    base: &Path,
    name: &str,
    round_ms: u64,
    decryption_ms: u64,
) -> Interrupted {
    let c = Consortium::with_timeouts(base, name, round_ms, decryption_ms);
    let mut coordinator = c.coordinator();
    let (ready_tx, ready) = mpsc::channel();
    let silent = c.silent_payments(ready_tx);
    ready
        .recv_timeout(Duration::from_secs(40))
        .expect("payments joined before the others");
    let participants = RUNNING
        .iter()
        .map(|p| (p.to_string(), c.participant(p)))
        .collect();
    let started = Instant::now();
    let one_round_done =
        |cp: serde_json::Value| cp["completed"].as_array().map(Vec::len) == Some(1);
    while !c.checkpoint().is_some_and(one_round_done) {
        if let Ok(Some(status)) = coordinator.try_wait() {
            panic!(
                "the coordinator ended ({status}) too early: {}",
                wait(coordinator, "coordinator")
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint after a round: {:?}",
            c.checkpoint()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Interrupted {
        c,
        coordinator,
        participants,
        silent,
    }
}

#[test]
fn a_killed_coordinator_restarts_and_the_job_ends_as_if_uninterrupted() {
    let base = tempfile::tempdir().expect("dir");
    let expected = reference(base.path());

    // Killed after the first completed round, while round 2 waits for the silent `payments`.
    let Interrupted {
        c,
        mut coordinator,
        participants,
        silent,
    } = run_until_one_round_is_done(base.path(), "killed", 1500, 30000);
    coordinator.kill().expect("kill");
    let _ = coordinator.wait();
    let restarted = c.coordinator();
    let out = wait(restarted, "restarted coordinator");
    assert!(
        out.contains("resumed job stats-demo after 1 completed rounds"),
        "{out}"
    );
    for (p, child) in participants {
        wait(child, &p);
    }
    silent.join().expect("silent peer");
    assert_eq!(c.result()["features"], expected["features"]);

    // The trail verifies and shows the restart, and no round number was reused.
    let trail = c.dir.join("out/coordinator.trail");
    ok(fedbank()
        .args(["audit", "verify"])
        .arg(&trail)
        .output()
        .expect("verify"));
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    let resumed = events
        .iter()
        .position(|e| e["event"] == "job.resumed")
        .expect("job.resumed in the trail");
    let rounds_after: Vec<u64> = events[resumed..]
        .iter()
        .filter(|e| e["event"] == "round.started")
        .filter_map(|e| e["fields"]["round"].as_u64())
        .collect();
    // Round 2 runs again under 3 if its requests had gone out before the crash, else as 2
    // (its number was never used).
    assert_eq!(rounds_after.len(), 1, "{rounds_after:?}");
    assert!([2, 3].contains(&rounds_after[0]), "{rounds_after:?}");
    // No round number was ever asked to be decrypted twice.
    let mut decrypted: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "decryption.requested")
        .filter_map(|e| e["fields"]["round"].as_u64())
        .collect();
    let all = decrypted.len();
    decrypted.dedup();
    assert_eq!(
        decrypted.len(),
        all,
        "a slot decrypted twice: {decrypted:?}"
    );

    // The run as an auditor receives it — the coordinator's output with every node's trail and
    // certificate — verifies, and its report tells the restart.
    let run = c.dir.join("out");
    let report = audit_report(&c.dir, &run);
    assert_eq!(report["verdict"], "verified", "{report:#}");
    let resumes = report["resumes"].as_array().expect("resumes");
    assert_eq!(resumes.len(), 1, "{report:#}");
    assert_eq!(resumes[0]["completed_rounds"], serde_json::json!([1]));
    assert!([2, 3].contains(&resumes[0]["next_round"].as_u64().expect("round")));
    // The restart is in two trails: every node that came back to the restarted coordinator
    // recorded its number, and the cross-check (verdict above) tied them to its `node.joined`.
    assert_eq!(resumes[0]["restart"], 1, "{report:#}");
    let seen_by: Vec<&str> = resumes[0]["seen_by"]
        .as_array()
        .expect("seen_by")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    for node in ["retail-bank", "insurer", "broker"] {
        assert!(seen_by.contains(&node), "{node} not in {seen_by:?}");
    }
    let slots = report["guarantees"]
        .as_array()
        .expect("guarantees")
        .iter()
        .find(|g| g["name"] == "One decryption per (round, quantity)")
        .expect("slot guarantee");
    assert_eq!(slots["state"], "held", "{slots}");
    let md = std::fs::read_to_string(run.join("audit-report.md")).expect("report");
    assert!(md.contains("## Restarts of the coordinator"), "{md}");
    assert!(md.contains("resumed from its checkpoint"), "{md}");
    assert!(
        md.contains("No slot decrypted twice across the restarts: held"),
        "{md}"
    );
    // The silent `payments` is in the evidence as what it was: left out of the rounds.
    assert!(
        report["data"]["dropped"].as_array().is_some_and(|d| d
            .iter()
            .any(|x| x.as_str().is_some_and(|x| x.starts_with("payments")))),
        "{report:#}"
    );
}

/// Gathers a run as an auditor receives it — `run` (the coordinator's out_dir) with every
/// node's trail in `trails/` and the certificates in `certs/` — and returns `fedbank audit
/// report --json`.
fn audit_report(dir: &Path, run: &Path) -> serde_json::Value {
    let trails = run.join("trails");
    std::fs::create_dir_all(&trails).expect("trails");
    for entry in std::fs::read_dir(run).expect("out") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "trail") {
            std::fs::copy(&path, trails.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let certs = run.join("certs");
    std::fs::create_dir_all(&certs).expect("certs");
    for entry in std::fs::read_dir(dir.join("sim/certs")).expect("certs") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "pem") {
            std::fs::copy(&path, certs.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let out = fedbank()
        .args(["audit", "report", "--json"])
        .arg(run)
        .output()
        .expect("audit report");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_killed_committee_member_restores_its_share_and_the_job_ends_as_if_uninterrupted() {
    let base = tempfile::tempdir().expect("dir");
    let expected = reference(base.path());

    // The member `insurer` is killed while round 2 is open, and started again.
    let Interrupted {
        c,
        coordinator,
        participants,
        silent,
    } = run_until_one_round_is_done(base.path(), "member-killed", 1500, 30000);
    let others = kill_one(participants, "insurer");
    let state = c.dir.join("out/insurer-committee");
    assert!(
        state.join("stats-demo.key-share").exists(),
        "the share was saved before the public share left"
    );
    let restarted = c.participant("insurer");
    let out = wait(restarted, "restarted insurer");
    assert!(out.contains("restored its committee key share"), "{out}");
    assert!(out.contains("insurer: job finished"), "{out}");
    wait(coordinator, "coordinator");
    for (p, child) in others {
        wait(child, &p);
    }
    silent.join().expect("silent peer");
    assert_eq!(c.result()["features"], expected["features"]);

    // The share on disk is owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("stats-demo.key-share"))
            .expect("share")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    // Round 2 could only be decrypted with the insurer's partial, released by the restarted
    // process (round 2 was held open by `payments` until after the kill).
    let released: Vec<u64> = std::fs::read_to_string(c.dir.join("out/insurer.trail"))
        .expect("trail")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("event"))
        .filter(|e| e["event"] == "decryption.released")
        .filter_map(|e| e["fields"]["round"].as_u64())
        .collect();
    assert!(released.iter().any(|&r| r >= 2), "{released:?}");
    // The insurer's own trail, continued after the restart, still verifies.
    ok(fedbank()
        .args(["audit", "verify"])
        .arg(c.dir.join("out/insurer.trail"))
        .output()
        .expect("verify"));
    // And so does the whole run, the member's restart included.
    let report = audit_report(&c.dir, &c.dir.join("out"));
    assert_eq!(report["verdict"], "verified", "{report:#}");
}

/// The coordinator is killed after its first decrypted round and its checkpoint is lost: started
/// again, it refuses to run the job from the beginning — that would be a second key setup of
/// the epoch, and the rounds decrypted again over another set of institutions — and says what
/// to do, leaving its trail as it was. The operator then opens a new key epoch: it is recorded
/// with the reason, the job runs again from its beginning under a fresh key ceremony with its
/// rounds numbered after every round on record, the members (restored from disk) take fresh
/// shares and keep their records, and the job ends with the uninterrupted result. The audit
/// report verifies and shows the epoch the operator opened.
#[test]
fn a_coordinator_that_lost_its_checkpoint_runs_the_job_again_only_in_a_key_epoch_the_operator_opens(
) {
    let base = tempfile::tempdir().expect("dir");
    let expected = reference(base.path());
    let Interrupted {
        c,
        mut coordinator,
        participants,
        silent,
    } = run_until_one_round_is_done(base.path(), "checkpoint-lost", 1500, 30000);
    coordinator.kill().expect("kill");
    let _ = coordinator.wait();
    std::fs::remove_file(c.dir.join("out/coordinator.checkpoint.json")).expect("lose it");
    let trail = c.dir.join("out/coordinator.trail");
    let before = std::fs::read(&trail).expect("trail");
    let out = c
        .coordinator()
        .wait_with_output()
        .expect("restarted coordinator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it ran the job again: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for part in [
        "there is no checkpoint",
        "records the key setup of job stats-demo (key epoch 1)",
        "decryptions (rounds [1",
        "--new-key-epoch",
        "or run the job again under a new job id",
    ] {
        assert!(stderr.contains(part), "'{part}' missing from:\n{stderr}");
    }
    assert_eq!(
        std::fs::read(&trail).expect("trail"),
        before,
        "the trail changed"
    );
    // The participants were told the coordinator stopped; the operator starts them again.
    for (_, mut child) in participants {
        let _ = child.kill();
        let _ = child.wait();
    }
    let last_round = events_so_far(&trail)
        .iter()
        .filter(|e| e["event"] == "round.started")
        .filter_map(|e| e["fields"]["round"].as_u64())
        .max()
        .expect("rounds on record");

    let reason = "checkpoint disk replaced after a controller failure; change CHG-4711";
    let coordinator = fedbank()
        .args(["coordinator", "--config"])
        .arg(c.dir.join("coordinator.toml"))
        .args(["--new-key-epoch", reason])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("coordinator in a new key epoch");
    // The silent `payments` is back first (its old connection idles out within a second), so
    // that it is told the outcome: the job would not wait for an institution not connected.
    let joined_before = times_joined(&c, "payments");
    let started = Instant::now();
    while times_joined(&c, "payments") == joined_before {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "payments did not join the coordinator of key epoch 2"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The new epoch holds each institution to the data it joined with in epoch 1 (read back
    // from the trail): `broker` on other data is refused.
    let joined = times_joined(&c, "broker");
    broker_on_other_data_is_refused(&c);
    assert_eq!(times_joined(&c, "broker"), joined, "admitted on other data");
    let participants = c.participants();
    let out = wait(coordinator, "coordinator in key epoch 2");
    assert!(
        out.contains("opening a new key epoch of job stats-demo"),
        "{out}"
    );
    for child in participants {
        let out = wait(child, "participant");
        assert!(!out.contains("refused a message"), "{out}");
    }
    silent.join().expect("silent peer");
    // The same institutions contributed, so the result is the uninterrupted run's.
    assert_eq!(c.result()["features"], expected["features"]);

    let events = events_so_far(&trail);
    let opened: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "key.epoch_opened")
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    let fields = &opened[0]["fields"];
    assert_eq!(fields["key_epoch"], 2);
    assert_eq!(fields["previous_epoch"], 1);
    assert_eq!(fields["reason"], reason);
    assert_eq!(fields["first_round"], last_round + 1);
    let setups: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "key.setup" && e["fields"]["stage"] == "requested")
        .filter_map(|e| e["fields"]["key_epoch"].as_u64())
        .collect();
    assert_eq!(setups, [1, 2]);
    // Every round of epoch 2 is numbered after every round of epoch 1: no slot reused.
    let after: Vec<u64> = events
        .iter()
        .skip_while(|e| e["event"] != "key.epoch_opened")
        .filter(|e| e["event"] == "round.started")
        .filter_map(|e| e["fields"]["round"].as_u64())
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|r| *r > last_round),
        "{after:?} after round {last_round}"
    );
    // Each member committed to one setup per epoch, restored its epoch-1 share from disk first.
    for member in RUNNING {
        let epochs: Vec<u64> = events_so_far(&c.dir.join(format!("out/{member}.trail")))
            .iter()
            .filter(|e| e["event"] == "key.setup")
            .filter(|e| e["fields"]["stage"] == "commitment to the public-key share sent")
            .filter_map(|e| e["fields"]["key_epoch"].as_u64())
            .collect();
        assert_eq!(epochs, [1, 2], "{member}");
    }

    let run = c.dir.join("out");
    let report = audit_report(&c.dir, &run);
    assert_eq!(report["verdict"], "verified", "{report:#}");
    let epochs = report["key_epochs"].as_array().expect("key epochs");
    assert_eq!(epochs.len(), 1, "{report:#}");
    assert_eq!(epochs[0]["reason"], reason);
    let setup = report["guarantees"]
        .as_array()
        .expect("guarantees")
        .iter()
        .find(|g| g["name"] == "One key setup per key epoch")
        .expect("key epoch guarantee");
    assert_eq!(setup["state"], "held", "{setup}");
    let md = std::fs::read_to_string(run.join("audit-report.md")).expect("report");
    assert!(md.contains("## Key epochs opened by the operator"), "{md}");
    assert!(md.contains(reason), "{md}");
}

/// `broker` started on the first 299 customers of its data: it is refused with both data
/// commitments named and what to do, and it stops.
fn broker_on_other_data_is_refused(c: &Consortium) {
    let data = c.dir.join("sim/data/broker/customers.csv");
    let fewer: Vec<String> = std::fs::read_to_string(&data)
        .expect("data")
        .lines()
        .take(300)
        .map(str::to_owned)
        .collect();
    std::fs::write(c.dir.join("broker-299.csv"), fewer.join("\n") + "\n").expect("other data");
    std::fs::write(
        c.dir.join("broker-other.toml"),
        std::fs::read_to_string(c.dir.join("broker.toml"))
            .expect("config")
            .replace("sim/data/broker/customers.csv", "broker-299.csv"),
    )
    .expect("config");
    let mut other = fedbank()
        .args(["participant", "--config"])
        .arg(c.dir.join("broker-other.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("broker on other data");
    // Refused at its Hello, it stops at once; one admitted would wait for rounds.
    let started = Instant::now();
    while other.try_wait().expect("broker").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = other.kill();
            panic!("broker on other data was not refused within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let other = other.wait_with_output().expect("broker on other data");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&other.stdout),
        String::from_utf8_lossy(&other.stderr)
    );
    assert!(!other.status.success(), "{text}");
    for part in [
        "not admitted",
        "joined this job with",
        "299 rows",
        "start it again with the data it joined with",
    ] {
        assert!(text.contains(part), "'{part}' missing from:\n{text}");
    }
}

/// Every complete event of a trail so far, in order (a line still being written is skipped:
/// for watching a running node's trail).
fn events_so_far(trail: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(trail)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits, at most `limit`, for an event `kind` in `trail` whose fields satisfy `wanted`.
fn wait_for_event(
    trail: &Path,
    kind: &str,
    limit: Duration,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let found = events_so_far(trail)
            .into_iter()
            .find(|e| e["event"] == kind && wanted(&e["fields"]));
        if let Some(event) = found {
            return event;
        }
        assert!(
            started.elapsed() < limit,
            "no {kind} in {} within {limit:?}",
            trail.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends `signal` to a child process this test started.
fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid"))
        .expect("a child's pid");
    rustix::process::kill_process(pid, signal).expect("signal");
}

/// The rounds of `node`'s `node.joined` events in the coordinator's trail (how often it was
/// admitted).
fn times_joined(c: &Consortium, node: &str) -> usize {
    events_so_far(&c.dir.join("out/coordinator.trail"))
        .iter()
        .filter(|e| e["event"] == "node.joined" && e["fields"]["node"] == node)
        .count()
}

/// A participant killed in the middle of a round and started again at once, while the
/// coordinator still holds its old connection (idle timeout 30 s). Started first on another
/// data file (its first 299 customers), it is refused, told why and stops; started on the data
/// it joined with, its new connection replaces the old one, it is admitted again within seconds,
/// counted once, and the job ends with the uninterrupted result.
#[test]
fn a_participant_back_at_once_after_a_crash_is_admitted_again_and_counted_once() {
    let base = tempfile::tempdir().expect("dir");
    let expected = reference(base.path());
    // Rounds wait 10 s for the silent `payments`: time for both restarts within round 2.
    let Interrupted {
        c,
        coordinator,
        participants,
        silent,
    } = run_until_one_round_is_done(base.path(), "participant-back", 10000, 30000);
    let others = kill_one(participants, "broker");
    let crashed_at = Instant::now();

    // Another data file: refused with both commitments named, and it stops.
    broker_on_other_data_is_refused(&c);
    assert_eq!(times_joined(&c, "broker"), 1, "admitted on other data");

    let restarted = c.participant("broker");
    while times_joined(&c, "broker") < 2 {
        if crashed_at.elapsed() > Duration::from_secs(20) {
            let output = |mut child: Child| {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            };
            panic!(
                "broker not admitted again within 20 s of its crash (the old connection's idle timeout is 30 s):\n{}\ncoordinator:\n{}",
                output(restarted),
                output(coordinator)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = wait(restarted, "restarted broker");
    assert!(out.contains("broker: job finished"), "{out}");
    let coordinator_out = wait(coordinator, "coordinator");
    assert!(
        !coordinator_out.contains("Hello twice"),
        "{coordinator_out}"
    );
    for (p, child) in others {
        wait(child, &p);
    }
    silent.join().expect("silent peer");
    assert_eq!(times_joined(&c, "broker"), 2);
    // Same contributors in every round, same result.
    assert_eq!(c.result()["features"], expected["features"]);
    let report = audit_report(&c.dir, &c.dir.join("out"));
    assert_eq!(report["verdict"], "verified", "{report:#}");
}

/// The committee member `insurer` stopped (SIGSTOP) as soon as the coordinator has its round-2
/// contribution, so that it cannot answer the decryption request that follows, then killed
/// once that request is on record and started again after `away`. Returns the run, or `None`
/// when the member answered before it could be stopped (the window is a few milliseconds).
fn member_killed_during_decryption(
    base: &Path,
    name: &str,
    decryption_timeout_ms: u64,
    away: Duration,
) -> Option<(Consortium, String)> {
    let Interrupted {
        c,
        coordinator,
        participants,
        silent,
    } = run_until_one_round_is_done(base, name, 1500, decryption_timeout_ms);
    let member_trail = c.dir.join("out/insurer.trail");
    let coordinator_trail = c.dir.join("out/coordinator.trail");
    let (mut insurer, others) = take_out(participants, "insurer");
    // Stopped once the coordinator has its round-2 contribution (its own trail says it sent it
    // a moment before it does).
    let revealed = wait_for_event(
        &coordinator_trail,
        "contribution.received",
        Duration::from_secs(30),
        |f| f["node"] == "insurer" && f["round"].as_u64().is_some_and(|r| r >= 2),
    );
    signal(&insurer, rustix::process::Signal::STOP);
    let round = revealed["fields"]["round"].as_u64().expect("round");
    wait_for_event(
        &coordinator_trail,
        "decryption.requested",
        Duration::from_secs(30),
        |f| f["round"].as_u64() == Some(round),
    );
    let answered = events_so_far(&member_trail).iter().any(|e| {
        e["event"] == "decryption.released" && e["fields"]["round"].as_u64() == Some(round)
    });
    insurer.kill().expect("kill");
    let _ = insurer.wait();
    if answered {
        // It answered before it was stopped: not the case under test. Stop this run.
        eprintln!("{name}: the member answered before it was stopped; running again");
        for (_, mut child) in others {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut coordinator = coordinator;
        let _ = coordinator.kill();
        let _ = coordinator.wait();
        drop(silent);
        return None;
    }
    std::thread::sleep(away);
    let out = wait(c.participant("insurer"), "restarted insurer");
    assert!(out.contains("restored its committee key share"), "{out}");
    assert!(out.contains("insurer: job finished"), "{out}");
    let coordinator_out = wait(coordinator, "coordinator");
    for (p, child) in others {
        wait(child, &p);
    }
    silent.join().expect("silent peer");
    // The round the member was stopped in was decrypted with the partial of its restarted
    // process.
    let released: Vec<u64> = events_so_far(&member_trail)
        .iter()
        .filter(|e| e["event"] == "decryption.released")
        .filter_map(|e| e["fields"]["round"].as_u64())
        .collect();
    assert!(released.iter().any(|&r| r >= round), "{released:?}");
    Some((c, coordinator_out))
}

/// Runs the member-killed-during-decryption case until the stop landed before the member's
/// answer (at most three runs).
fn member_away_during_decryption(
    base: &Path,
    name: &str,
    decryption_timeout_ms: u64,
    away: Duration,
) -> (Consortium, String) {
    (1..=3)
        .find_map(|run| {
            member_killed_during_decryption(
                base,
                &format!("{name}-{run}"),
                decryption_timeout_ms,
                away,
            )
        })
        .expect("in three runs the member answered every time before it could be stopped")
}

/// Back within the decryption deadline (1 s of 30 s): the coordinator sends the member the
/// request it missed as soon as it says Hello again; the round is decrypted as it was, with no
/// retry, and the job ends with the uninterrupted result.
#[test]
fn a_member_killed_during_decryption_and_back_after_a_second_answers_the_same_request() {
    let base = tempfile::tempdir().expect("dir");
    let expected = reference(base.path());
    let (c, coordinator_out) =
        member_away_during_decryption(base.path(), "member-back-1s", 30000, Duration::from_secs(1));
    let trail = events_so_far(&c.dir.join("out/coordinator.trail"));
    assert!(
        !trail.iter().any(|e| e["event"] == "decryption.retried"),
        "{coordinator_out}"
    );
    assert_eq!(c.result()["features"], expected["features"]);
    let report = audit_report(&c.dir, &c.dir.join("out"));
    assert_eq!(report["verdict"], "verified", "{report:#}");
}

/// Back after the decryption deadline (5 s against 3 s here; 35 s against the shipped 30 s is
/// the same case): the round's decryption is abandoned, recorded, and the round run again under
/// a new number once the whole committee is back; no slot is decrypted twice and the job ends
/// with the uninterrupted result.
#[test]
fn a_member_killed_during_decryption_and_back_after_the_deadline_costs_one_retry() {
    let base = tempfile::tempdir().expect("dir");
    let expected = reference(base.path());
    let (c, coordinator_out) = member_away_during_decryption(
        base.path(),
        "member-back-late",
        3000,
        Duration::from_secs(5),
    );
    let trail = events_so_far(&c.dir.join("out/coordinator.trail"));
    let retried = trail
        .iter()
        .filter(|e| e["event"] == "decryption.retried")
        .count();
    assert_eq!(retried, 1, "{coordinator_out}");
    assert_eq!(c.result()["features"], expected["features"]);
    let report = audit_report(&c.dir, &c.dir.join("out"));
    assert_eq!(report["verdict"], "verified", "{report:#}");
    let slots = report["guarantees"]
        .as_array()
        .expect("guarantees")
        .iter()
        .find(|g| g["name"] == "One decryption per (round, quantity)")
        .expect("slot guarantee");
    assert_eq!(slots["state"], "held", "{slots}");
}
