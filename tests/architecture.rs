//! The layering rules of ARCHITECTURE.md that a test can see: sync jobs name no platform,
//! connectors declare no database or app dependency, the sandbox depends on no client.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn sync_jobs_name_no_platform() {
    let mut files = Vec::new();
    rust_files(&root().join("src/sync"), &mut files);
    assert!(!files.is_empty());
    let names =
        ["taobao", "tmall", "jd", "jingdong", "top", "jos", "routerjson", "flagsync_taobao", "flagsync_jd"];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap().to_lowercase();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            assert!(
                !names.contains(&word),
                "{} mentions {word:?}: sync jobs must only use the connector contract",
                file.display()
            );
        }
    }
}

fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let mut names = Vec::new();
    for section in ["dependencies", "build-dependencies"] {
        if let Some(deps) = table.get(section).and_then(|d| d.as_table()) {
            names.extend(deps.keys().cloned());
        }
    }
    names
}

#[test]
fn connectors_declare_no_store_or_app_dependency() {
    for crate_dir in ["market", "taobao", "jd", "operator", "sandbox"] {
        let deps = dependencies(&root().join("connectors").join(crate_dir).join("Cargo.toml"));
        for forbidden in ["sqlx", "flagsync"] {
            assert!(!deps.iter().any(|d| d == forbidden), "connectors/{crate_dir} depends on {forbidden}");
        }
    }
    let sandbox = dependencies(&root().join("connectors/sandbox/Cargo.toml"));
    for client in ["flagsync-market", "flagsync-taobao", "flagsync-jd", "flagsync-operator"] {
        assert!(!sandbox.iter().any(|d| d == client), "the sandbox must not depend on {client}");
    }
}
