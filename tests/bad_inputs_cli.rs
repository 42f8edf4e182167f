//! A catalogue of bad inputs given to real `fedbank` processes: malformed and wrong
//! configuration, missing files, customer tables with wrong types, undecodable bytes, NaN,
//! infinities, huge values, empty tables, hostile shapes (a header a million columns wide, an
//! 8 MiB line, a 20 KB cell, a quoted cell of 200,000 line breaks), loose key permissions, a
//! corrupt checkpoint. Each must stop the node with a clear error that names what is wrong and
//! where, without a panic, and leave the node's state as it was (no trail started, the
//! checkpoint untouched).
//!
//! Good inputs in unusual shapes (CRLF line endings, a UTF-8 byte-order mark, quoted cells, the
//! missing-value spellings `NA`, `NaN`, `null`) must be accepted: those participants get past
//! their data and start their trail, which happens just before they connect.
//!
//! Hostile peers on the network (wrong-size and wrong-profile ciphertexts, a valid certificate
//! for an id not in the job, malformed frames) are in `consortium_loopback.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fedbank() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedbank"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

struct Setup {
    dir: PathBuf,
    _keep: tempfile::TempDir,
}

const HEADER: &str =
    "customer_id,age,income,balance,tenure_months,products_held,transactions_12m,spend_12m";
const ROW: &str = "A-1,33,55304,847,5,1,147,6633.22";

impl Setup {
    fn new() -> Self {
        let keep = tempfile::tempdir().expect("dir");
        let dir = keep.path().to_path_buf();
        let out = fedbank()
            .args(["certs", "init", "--out"])
            .arg(dir.join("certs"))
            .args(["--nodes", "coordinator,retail-bank,insurer,broker,payments"])
            .output()
            .expect("certs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/simulate-stats.toml"),
            dir.join("job.toml"),
        )
        .expect("job");
        std::fs::write(dir.join("customers.csv"), format!("{HEADER}\n{ROW}\n")).expect("csv");
        Self { dir, _keep: keep }
    }

    /// A participant configuration; `extra` lines are appended, `data` names the table.
    fn participant_config(&self, name: &str, data: &str, extra: &str) -> PathBuf {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("port")
            .port();
        let path = self.dir.join(name);
        std::fs::write(
            &path,
            format!(
                "job_file = \"job.toml\"\nid = \"retail-bank\"\ndata = \"{data}\"\n\
                 coordinator_address = \"127.0.0.1:{port}\"\ncoordinator_id = \"coordinator\"\n\
                 certs_dir = \"certs\"\ntrail = \"{name}.trail\"\nconnect_attempts = 1\n{extra}"
            ),
        )
        .expect("config");
        path
    }

    fn table(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.dir.join(name), bytes).expect("table");
        name.to_owned()
    }

    /// Runs `fedbank participant` and returns its error output; it must fail without a panic
    /// and without having started its trail.
    fn participant_fails(&self, config: &Path) -> String {
        let out = fedbank()
            .args(["participant", "--config"])
            .arg(config)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{} was accepted", config.display());
        assert!(!stderr.contains("panicked"), "{stderr}");
        let trail = config.with_extension("toml.trail");
        let name = config.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            !trail.exists() && !self.dir.join(format!("{name}.trail")).exists(),
            "a trail was started for {name}"
        );
        stderr
    }
}

fn assert_names(stderr: &str, parts: &[&str]) {
    for part in parts {
        assert!(stderr.contains(part), "'{part}' missing from:\n{stderr}");
    }
}

