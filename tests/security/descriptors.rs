//! What mini holds must not reach the builder: a descriptor mini inherited
//! from whoever started it (a directory descriptor would lead out of the
//! sandbox's root), and the directory the build's root is assembled in,
//! which other users of the host must not be able to enter (as root, a
//! builder's files there belong to the build uid).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{attacker_flake, flake_with, report, text, users, Attempt, Who};

#[test]
fn descriptors_mini_inherited_never_reach_the_builder() {
    for who in users() {
        let attempt = Attempt::new("descriptors", who);
        attacker_flake(&attempt, &[("fds", "descriptors", "")]);
        let _ = attempt.mini(&["--version"]); // hands the scratch directory to nobody
        let mini = env!("CARGO_BIN_EXE_mini");
        let privileges = if who == Who::Nobody { "setpriv --reuid=65534 --regid=65534 --clear-groups" } else { "" };
        // fd 7: the host's root directory, left open across exec, as a
        // careless caller might.
        let script = format!(
            "exec 7</ && exec {privileges} {mini} --store {} build .#fds --no-link --print-out-paths",
            attempt.store().display()
        );
        let out = Command::new("bash")
            .args(["-c", &script])
            .current_dir(attempt.dir())
            .env("HOME", &attempt.scratch.0)
            .output()
            .expect("run bash");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let path = text(&out.stdout).trim().to_string();
        let seen = report(&std::fs::read_to_string(attempt.physical(&path)).expect("read the report"));
        assert_eq!(seen.get("descriptors").map(String::as_str), Some("listed"), "{seen:?}");
        let open: Vec<&String> = seen.keys().filter(|k| k.starts_with("fd-")).collect();
        assert!(open.is_empty(), "descriptors reached the builder as {who:?}: {open:?}");
    }
}

#[test]
fn the_directory_a_root_is_built_in_is_private() {
    for who in users() {
        let attempt = Attempt::new("stage-mode", who);
        flake_with(&attempt.dir(), &[("slow", "sleep 3; echo done > $out")], "");
        let mut child =
            attempt.command(&attempt.dir()).args(["build", ".#slow", "--no-link"]).spawn().expect("start mini");
        let tmp = attempt.store().join("tmp");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut modes = Vec::new();
        while modes.is_empty() && Instant::now() < deadline {
            if let Ok(entries) = std::fs::read_dir(&tmp) {
                for entry in entries.flatten() {
                    let root = entry.path().join("root");
                    if root.is_dir() {
                        modes.push(std::fs::metadata(entry.path()).expect("stat").permissions().mode() & 0o777);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(child.wait().expect("wait for mini").success());
        assert!(!modes.is_empty(), "no build root seen in {}", tmp.display());
        assert!(modes.iter().all(|m| m & 0o077 == 0), "a build root is open to others as {who:?}: {modes:?}");
    }
}
