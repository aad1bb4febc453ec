//! Runs files through a target without AFL: `replay <target> <file or folder>...`. Prints
//! each file and how long it took, so a slow input shows; a broken invariant panics.

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(name) = args.next() else {
        eprintln!("usage: replay <target> <file or folder>...");
        std::process::exit(2);
    };
    let Some((_, target)) = flagsync_fuzz::TARGETS.iter().find(|(n, _)| *n == name) else {
        eprintln!("unknown target {name:?}");
        std::process::exit(2);
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for arg in args {
        let path = PathBuf::from(arg);
        match std::fs::read_dir(&path) {
            Ok(entries) => {
                files.extend(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()))
            }
            Err(_) => files.push(path),
        }
    }
    files.sort();
    for file in files {
        let Ok(data) = std::fs::read(&file) else {
            eprintln!("cannot read {}", file.display());
            continue;
        };
        let start = Instant::now();
        target(&data);
        println!("{} {} bytes {:?}", file.display(), data.len(), start.elapsed());
    }
}
