//! The benchmark harness (`cargo bench --bench flagsync [-- --quick] [-- --only NAME]`):
//! drives the real daemon code against the in-process sandboxes and prints a table of
//! ingest throughput, stock propagation lag, API economy, memory and scaling, also written
//! as JSON to `target/bench/flagsync.json`. `--quick` runs small sizes in seconds (CI) and
//! judges no timing.

#[path = "flagsync/common.rs"]
mod common;
#[path = "flagsync/economy.rs"]
mod economy;
#[path = "flagsync/ingest.rs"]
mod ingest;
#[path = "flagsync/lag.rs"]
mod lag;
#[path = "flagsync/memory.rs"]
mod memory;
#[path = "flagsync/scaling.rs"]
mod scaling;

use std::time::Instant;

use common::Report;

const BENCHES: &[&str] = &["ingest", "lag", "economy", "memory", "scaling"];

fn write_json(report: &Report, quick: bool, began: Instant) {
    let path = common::json_path();
    let json = report.to_json(if quick { "quick" } else { "full" }, began.elapsed());
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap_or_default()));
    if let Err(e) = written {
        eprintln!("could not write {}: {e}", path.display());
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--only")
        .flat_map(|w| w[1].split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    if let Some(unknown) = only.iter().find(|name| !BENCHES.contains(&name.as_str())) {
        eprintln!("unknown bench {unknown:?}; known: {}", BENCHES.join(", "));
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let began = Instant::now();
    let mut report = Report::default();
    let mut failed = Vec::new();
    for name in BENCHES.iter().copied().filter(|n| only.is_empty() || only.iter().any(|o| o == n)) {
        println!("== {name} ({})", if quick { "quick" } else { "full" });
        let started = Instant::now();
        let result = runtime.block_on(async {
            match name {
                "ingest" => ingest::run(quick, &mut report).await,
                "lag" => lag::run(quick, &mut report).await,
                "economy" => economy::run(quick, &mut report).await,
                "scaling" => scaling::run(quick, &mut report).await,
                "memory" => memory::run(quick, &mut report).await,
                _ => Ok(()),
            }
        });
        match result {
            Ok(()) => println!("   {name} done in {:.1} s", started.elapsed().as_secs_f64()),
            Err(e) => {
                eprintln!("   {name} FAILED: {e:#}");
                report.note(name, format!("failed: {e:#}"));
                failed.push(name);
            }
        }
        // Written after every bench, so a long run stopped midway keeps what it measured.
        write_json(&report, quick, began);
    }
    report.print_table();
    let path = common::json_path();
    println!("\nfigures written to {}", path.display());
    if failed.is_empty() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