#[test]
fn bad_configuration_and_files_are_named() {
    let s = Setup::new();
    // The configuration file itself.
    let missing = s.dir.join("nowhere.toml");
    assert_names(&s.participant_fails(&missing), &["nowhere.toml"]);
    let broken = s.dir.join("broken.toml");
    std::fs::write(&broken, "job_file = \"job.toml\nid = 3\n").expect("write");
    assert_names(&s.participant_fails(&broken), &["broken.toml", "line"]);
    let c = s.participant_config("unknown.toml", "customers.csv", "colour = \"blue\"\n");
    assert_names(&s.participant_fails(&c), &["unknown.toml", "colour"]);
    let c = s.participant_config("attempts.toml", "customers.csv", "");
    let text = std::fs::read_to_string(&c).expect("read");
    std::fs::write(
        &c,
        text.replace("connect_attempts = 1", "connect_attempts = 0"),
    )
    .expect("w");
    assert_names(
        &s.participant_fails(&c),
        &["attempts.toml", "connect_attempts"],
    );
    // Files it names.
    let c = s.participant_config("nodata.toml", "absent.csv", "");
    assert_names(&s.participant_fails(&c), &["absent.csv"]);
    let c = s.participant_config("nojob.toml", "customers.csv", "");
    let text = std::fs::read_to_string(&c).expect("read");
    std::fs::write(&c, text.replace("job.toml", "other-job.toml")).expect("w");
    assert_names(&s.participant_fails(&c), &["other-job.toml"]);
    // A job file that does not validate.
    let job = std::fs::read_to_string(s.dir.join("job.toml")).expect("job");
    std::fs::write(
        s.dir.join("bad-job.toml"),
        job.replace("min_participants = 3", "min_participants = 9"),
    )
    .expect("w");
    let c = s.participant_config("badjob.toml", "customers.csv", "");
    let text = std::fs::read_to_string(&c).expect("read");
    std::fs::write(&c, text.replace("\"job.toml\"", "\"bad-job.toml\"")).expect("w");
    assert_names(
        &s.participant_fails(&c),
        &["bad-job.toml", "min_participants"],
    );
    // A private key others can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = s.dir.join("certs/retail-bank.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let c = s.participant_config("loosekey.toml", "customers.csv", "");
        assert_names(&s.participant_fails(&c), &["retail-bank.key", "chmod 600"]);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

#[test]
fn bad_customer_tables_are_named_with_line_and_column() {
    let s = Setup::new();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "wrong-type.csv",
            format!("{HEADER}\n{ROW}\nA-2,thirty,1,1,1,1,1,1\n").into_bytes(),
            vec!["wrong-type.csv", "line 3", "age", "thirty"],
        ),
        (
            "infinite.csv",
            format!("{HEADER}\n{ROW}\nA-2,40,1,inf,1,1,1,1\n").into_bytes(),
            vec!["infinite.csv", "line 3", "balance", "inf"],
        ),
        (
            "minus-infinity.csv",
            format!("{HEADER}\n{ROW}\nA-2,40,1,1,1,1,-Infinity,1\n").into_bytes(),
            vec![
                "minus-infinity.csv",
                "line 3",
                "transactions_12m",
                "-Infinity",
            ],
        ),
        (
            "huge.csv",
            format!("{HEADER}\n{ROW}\nA-2,40,1,1,1e999,1,1,1\n").into_bytes(),
            vec!["huge.csv", "line 3", "tenure_months", "1e999"],
        ),
        (
            "header-only.csv",
            format!("{HEADER}\n").into_bytes(),
            vec!["header-only.csv", "no data rows"],
        ),
        ("empty.csv", Vec::new(), vec!["empty.csv"]),
        (
            "missing-column.csv",
            "customer_id,age\nA-1,33\n".as_bytes().to_vec(),
            vec!["missing-column.csv", "income"],
        ),
        (
            "latin1.csv",
            {
                let mut b = format!("{HEADER}\n{ROW}\n").into_bytes();
                b.extend_from_slice(b"A-2,4\xe9,1,1,1,1,1,1\n");
                b
            },
            vec!["latin1.csv", "UTF-8", "line 3"],
        ),
        (
            "ragged.csv",
            format!("{HEADER}\n{ROW}\nA-2,40,1\n").into_bytes(),
            vec!["ragged.csv", "line: 3", "3 fields"],
        ),
        // Hostile shapes: each refused at its limit, in time linear in what was read.
        (
            "wide.csv",
            format!(
                "{HEADER},{}\n{ROW}\n",
                (0..5000)
                    .map(|i| format!("x{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .into_bytes(),
            vec!["wide.csv", "line 1", "5008 columns", "at most 4096"],
        ),
        (
            "million-columns.csv",
            (0..1_000_000)
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(",")
                .into_bytes(),
            vec!["million-columns.csv", "line 1", "longer than 1048576 bytes"],
        ),
        (
            "one-long-line.csv",
            {
                let mut b = format!("{HEADER}\n").into_bytes();
                b.extend(std::iter::repeat_n(b'7', 8 << 20));
                b
            },
            vec!["one-long-line.csv", "line 2", "longer than 1048576 bytes"],
        ),
        (
            "long-cell.csv",
            format!("{HEADER}\n{ROW}\n{},40,1,1,1,1,1,1\n", "A".repeat(20_000)).into_bytes(),
            vec![
                "long-cell.csv",
                "line 3",
                "customer_id",
                "20000 bytes",
                "at most 16384",
            ],
        ),
        (
            "quoted-line-breaks.csv",
            format!(
                "{HEADER}\n{ROW}\n\"A-2{}\",40,1,1,1,1,1,1\n",
                "\nxxxxxxx".repeat(200_000)
            )
            .into_bytes(),
            vec![
                "quoted-line-breaks.csv",
                "line 3",
                "longer than 1048576 bytes",
            ],
        ),
    ];
    for (name, bytes, expected) in cases {
        let data = s.table(name, &bytes);
        let c = s.participant_config(&format!("{name}.toml"), &data, "");
        let stderr = s.participant_fails(&c);
        assert_names(&stderr, &expected);
        assert!(
            !stderr.contains("could not reach"),
            "{name} got as far as the network:\n{stderr}"
        );
    }
}

#[test]
fn unusual_but_valid_tables_are_accepted() {
    let s = Setup::new();
    for (name, bytes) in [
        ("crlf.csv", format!("{HEADER}\r\n{ROW}\r\n").into_bytes()),
        ("bom.csv", format!("\u{feff}{HEADER}\n{ROW}\n").into_bytes()),
        (
            "quoted.csv",
            format!("{HEADER}\n\"A-1\",\"33\",55304,847,5,1,147,6633.22\n").into_bytes(),
        ),
        (
            "missing-values.csv",
            format!("{HEADER}\n{ROW}\nA-2,,NA,null,NaN,1,1,1\n").into_bytes(),
        ),
    ] {
        let data = s.table(name, &bytes);
        let c = s.participant_config(&format!("{name}.toml"), &data, "");
        let mut child = fedbank()
            .args(["participant", "--config"])
            .arg(&c)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        let trail = s.dir.join(format!("{name}.toml.trail"));
        let started = std::time::Instant::now();
        while !trail.exists() {
            if let Ok(Some(_)) = child.try_wait() {
                let out = child.wait_with_output().expect("output");
                panic!(
                    "{name} was refused: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "{name}: no trail"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn a_corrupt_or_foreign_checkpoint_stops_the_coordinator_and_is_left_as_it_was() {
    let s = Setup::new();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|x| x.local_addr())
        .expect("port")
        .port();
    std::fs::create_dir_all(s.dir.join("out")).expect("out");
    let config = s.dir.join("coordinator.toml");
    std::fs::write(
        &config,
        format!(
            "job_file = \"job.toml\"\nid = \"coordinator\"\nlisten = \"127.0.0.1:{port}\"\n\
             certs_dir = \"certs\"\nout_dir = \"out\"\n"
        ),
    )
    .expect("config");
    let checkpoint = s.dir.join("out/coordinator.checkpoint.json");
    for (what, bytes, expected) in [
        ("corrupt", b"{\"job\": \"stats-demo\", \"next_round".to_vec(), "not a checkpoint"),
        (
            "foreign",
            br#"{"job":"other","job_digest":"00","mask_seed":"00","setup":null,"joint_key":null,"next_round":1,"completed":[]}"#.to_vec(),
            "coordinator.checkpoint.json",
        ),
    ] {
        std::fs::write(&checkpoint, &bytes).expect("checkpoint");
        let out = fedbank()
            .args(["coordinator", "--config"])
            .arg(&config)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} checkpoint accepted");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_names(&stderr, &["coordinator.checkpoint.json", expected]);
        assert_eq!(
            std::fs::read(&checkpoint).expect("still there"),
            bytes,
            "the {what} checkpoint was changed"
        );
    }
}
