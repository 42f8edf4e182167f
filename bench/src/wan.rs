//! `fedbank bench wan`: shipped jobs simulated twice in the same run — on plain loopback (the
//! baseline) and with every node behind its own impaired link (delay, jitter, loss, rate; see
//! [`fedbank_consortium::impaired_link`]) — printing each job's wall time next to its loopback
//! time, and the round trips per round the difference implies.
//!
//! Round trips are read off the coordinator's own trail: a round lasts from its
//! `round.started` to its `round.completed` (request, contributions, decryption by the
//! committee, release), so (median WAN round − median loopback round) ÷ RTT is what the
//! network adds to a round, in round trips. The job's figure, (WAN wall − loopback wall) ÷
//! RTT, also counts connecting, the key setup and the end of the job.

use anyhow::{bail, Context, Result};
use clap::Args;
use fedbank_common::audit::AuditEvent;
use fedbank_consortium::impaired_link::LinkProfile;
use fedbank_consortium::simulate::{self, SimulateOptions, SimulationRun};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `fedbank bench wan`.
#[derive(Args, Debug)]
pub struct WanArgs {
    /// Job files to run (each with a [simulation] table).
    #[arg(long = "job", default_values_t = [
        "configs/simulate-stats.toml".to_owned(),
        "configs/propensity-telco.toml".to_owned(),
    ])]
    jobs: Vec<String>,
    /// One-way delay in milliseconds (the round trip is twice this).
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    /// Jitter in milliseconds, uniform in ± this around the delay.
    #[arg(long, default_value_t = 10)]
    jitter_ms: u64,
    /// Packet loss in percent, each direction.
    #[arg(long, default_value_t = 0.0)]
    loss_percent: f64,
    /// Link rate in Mbit/s, each direction (default: no limit).
    #[arg(long)]
    rate_mbit: Option<f64>,
    /// Seed of the loss and jitter draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Working directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl WanArgs {
    fn profile(&self) -> Result<LinkProfile> {
        let profile = LinkProfile {
            delay: Duration::from_millis(self.delay_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            loss: self.loss_percent / 100.0,
            rate_bits_per_second: self.rate_mbit.map(|m| (m * 1e6) as u64),
            seed: self.seed,
        };
        profile.validate().map_err(|e| {
            anyhow::anyhow!("--delay-ms/--jitter-ms/--loss-percent/--rate-mbit: {e}")
        })?;
        Ok(profile)
    }
}

/// One simulation's figures.
struct Measured {
    seconds: f64,
    rounds: Vec<f64>,
}

impl Measured {
    fn median_round(&self) -> f64 {
        let mut r = self.rounds.clone();
        r.sort_by(f64::total_cmp);
        match r.len() {
            0 => 0.0,
            n if n % 2 == 1 => r[n / 2],
            n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
        }
    }
}

/// Runs the benchmark and prints its table.
pub fn run(args: &WanArgs) -> Result<()> {
    let profile = args.profile()?;
    let rtt = profile.round_trip().as_secs_f64();
    let work = crate::load::WorkingDir::new(args.dir.as_deref(), "wan")?;
    let dir = work.path();
    println!(
        "link: {profile} (round trip {:.0} ms), each node on its own",
        rtt * 1e3
    );
    let mut lines = Vec::new();
    for job in &args.jobs {
        let name = Path::new(job)
            .file_stem()
            .map_or("job".to_owned(), |s| s.to_string_lossy().into_owned());
        println!("{name}: loopback…");
        let base = measure(job, &dir.join(format!("{name}-loopback")), None)?;
        println!("{name}: {profile}…");
        let wan = measure(job, &dir.join(format!("{name}-wan")), Some(profile))?;
        let per_round = if rtt > 0.0 {
            (wan.median_round() - base.median_round()) / rtt
        } else {
            0.0
        };
        let per_job = if rtt > 0.0 {
            (wan.seconds - base.seconds) / rtt
        } else {
            0.0
        };
        lines.push(format!(
            "{name:<24} {:>7} {:>10.2} {:>10.2} {:>12.3} {:>12.3} {:>10.1} {:>9.0}",
            wan.rounds.len(),
            base.seconds,
            wan.seconds,
            base.median_round(),
            wan.median_round(),
            per_round,
            per_job,
        ));
    }
    println!(
        "\n{:<24} {:>7} {:>10} {:>10} {:>12} {:>12} {:>10} {:>9}",
        "job", "rounds", "loopback", "wan", "round loop", "round wan", "RTT/round", "RTT/job"
    );
    for line in lines {
        println!("{line}");
    }
    println!(
        "(seconds; a round is the coordinator's round.started to round.completed, median; RTT/round = \
         (round wan − round loop) ÷ {:.0} ms; RTT/job = (wan − loopback) ÷ {:.0} ms, with connecting and key setup)",
        rtt * 1e3,
        rtt * 1e3
    );
    Ok(())
}

fn measure(job: &str, out: &Path, link: Option<LinkProfile>) -> Result<Measured> {
    let mut options = SimulateOptions::new(PathBuf::from(job), Some(out.to_path_buf()));
    options.link = link;
    options.quiet = true;
    let SimulationRun {
        out,
        federated_seconds,
        finished,
    } = simulate::run(&options).with_context(|| format!("simulating {job}"))?;
    if !finished {
        bail!("{job}: the job did not finish; see {}", out.display());
    }
    let rounds = round_seconds(&out.join("trails"))?;
    Ok(Measured {
        seconds: federated_seconds,
        rounds,
    })
}

/// Each round's duration in the coordinator's trail (the trail with `round.started` events).
fn round_seconds(trails: &Path) -> Result<Vec<f64>> {
    for entry in std::fs::read_dir(trails)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "trail") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let mut started = std::collections::BTreeMap::new();
        let mut rounds = Vec::new();
        for line in text.lines() {
            let event: AuditEvent = serde_json::from_str(line)
                .with_context(|| format!("reading {}", path.display()))?;
            let key = event.fields.get("round").map(|r| r.to_string());
            let at = time::OffsetDateTime::parse(
                &event.time,
                &time::format_description::well_known::Rfc3339,
            )?;
            match event.event.as_str() {
                "round.started" => {
                    // A retried round counts from its first attempt.
                    started.entry(key).or_insert(at);
                }
                "round.completed" => {
                    if let Some(begun) = started.remove(&key) {
                        rounds.push((at - begun).as_seconds_f64());
                    }
                }
                _ => {}
            }
        }
        if !rounds.is_empty() {
            return Ok(rounds);
        }
    }
    bail!("no trail in {} records a completed round", trails.display())
}
