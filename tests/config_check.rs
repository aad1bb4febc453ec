//! `flagsync config check`: every problem at once, each with its key path.

use std::path::Path;

use flagsync::config::{Gateway, StoreKind, parse};
use secrecy::ExposeSecret;

fn lookup(name: &str) -> Option<String> {
    match name {
        "TMALL_SECRET" => Some("s3cret".into()),
        "TMALL_SESSION" => Some("sess".into()),
        _ => None,
    }
}

const GOOD: &str = r#"
[database]
url = "sqlite://data/flagsync.db"

[sync]
window_mins = 30

[stores.tmall-main]
type = "taobao"
gateway = "https://eco.taobao.com/router/rest"
app_key = "12345678"
app_secret = { env = "TMALL_SECRET" }
session = { env = "TMALL_SESSION" }

[stores.jd-demo]
type = "jd"
gateway = "sandbox"
"#;

#[test]
fn a_good_config_loads_with_defaults_and_sandbox_credentials() {
    let config = parse(GOOD, "good.toml", &[], Path::new("."), &lookup).unwrap();
    assert_eq!(config.stores.len(), 2);
    let tmall = config.store("tmall-main").unwrap();
    match &tmall.kind {
        StoreKind::Taobao { app_secret, sign_method, page_size, fullinfo_batch, .. } => {
            assert_eq!(app_secret.expose_secret(), "s3cret");
            assert_eq!(sign_method, "hmac-sha256");
            assert_eq!(*page_size, 40);
            assert_eq!(*fullinfo_batch, 20, "details go 20 to a batch request unless set");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(config.store("jd-demo").unwrap().gateway, Gateway::Sandbox);
    assert!(!format!("{config:?}").contains("s3cret"), "secrets never print");
}

#[test]
fn environment_overrides_apply_by_key_path() {
    let env = vec![
        ("FLAGSYNC__DATABASE__URL".to_string(), "postgres://postgres@127.0.0.1/test".to_string()),
        ("FLAGSYNC__STORES__TMALL_MAIN__PAUSED".to_string(), "true".to_string()),
        ("FLAGSYNC__SYNC__WINDOW_MINS".to_string(), "10".to_string()),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let config = parse(GOOD, "good.toml", &env, Path::new("."), &lookup).unwrap();
    assert_eq!(config.database.url, "postgres://postgres@127.0.0.1/test");
    assert!(config.store("tmall-main").unwrap().paused);
    assert_eq!(config.sync.window.as_secs(), 600);
}

#[test]
fn a_broken_config_names_every_broken_key() {
    let broken = r#"
[database]
url = "mysql://nope"
max_connections = 0

[sync]
window_mins = "thirty"
typo_key = 1

[stores.tmall]
type = "taobao"
gateway = "not a url"
app_key = "123"
app_secret = "inline-secret"
session = { env = "MISSING_VAR" }
page_size = 500
fullinfo_batch = 51

[stores.jd]
type = "jingdong"
gateway = "https://api.jd.com/routerjson"
"#;
    let error = parse(broken, "broken.toml", &[], Path::new("."), &lookup).unwrap_err();
    let paths: Vec<&str> = error.problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "database.url",
        "database.max_connections",
        "sync.window_mins",
        "sync.typo_key",
        "stores.tmall.gateway",
        "stores.tmall.app_secret",
        "stores.tmall.session",
        "stores.tmall.page_size",
        "stores.tmall.fullinfo_batch",
        "stores.jd.type",
    ] {
        assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
    }
    let text = error.to_string();
    assert!(!text.contains("inline-secret"), "the error does not echo a secret: {text}");
    assert!(text.contains("MISSING_VAR"));
}

#[test]
fn a_syntax_error_names_the_line() {
    let error = parse("[database\nurl = 1", "x.toml", &[], Path::new("."), &lookup).unwrap_err();
    assert_eq!(error.problems.len(), 1);
    assert!(error.problems[0].message.contains("line 1"), "{}", error.problems[0].message);
}

/// Fuzz finding F4: a secret `file` that is a device or FIFO used to be read without end.
/// Now only a regular file of at most 64 KiB is read; anything else is a problem naming the
/// key and the file.
#[test]
fn secret_files_must_be_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.secret"), "s3cret-from-file\n").unwrap();
    std::fs::write(dir.path().join("huge.secret"), vec![b'x'; 65 * 1024]).unwrap();
    std::fs::create_dir(dir.path().join("a-directory")).unwrap();
    let config = |file: &str| {
        format!(
            "[database]\nurl = \"sqlite://x.db\"\n[stores.tmall-main]\ntype = \"taobao\"\n\
             gateway = \"https://eco.taobao.com/router/rest\"\napp_key = \"12345678\"\n\
             app_secret = {{ file = \"{file}\" }}\nsession = {{ env = \"TMALL_SESSION\" }}\n"
        )
    };

    let good = parse(&config("ok.secret"), "c.toml", &[], dir.path(), &lookup).unwrap();
    match &good.store("tmall-main").unwrap().kind {
        StoreKind::Taobao { app_secret, .. } => assert_eq!(app_secret.expose_secret(), "s3cret-from-file"),
        other => panic!("{other:?}"),
    }
    for (file, why) in [
        ("/dev/zero", "not a regular file"),
        ("a-directory", "not a regular file"),
        ("huge.secret", "larger than 64 KiB"),
    ] {
        let error = parse(&config(file), "c.toml", &[], dir.path(), &lookup).unwrap_err().to_string();
        assert!(error.contains("stores.tmall-main.app_secret"), "{file}: {error}");
        assert!(error.contains(why), "{file}: {error}");
    }
}
