//! The CI slice of the seeded simulation (`flagsync soak`, RELIABILITY.md): a few hundred
//! seeds of scenario, faults and crashes against the in-process sandboxes, every invariant
//! at 0. `SEED=<n> cargo test --workspace soak` replays exactly one seed;
//! `FLAGSYNC_SOAK_SEEDS=<n>` runs more.

use flagsync::soak::sim::{SimOptions, default_scratch, run_seed};

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SEED").ok().and_then(|s| s.trim().parse().ok()) {
        return vec![seed];
    }
    let count = std::env::var("FLAGSYNC_SOAK_SEEDS").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(200);
    // Seeds far from the ones a release soak starts with, so CI adds coverage.
    (1_000_000..1_000_000 + count).collect()
}

#[test]
fn seeded_simulation_keeps_every_invariant() {
    let options = SimOptions { scratch: default_scratch(), ..SimOptions::default() };
    let mut failing = Vec::new();
    let (mut crashes, mut faults, mut runs) = (0, 0, 0);
    for seed in seeds() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let report =
            runtime.block_on(run_seed(seed, &options)).unwrap_or_else(|e| panic!("SEED={seed}: {e:#}"));
        runs += 1;
        crashes += report.crashes;
        faults += report.faults.values().sum::<u64>();
        let violations = &report.violations;
        if !violations.is_clean() {
            eprintln!(
                "SEED={seed} violated {} (first at step {:?})",
                violations.summary(),
                report.first_violation_step
            );
            failing.push(seed);
        }
    }
    eprintln!("soak slice: {runs} seeds, {faults} faults injected, {crashes} crashes");
    assert!(failing.is_empty(), "failing seeds (replay: SEED=<n> cargo test --workspace soak): {failing:?}");
    if runs > 20 {
        assert!(crashes > 0 && faults > 0, "the slice injected {faults} faults and {crashes} crashes");
    }
}
