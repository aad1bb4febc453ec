//! `flagsync soak`: the seeded simulation over many seeds, with a report of faults injected,
//! crashes, every invariant's count, time to converge and retries per delivered effect.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::soak::Violations;
use crate::soak::sim::{SeedReport, SimOptions, default_scratch, run_seed};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How many seeds to run (from --first on).
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Replay exactly this one seed (as printed by a failure: SEED=<n>).
    #[arg(long, env = "SEED")]
    pub seed: Option<u64>,
    /// Most orders per store in a seed.
    #[arg(long, default_value_t = 40)]
    pub orders: usize,
    /// Steps (one job each) before the final phase.
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The whole run's figures.
#[derive(Debug, Default, Serialize)]
pub struct SoakReport {
    pub seeds: u64,
    pub first_seed: u64,
    pub failing_seeds: Vec<u64>,
    pub faults: BTreeMap<String, u64>,
    pub faults_total: u64,
    pub crashes: u64,
    pub jobs: u64,
    pub failed_jobs: u64,
    pub orders: u64,
    pub violations: Violations,
    /// Simulated seconds from "faults stop" to every check passing.
    pub converge_secs_p50: Option<i64>,
    pub converge_secs_p99: Option<i64>,
    pub converge_secs_max: Option<i64>,
    pub calls: u64,
    /// Shipment pushes sent (every attempt) and shipments applied.
    pub mutating_calls: u64,
    pub effects: u64,
    /// (pushes sent - shipments applied) / shipments applied.
    pub retries_per_effect: f64,
    /// Stock writes applied, fulfilment requests accepted, shipment notices emitted.
    pub stock_writes: u64,
    pub fulfilments: u64,
    pub notices: u64,
    pub wall_secs: f64,
}

impl SoakReport {
    pub fn add(&mut self, seed: &SeedReport, converge: &mut Vec<i64>) {
        self.seeds += 1;
        if !seed.violations.is_clean() {
            self.failing_seeds.push(seed.seed);
        }
        for (kind, n) in &seed.faults {
            *self.faults.entry(kind.clone()).or_default() += n;
            self.faults_total += n;
        }
        self.crashes += seed.crashes;
        self.jobs += seed.jobs;
        self.failed_jobs += seed.failed_jobs;
        self.orders += seed.orders;
        self.violations.add(&seed.violations);
        if let Some(secs) = seed.converge_secs {
            converge.push(secs);
        }
        self.calls += seed.calls;
        self.mutating_calls += seed.mutating_calls;
        self.effects += seed.effects;
        self.stock_writes += seed.stock_writes;
        self.fulfilments += seed.fulfilments;
        self.notices += seed.notices;
    }

    pub fn finish(&mut self, mut converge: Vec<i64>, wall_secs: f64) {
        converge.sort_unstable();
        let at = |q: f64| converge.get(((converge.len() as f64 - 1.0) * q).round() as usize).copied();
        self.converge_secs_p50 = at(0.5);
        self.converge_secs_p99 = at(0.99);
        self.converge_secs_max = converge.last().copied();
        self.retries_per_effect = if self.effects == 0 {
            0.0
        } else {
            self.mutating_calls.saturating_sub(self.effects) as f64 / self.effects as f64
        };
        self.wall_secs = wall_secs;
    }

    pub fn print(&self) {
        println!("seeds run: {} (from {})", self.seeds, self.first_seed);
        println!(
            "orders: {}  jobs: {} ({} failed under faults)  crashes: {}",
            self.orders, self.jobs, self.failed_jobs, self.crashes
        );
        println!("faults injected: {}", self.faults_total);
        for (kind, n) in &self.faults {
            println!("  {kind:<24} {n}");
        }
        println!("invariants (each must be 0):");
        for (name, n) in self.violations.named() {
            println!("  {name:<28} {n}");
        }
        let secs = |v: Option<i64>| v.map_or("-".to_string(), |s| format!("{s} s"));
        println!(
            "time to converge after faults stop (simulated): p50 {}, p99 {}, max {}",
            secs(self.converge_secs_p50),
            secs(self.converge_secs_p99),
            secs(self.converge_secs_max)
        );
        println!(
            "calls: {}  shipment pushes: {}  shipments applied: {}  retries per delivered shipment: {:.3}",
            self.calls, self.mutating_calls, self.effects, self.retries_per_effect
        );
        println!(
            "stock writes applied: {}  fulfilment requests accepted: {}  operator shipments: {}",
            self.stock_writes, self.fulfilments, self.notices
        );
        println!("wall time: {:.1} s", self.wall_secs);
        if self.failing_seeds.is_empty() {
            println!("result: every invariant held");
        } else {
            let shown: Vec<String> = self.failing_seeds.iter().take(20).map(u64::to_string).collect();
            println!("result: FAILED on {} seeds: {}", self.failing_seeds.len(), shown.join(" "));
        }
    }
}

/// Runs the seeds one after another on a current-thread runtime each.
pub fn soak(args: &SoakArgs) -> anyhow::Result<ExitCode> {
    let options = SimOptions {
        max_orders: args.orders,
        steps: args.steps,
        scratch: default_scratch(),
        ..SimOptions::default()
    };
    let seeds: Vec<u64> = match args.seed {
        Some(seed) => vec![seed],
        None => (args.first..args.first.saturating_add(args.seeds)).collect(),
    };
    let started = Instant::now();
    let mut report = SoakReport { first_seed: seeds.first().copied().unwrap_or(0), ..SoakReport::default() };
    let mut converge = Vec::new();
    for seed in seeds {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let seed_report = runtime.block_on(run_seed(seed, &options))?;
        if !seed_report.violations.is_clean() {
            eprintln!(
                "SEED={seed} violated {} (first seen at step {:?}); replay: flagsync soak --seed {seed}",
                seed_report.violations.summary(),
                seed_report.first_violation_step
            );
        }
        report.add(&seed_report, &mut converge);
        if !args.json && report.seeds.is_multiple_of(500) {
            eprintln!("... {} seeds, {:.0} s", report.seeds, started.elapsed().as_secs_f64());
        }
    }
    report.finish(converge, started.elapsed().as_secs_f64());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    Ok(if report.violations.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
