//! `mini store add|verify` and `mini path-info` end to end, on scratch stores.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::Scratch;

fn mini(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini")).arg("--store").arg(store).args(args).output().expect("run mini")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn sample(dir: &Path) -> PathBuf {
    let src = dir.join("site");
    std::fs::create_dir_all(src.join("cgi-bin")).unwrap();
    std::fs::write(src.join("index.html"), "<h1>hi</h1>\n").unwrap();
    std::fs::write(src.join("cgi-bin/quote"), "#!/bin/sh\necho 42\n").unwrap();
    std::fs::set_permissions(src.join("cgi-bin/quote"), std::fs::Permissions::from_mode(0o755)).unwrap();
    src
}

#[test]
fn adding_prints_the_same_path_in_any_store() {
    let s = Scratch::new("add");
    let src = sample(&s.0);
    let src = src.to_str().unwrap();
    let first = mini(&s.0.join("store-a"), &["store", "add", src]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let path = stdout(&first);
    assert!(path.starts_with("/mini/store/") && path.ends_with("-site"), "{path}");
    assert_eq!(stdout(&mini(&s.0.join("store-a"), &["store", "add", src])), path);
    assert_eq!(stdout(&mini(&s.0.join("elsewhere/store-b"), &["store", "add", src])), path);
    let renamed = stdout(&mini(&s.0.join("store-a"), &["store", "add", src, "--name", "www"]));
    assert!(renamed.ends_with("-www") && renamed != path);
}

#[test]
fn path_info_shows_sizes_and_verify_finds_tampering() {
    let s = Scratch::new("info");
    let src = sample(&s.0);
    let store = s.0.join("store");
    let path = stdout(&mini(&store, &["store", "add", src.to_str().unwrap()]));
    let info = stdout(&mini(&store, &["path-info", "-S", &path]));
    let fields: Vec<&str> = info.split('\t').collect();
    assert_eq!(fields.len(), 3, "{info}");
    assert_eq!(fields[0], path);
    assert_eq!(fields[1], fields[2], "a path without references is its own closure");
    let json = stdout(&mini(&store, &["path-info", "--json", &format!("{path}/cgi-bin/quote")]));
    assert!(json.contains(&format!("\"path\":\"{path}\"")) && json.contains("\"narHash\":\"blake3:"), "{json}");

    assert!(mini(&store, &["store", "verify", "--check-contents"]).status.success());
    let base = path.trim_start_matches("/mini/store/");
    let file = store.join("store").join(base).join("index.html");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&file, "changed\n").unwrap();
    let verify = mini(&store, &["store", "verify", "--check-contents"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stderr).contains(&format!("modified: {path}")));
}

#[test]
fn unknown_paths_are_clear_errors() {
    let s = Scratch::new("unknown");
    let out = mini(&s.0.join("store"), &["path-info", "/mini/store/00000000000000000000000000000000-nothing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid in the store"));
    let out = mini(&s.0.join("store"), &["path-info", "/usr/bin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the store directory /mini/store"));
}
