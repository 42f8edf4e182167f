//! The fuzz targets' bodies on every `cargo test`: each target's seeds (valid inputs) and
//! every finding saved under `fuzz/regressions/<target>/` run through their target without a
//! panic, and the seeds really reach the decoders' success paths (a seed that stopped decoding
//! would leave the fuzzer starting from nothing).

use std::path::Path;

fn target(name: &str) -> fn(&[u8]) {
    fedbank_fuzzing::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

#[test]
fn every_target_has_seeds_and_runs_them_and_every_saved_finding() {
    let seeds = fedbank_fuzzing::seeds();
    // Saved findings first: each is an input that once made its target fail.
    let saved = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for (name, body) in fedbank_fuzzing::TARGETS {
        for entry in std::fs::read_dir(saved.join(name)).into_iter().flatten() {
            let path = entry.expect("entry").path();
            body(&std::fs::read(&path).expect("finding"));
        }
    }
    for (name, _) in fedbank_fuzzing::TARGETS {
        let mine: Vec<&Vec<u8>> = seeds
            .iter()
            .filter(|(t, _)| t == name)
            .map(|(_, b)| b)
            .collect();
        assert!(!mine.is_empty(), "target {name} has no seed");
        for seed in mine {
            target(name)(seed);
            // Truncations and single-byte flips of a valid input are the fuzzer's first moves.
            for cut in [0, 1, seed.len() / 2, seed.len().saturating_sub(1)] {
                target(name)(&seed[..cut.min(seed.len())]);
            }
            for at in [
                0,
                seed.len() / 3,
                seed.len() / 2,
                seed.len().saturating_sub(1),
            ] {
                let mut flipped = seed.clone();
                if let Some(b) = flipped.get_mut(at) {
                    *b ^= 0x5a;
                }
                target(name)(&flipped);
            }
        }
    }
}

#[test]
fn seeds_are_valid_inputs() {
    use fedbank_common::protocol::Inbound;
    for (name, bytes) in fedbank_fuzzing::seeds() {
        match name {
            "message" => {
                Inbound::<u64>::decode(&bytes).expect("message seed decodes");
            }
            "frame" => {
                let frame = fedbank_transport::frame::frame_from_stream_bytes(
                    &bytes,
                    Inbound::<u64>::limit,
                )
                .expect("frame seed is a frame");
                Inbound::<u64>::decode(&frame.bytes).expect("frame seed decodes");
            }
            "parity" => {
                let frame = fedbank_fuzzing::reassemble(&bytes)
                    .expect("parity seed rebuilds its message without the lost piece");
                Inbound::<u64>::decode(&frame.bytes).expect("and it decodes");
            }
            "ciphertext" => {
                fedbank_common::wire::decode::<fedbank_common::secagg::Ciphertext<u64>>(&bytes)
                    .expect("ciphertext seed decodes")
                    .validate()
                    .expect("and is valid");
            }
            "trail" => {
                fedbank_common::audit::verify_reader(bytes.as_slice(), None)
                    .expect("trail seed verifies");
            }
            _ => {}
        }
    }
}
