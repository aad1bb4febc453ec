//! The command line as an operator uses it: `config check` on a broken file, the README's
//! first command against the built-in sandbox, and the quarantine and runs listings.

use std::process::Command;

fn flagsync() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flagsync"));
    command.env_remove("FLAGSYNC_CONFIG").env("RUST_LOG", "warn");
    command
}

#[test]
fn config_check_names_every_broken_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        r#"
[database]
url = "mysql://x"
[sync]
window_mins = 0
[stores.tmall]
type = "taobao"
gateway = "sandbox"
page_size = 101
sign_method = "sha1"
[stores.jd]
type = "jd"
gateway = "ftp://nope"
access_token = "inline-token-value"
"#,
    )
    .unwrap();
    let output = flagsync().args(["--config", path.to_str().unwrap(), "config", "check"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "database.url",
        "sync.window_mins",
        "stores.tmall.page_size",
        "stores.tmall.sign_method",
        "stores.jd.gateway",
        "stores.jd.access_token",
    ] {
        assert!(stderr.contains(key), "{key} not named in:\n{stderr}");
    }
    assert!(!stderr.contains("inline-token-value"), "secrets are not echoed:\n{stderr}");
}

#[test]
fn the_example_config_only_lacks_its_secrets() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/flagsync.example.toml");
    let output = flagsync()
        .args(["--config", path, "config", "check"])
        .env("FLAGSYNC_TMALL_APP_SECRET", "x")
        .env("FLAGSYNC_JD_APP_SECRET", "y")
        .env("FLAGSYNC_JD_ACCESS_TOKEN", "z")
        .env("FLAGSYNC_OPERATOR_SECRET", "o")
        .env("FLAGSYNC_ADMIN_TOKEN", "t")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Only the session file, which a real installation provides, is missing.
    assert!(!output.status.success());
    assert!(stderr.contains("1 problem(s)") && stderr.contains("stores.tmall-flagship.session"), "{stderr}");
}

#[test]
fn the_readme_first_command_pulls_both_sandbox_stores() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sandbox.toml")).unwrap();
    let db = dir.path().join("sandbox.db");
    let config = config.replace("sqlite://data/sandbox.db", &format!("sqlite://{}", db.display()));
    let path = dir.path().join("sandbox.toml");
    std::fs::write(&path, config).unwrap();

    let output =
        flagsync().args(["--config", path.to_str().unwrap(), "sync", "orders", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2);
    for report in reports {
        assert_eq!(report["ok"], true, "{report}");
        assert!(report["report"]["inserted"].as_u64().unwrap() > 100, "{report}");
    }

    let output = flagsync().args(["--config", path.to_str().unwrap(), "runs", "--json"]).output().unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["outcome"], "succeeded");

    let output =
        flagsync().args(["--config", path.to_str().unwrap(), "quarantine", "list"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("quarantine is empty"));
}

#[test]
fn a_bad_stock_csv_names_line_and_column_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sandbox.toml")).unwrap();
    let config = config
        .replace("sqlite://data/sandbox.db", &format!("sqlite://{}", dir.path().join("s.db").display()));
    let path = dir.path().join("sandbox.toml");
    std::fs::write(&path, config).unwrap();
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "sku,warehouse,on_hand\nSKU-00004,WH-HZ,120\nSKU-00005,WH-SH,80\n").unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "sku,warehouse,on_hand\nSKU-00004,WH-HZ,999\nSKU-00006,,5\nSKU-00007,WH-HZ,-3\n")
        .unwrap();
    let config = path.to_str().unwrap();

    let output = flagsync()
        .args(["--config", config, "inventory", "import", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 level(s) applied"));

    let output =
        flagsync().args(["--config", config, "inventory", "import", bad.to_str().unwrap()]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3") && stderr.contains("warehouse"), "{stderr}");
    assert!(stderr.contains("line 4") && stderr.contains("on_hand"), "{stderr}");
    assert!(stderr.contains("nothing applied"), "{stderr}");

    // The good file's 120 stands: the bad file's valid first row was not applied either.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let loaded = flagsync::config::load(&path).unwrap();
    let levels = runtime.block_on(async {
        let store = flagsync::app::open_store(&loaded).await.unwrap();
        store.component_levels(&loaded.catalog).await.unwrap()
    });
    let level = |code: &str| levels.iter().find(|(c, _)| c.code == code).map(|(_, l)| l.on_hand);
    assert_eq!(level("SKU-00004"), Some(120));
    assert_eq!(level("SKU-00006"), Some(0));
}

#[test]
fn the_demo_runs_a_flash_sale_and_oversells_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let output = flagsync()
        .args(["demo", "--seconds", "8", "--buyers", "800", "--database", db.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("oversold:                           0"), "{stdout}");
    let sold_line = stdout.lines().find(|l| l.starts_with("units sold against stock:")).unwrap();
    let sold: i64 = sold_line.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(sold > 0 && sold <= 400, "{sold_line}");
    assert!(stdout.contains("orders ingested"), "{stdout}");
}
