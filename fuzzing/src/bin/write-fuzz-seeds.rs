//! Writes the seed inputs of every fuzz target to `<dir>/<target>/seed-<n>` (the corpus
//! directories `fuzz/run-short` starts libFuzzer from).

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: write-fuzz-seeds <corpus dir>");
        std::process::exit(2);
    };
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (target, bytes) in fedbank_fuzzing::seeds() {
        let n = counts.entry(target).or_default();
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        std::fs::write(target_dir.join(format!("seed-{n}")), bytes)?;
        *n += 1;
    }
    for (target, n) in counts {
        println!("{target}: {n} seeds");
    }
    Ok(())
}
