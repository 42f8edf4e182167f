//! `fedbank bench secagg` end to end, on a small size: the JSON fields tools rely on, and a
//! correct aggregate in the same run.

use std::process::Command;

/// `fedbank bench secagg --json` over `values` values from `contributors` contributors and a
/// committee of two (one tfhe sample); its standard output.
fn bench_json(values: &str, contributors: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fedbank"))
        .args([
            "bench",
            "secagg",
            "--values",
            values,
            "--contributors",
            contributors,
            "--committee",
            "2",
            "--tfhe-sample",
            "1",
            "--json",
        ])
        .output()
        .expect("run fedbank");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn bench_json_has_every_field_and_a_correct_sum() {
    let stdout = bench_json("5000", "3");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one JSON object per profile: {stdout}");
    for (line, profile) in lines.iter().zip(["strict", "fast"]) {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["profile"], profile);
        assert_eq!(v["values"], 5000);
        assert_eq!(v["contributors"], 3);
        assert_eq!(v["committee"], 2);
        assert_eq!(v["correct"], true);
        for field in [
            "plaintext_sum_s_per_value",
            "encrypt_s_per_value",
            "aggregate_s_per_value",
            "partial_decrypt_s_per_value",
            "combine_s_per_value",
            "bytes_per_value",
            "tfhe_fheuint32_add_s_per_value",
        ] {
            let x = v[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{field} missing: {line}"));
            assert!(x > 0.0, "{field} = {x}");
        }
        // On the wire: one mask polynomial per chunk of n values, and one body per value with
        // its low bits rounded away (strict: 16-byte masks, 12-byte bodies, n = 4096; fast:
        // 8-byte masks, 6-byte bodies, n = 2048), plus a header and length prefixes.
        let (n, mask, body) = if profile == "strict" {
            (4096, 16, 12)
        } else {
            (2048, 8, 6)
        };
        let payload = (5000usize.div_ceil(n) * n * mask + 5000 * body) as f64;
        let bytes = v["bytes_per_value"].as_f64().expect("bytes") * 5000.0;
        assert!(
            bytes >= payload && bytes < payload + 64.0,
            "{bytes} bytes for a {payload}-byte payload"
        );
    }
}

/// Ten contributors leave the fast profile too few message bits for one limb per value: the
/// aggregate holds two slots per value, and the bench still checks its sum.
#[test]
fn bench_with_two_limbs_per_value_is_correct() {
    let stdout = bench_json("2000", "10");
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["correct"], true, "{line}");
    }
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
}

#[test]
fn bench_refuses_a_bad_profile_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_fedbank"))
        .args(["bench", "secagg", "--profile", "turbo"])
        .output()
        .expect("run fedbank");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown crypto profile 'turbo'"),
        "{stderr}"
    );
}

/// `fedbank bench large-table` on a small size: both runs (baseline and large) finish the
/// segmentation job with the large participant as its own process, and its figures — time to
/// read its log, a time for every round, its peak memory — are printed.
#[test]
fn large_table_bench_reports_the_participants_own_figures() {
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_fedbank"))
        .args([
            "bench",
            "large-table",
            "--rows",
            "40000",
            "--customers",
            "2000",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run fedbank");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 7 && w[0].parse::<u64>().is_ok())
        .collect();
    assert_eq!(table.len(), 2, "{stdout}");
    assert_eq!(table[0][0], "4000");
    assert_eq!(table[1][0], "40000");
    for row in &table {
        assert!(row[4].parse::<f64>().is_ok(), "read time missing: {stdout}");
        assert!(
            row[5].parse::<f64>().is_ok_and(|mb| mb > 0.0),
            "peak memory missing: {stdout}"
        );
    }
    assert!(
        stdout.contains("round 5 (kmeans) computed and encrypted in"),
        "{stdout}"
    );
}
