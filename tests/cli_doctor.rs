//! `mini doctor` end to end: on a machine that builds (this one: the build
//! tests need the same things), every required check passes; a missing or
//! dynamic busybox and an unusable store fail with a fix; optional tools
//! missing from PATH do not fail; `--json` says the same.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{text, Scratch};

fn doctor(store: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mini"));
    command.arg("--store").arg(store).arg("doctor").args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run mini")
}

/// The line of check `name` (`ok       NAME  …` or `missing  NAME  …`).
fn line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.get(9..).and_then(|rest| rest.strip_prefix(name)).is_some_and(|rest| rest.starts_with(' ')))
        .map(str::trim_end)
        .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"))
}

#[test]
fn a_machine_that_builds_passes_every_required_check() {
    let s = Scratch::new("doctor-ok");
    let out = doctor(&s.0.join("store"), &[], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.lines().count(), 11, "{stdout}");
    for l in stdout.lines() {
        assert!(l.starts_with("ok       ") || l.starts_with("missing  "), "{l}");
    }
    assert!(line(&stdout, "user namespaces").starts_with("ok "), "{stdout}");
    assert!(line(&stdout, "busybox").contains("statically linked"), "{stdout}");
    let store = line(&stdout, "store");
    assert!(store.starts_with("ok ") && store.contains("can be created"), "{store}");
    // Once it exists, it is writable.
    std::fs::create_dir_all(s.0.join("store")).unwrap();
    let again = text(&doctor(&s.0.join("store"), &[], &[]).stdout);
    assert!(line(&again, "store").ends_with("store is writable"), "{again}");
}

#[test]
fn a_missing_or_dynamic_busybox_fails_with_a_fix() {
    let s = Scratch::new("doctor-busybox");
    for (busybox, why) in
        [("/nonexistent/busybox", "No such file"), (env!("CARGO_BIN_EXE_mini"), "is dynamically linked")]
    {
        let out = doctor(&s.0.join("store"), &[], &[("MINI_BUSYBOX", busybox)]);
        assert_eq!(out.status.code(), Some(1));
        let stdout = text(&out.stdout);
        let l = line(&stdout, "busybox");
        assert!(l.starts_with("missing ") && l.contains(why) && l.contains("$MINI_BUSYBOX"), "{l}");
        assert!(l.contains("fix: apt-get install busybox-static"), "{l}");
        assert!(text(&out.stderr).contains("1 required check(s) failed"), "{}", text(&out.stderr));
    }
}

#[test]
fn a_store_that_cannot_be_made_fails() {
    let s = Scratch::new("doctor-store");
    let file = s.write("a-file", "not a directory");
    let out = doctor(&file.join("store"), &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let l = line(&stdout, "store");
    assert!(l.starts_with("missing ") && l.contains("is not a directory") && l.contains("--store DIR"), "{l}");
}

#[test]
fn missing_optional_tools_are_reported_but_do_not_fail() {
    let s = Scratch::new("doctor-optional");
    let empty = s.0.join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = doctor(&s.0.join("store"), &[], &[("PATH", empty.to_str().unwrap())]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let dot = line(&stdout, "dot");
    assert!(dot.starts_with("missing ") && dot.contains("(optional)"), "{dot}");
    assert!(dot.ends_with("fix: apt-get install graphviz"), "{dot}");
    assert!(line(&stdout, "nix-instantiate").ends_with("fix: apt-get install nix-bin"), "{stdout}");
    // Informational: builds are not put in cgroups, whatever the machine has.
    let cgroups = line(&stdout, "cgroups");
    assert!(cgroups.contains("does not put builds in cgroups"), "{cgroups}");
}

#[test]
fn json_reports_the_same_checks() {
    let s = Scratch::new("doctor-json");
    let out = doctor(&s.0.join("store"), &["--json"], &[("MINI_BUSYBOX", "/nonexistent/busybox")]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ok"], false);
    let checks = json["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "user namespaces",
            "busybox",
            "store",
            "cgroups",
            "pip",
            "skopeo",
            "umoci",
            "runc",
            "nix-instantiate",
            "dot",
            "git"
        ]
    );
    let busybox = &checks[1];
    assert_eq!((busybox["ok"].as_bool(), busybox["required"].as_bool()), (Some(false), Some(true)));
    assert!(busybox["fix"].as_str().unwrap().contains("busybox-static"));
    assert_eq!(checks[0]["ok"], true);
    assert_eq!(checks[0]["fix"], Value::Null);
}
