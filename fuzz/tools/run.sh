#!/usr/bin/env bash
# Fuzzes one target with AFL++ for a while: tools/run.sh TARGET SECONDS [OUT_DIR]
# Needs `cargo install cargo-afl` and `cargo afl build --release --bins` first (see
# docs/fuzzing.md). Findings land in OUT_DIR/TARGET/default/{crashes,hangs}.
set -euo pipefail
target=$1
seconds=$2
out=${3:-$(cd "$(dirname "$0")/.." && pwd)/corpus}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
bin=${CARGO_TARGET_DIR:-$here/target}/release/$target
export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
# -t: a single input taking more than 2 s is a hang; -V: stop after SECONDS.
cargo afl fuzz -i "$here/seeds/$target" -o "$out/$target" -t 2000 -V "$seconds" "$bin"
