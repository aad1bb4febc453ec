//! Fuzz findings and seeds replayed in the normal test run, through the very functions the
//! AFL harnesses call (`fuzz/src/targets.rs`, included below). A finding is a test named
//! after what it broke, with the minimised input inline; see docs/fuzzing.md.

use std::path::PathBuf;

#[path = "../fuzz/src/targets.rs"]
mod targets;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.into_iter().map(|path| (path.clone(), std::fs::read(&path).unwrap())).collect()
}

/// Every seed of a target passes its invariants (seeds are the recorded fixtures).
fn replay_seeds(target: &str, run: fn(&[u8])) {
    for (path, data) in seeds(target) {
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "seed {} broke an invariant", path.display());
    }
}

#[test]
fn top_seeds_hold() {
    replay_seeds("top", targets::top);
}

#[test]
fn jos_seeds_hold() {
    replay_seeds("jos", targets::jos);
}

#[test]
fn operator_seeds_hold() {
    replay_seeds("operator", targets::operator);
}

#[test]
fn csv_seeds_hold() {
    replay_seeds("csv", targets::csv);
}

#[test]
fn config_seeds_hold() {
    replay_seeds("config", targets::config);
}

#[test]
fn admin_seeds_hold() {
    replay_seeds("admin", targets::admin);
}

/// Inputs valid by construction parse: the shipped example configs and the recorded trade.
#[test]
fn valid_inputs_parse() {
    for name in ["flagsync.example.toml", "sandbox.toml"] {
        let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config").join(name))
            .unwrap();
        let lookup = |_: &str| Some(targets::SECRET_MARKER.to_string());
        let parsed = flagsync::config::parse(&text, name, &[], targets::config_base(), &lookup);
        assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
    }
    let (_, fullinfo) = seeds("top")
        .into_iter()
        .find(|(path, _)| path.ends_with("taobao_pull_orders_00002-fullinfo-a-simplified-pii"))
        .unwrap();
    let reply = flagsync_market::transport::HttpReply {
        status: 200,
        body: String::from_utf8(fullinfo[1..].to_vec()).unwrap(),
    };
    let trade = flagsync_taobao::parse::fullinfo(flagsync_taobao::FULLINFO_API, &reply).unwrap().unwrap();
    assert_eq!(trade.order.order_id, "7091800003790954036");
    assert!(!format!("{trade:?}").contains(targets::PII_MARKER), "the debug form masks personal data");
}
