//! `mini debian lock` and `mini lock`'s handling of a flake's
//! `debian.lock`, end to end with this host's apt: a closure resolves to
//! the same canonical lock every time, a package or architecture apt does
//! not have is a clear error, a bad lock beside a flake stops `mini lock`,
//! and `mini lock --update debian` moves a stale pin back and says so.
//! These tests need apt-get (required under CI, else skipped).

use std::path::Path;

mod common;
use common::clients::have;
use common::{failed, mini_at, succeeded, text, Scratch};

/// `mini debian lock ARGS…` run in `dir`.
fn debian_lock(s: &Scratch, args: &[&str]) -> std::process::Output {
    let mut all = vec!["debian", "lock"];
    all.extend(args);
    mini_at(&s.0.join("store"), &s.0, &all)
}

#[test]
fn make_resolves_to_one_canonical_lock() {
    if !have(&["apt-get"]) {
        return;
    }
    let s = Scratch::new("debian-lock-make");
    let first = succeeded(&debian_lock(&s, &["make"]));
    let lock: serde_json::Value = serde_json::from_str(&first).expect("the lock is JSON");
    assert_eq!(lock["version"], 1);
    assert_eq!(lock["requested"], serde_json::json!(["make"]));
    let packages = lock["packages"].as_array().unwrap();
    let make = packages.iter().find(|p| p["name"] == "make").expect("make is locked");
    assert!(make["depends"].as_array().unwrap().iter().any(|d| d == "libc6"), "{make}");
    for package in packages {
        let sha256 = package["sha256"].as_str().unwrap();
        assert!(sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(package["filename"].as_str().unwrap().ends_with(".deb"), "{package}");
        assert!(package["size"].as_u64().unwrap() > 0, "{package}");
    }
    let names: Vec<&str> = packages.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(first.starts_with("{\n  \"version\": 1,\n  \"suite\": ") && first.ends_with("\n}\n"), "{first}");
    assert_eq!(succeeded(&debian_lock(&s, &["make"])), first, "the same lists give the same bytes");
    // -o writes the same bytes to a file, and prints nothing.
    let file = s.0.join("debian.lock");
    let out = debian_lock(&s, &["-o", &file.display().to_string(), "make"]);
    assert!(succeeded(&out).is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
}

#[test]
fn what_apt_does_not_have_is_a_clear_error() {
    if !have(&["apt-get"]) {
        return;
    }
    let s = Scratch::new("debian-lock-errors");
    let err = failed(&debian_lock(&s, &["make", "no-such-package-at-all"]));
    assert!(err.contains("error: apt knows no package 'no-such-package-at-all'"), "{err}");
    assert!(err.contains("apt-cache search no-such-package-at-all"), "{err}");
    let err = failed(&debian_lock(&s, &["--arch", "zz80", "make"]));
    assert!(err.contains("the architecture 'zz80' is not configured for the host's apt"), "{err}");
    assert!(err.contains("dpkg --add-architecture zz80"), "{err}");
    let err = failed(&debian_lock(&s, &["--suite", "no-such-suite", "make"]));
    assert!(err.contains("the suite 'no-such-suite' is not in the host's apt sources"), "{err}");
    let err = failed(&debian_lock(&s, &["--", "-oAPT::Get::Simulate=0"]));
    assert!(err.contains("the package name '-oAPT::Get::Simulate=0' is not valid"), "{err}");
    assert!(text(&debian_lock(&s, &["make", "no-such-package-at-all"]).stdout).is_empty(), "no half lock");
    // With -o, a failed run leaves the old lock as it was (a shell's `>` would have emptied it).
    let file = s.0.join("debian.lock");
    std::fs::write(&file, "the old lock").unwrap();
    failed(&debian_lock(&s, &["-o", &file.display().to_string(), "make", "no-such-package-at-all"]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "the old lock");
}

/// A flake with no inputs in `dir`.
fn flake(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("flake.nixlike"), "{ pkgs, ... }: { }\n").unwrap();
}

#[test]
fn mini_lock_checks_the_debian_lock_and_update_moves_stale_pins() {
    if !have(&["apt-get"]) {
        return;
    }
    let s = Scratch::new("debian-lock-update");
    let dir = s.0.join("app");
    flake(&dir);
    let store = s.0.join("store");
    let fresh = succeeded(&debian_lock(&s, &["make"]));
    let lock: serde_json::Value = serde_json::from_str(&fresh).unwrap();
    let make = lock["packages"].as_array().unwrap().iter().find(|p| p["name"] == "make").unwrap();
    let version = make["version"].as_str().unwrap();
    let stale = fresh.replacen(&format!("\"version\": \"{version}\""), "\"version\": \"0.1-1\"", 1);
    assert_ne!(stale, fresh);
    std::fs::write(dir.join("debian.lock"), &stale).unwrap();

    // Without --update the lock is only read.
    let out = mini_at(&store, &dir, &["lock"]);
    let listed = succeeded(&out);
    assert!(listed.contains("debian.lock: ") && listed.contains(" for make"), "{listed}");
    assert_eq!(std::fs::read_to_string(dir.join("debian.lock")).unwrap(), stale);

    let out = mini_at(&store, &dir, &["lock", "--update", "debian"]);
    succeeded(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("debian: make 0.1-1 -> {version}\n")), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("debian.lock")).unwrap(), fresh);
    let out = mini_at(&store, &dir, &["lock", "--update"]);
    succeeded(&out);
    assert!(text(&out.stderr).contains("debian.lock: up to date"), "{}", text(&out.stderr));

    // A lock edited into something mini cannot trust stops `mini lock`, naming the file.
    let bad = fresh.replacen("\"sha256\": \"", "\"sha256\": \"x", 1);
    std::fs::write(dir.join("debian.lock"), bad).unwrap();
    let err = failed(&mini_at(&store, &dir, &["lock"]));
    assert!(err.contains("debian.lock: packages[0].sha256: ") && err.contains("64 lowercase hex digits"), "{err}");
    assert!(err.contains("mini debian lock --suite ") && err.contains(" make > debian.lock"), "{err}");
    std::fs::write(dir.join("debian.lock"), "{\n  \"version\": 1,\n").unwrap();
    let err = failed(&mini_at(&store, &dir, &["lock"]));
    assert!(err.contains("debian.lock:3:0: not valid JSON"), "{err}");

    // Naming debian without a debian.lock says how to make one.
    std::fs::remove_file(dir.join("debian.lock")).unwrap();
    let err = failed(&mini_at(&store, &dir, &["lock", "--update", "debian"]));
    assert!(err.contains("there is no debian.lock in") && err.contains("mini debian lock PACKAGE..."), "{err}");
}
