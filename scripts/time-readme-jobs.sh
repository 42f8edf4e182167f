#!/usr/bin/env bash
# Times the README's jobs (telco propensity, CDNOW segmentation, compliance) with two fedbank
# binaries in one run, interleaved, three times each, and prints the median of each and their
# ratio: the "before and after" of a change measured on the same machine at the same time.
#
#   git worktree add /tmp/before <commit> && (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release)
#   cargo build --release
#   scripts/time-readme-jobs.sh /tmp/before-target/release/fedbank target/release/fedbank
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 BEFORE_BINARY AFTER_BINARY" >&2
    exit 2
fi
before=$1
after=$2
cd "$(dirname "$0")/.."
median() { sort -n | sed -n 2p; }
for job in configs/propensity-telco.toml configs/segment-cdnow.toml configs/compliance-synthetic.toml; do
    times_before=()
    times_after=()
    for _ in 1 2 3; do
        for which in before after; do
            exe=${!which}
            out=$(mktemp -d)
            start=$(date +%s.%N)
            if ! "$exe" simulate --job "$job" --out "$out/run" > "$out/log" 2>&1; then
                echo "$which failed on $job:" >&2
                tail -5 "$out/log" >&2
                exit 1
            fi
            end=$(date +%s.%N)
            elapsed=$(echo "$end - $start" | bc)
            if [ "$which" = before ]; then times_before+=("$elapsed"); else times_after+=("$elapsed"); fi
            rm -rf "$out"
        done
    done
    b=$(printf '%s\n' "${times_before[@]}" | median)
    a=$(printf '%s\n' "${times_after[@]}" | median)
    printf '%-36s before %6.2f s  after %6.2f s  ratio %.2f\n' "$job" "$b" "$a" "$(echo "$a / $b" | bc -l)"
done
