//! `mini key generate --out DIR` writes a secret signing key: DIR is made
//! for its owner alone (0700) and the secret file 0600, whatever the umask.
//! It used to be made with the caller's umask, so under umask 0 anyone on
//! the machine could list and replace the key files.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::{text, users, Attempt, Who};

/// Runs `mini ARGS…` as `who` under umask 0.
fn mini_umask_0(a: &Attempt, args: &[&str]) -> std::process::Output {
    let mut argv: Vec<String> = Vec::new();
    if a.who == Who::Nobody {
        let status = Command::new("chown").args(["-R", "65534:65534"]).arg(&a.scratch.0).status();
        assert!(status.is_ok_and(|s| s.success()), "chown the scratch directory to nobody");
        argv.extend(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"].map(String::from));
    }
    argv.push(env!("CARGO_BIN_EXE_mini").into());
    argv.extend(args.iter().map(|s| s.to_string()));
    Command::new("sh")
        .arg("-c")
        .arg("umask 0 && exec \"$@\"")
        .arg("sh")
        .args(&argv)
        .current_dir(&a.scratch.0)
        .env("HOME", &a.scratch.0)
        .output()
        .expect("run mini")
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0)
}

#[test]
fn key_directories_are_private_whatever_the_umask() {
    for who in users() {
        let a = Attempt::new("key-dir", who);
        let dir = a.path("keys/signing");
        let run = mini_umask_0(&a, &["key", "generate", "test-1", "--out", dir.to_str().expect("a UTF-8 path")]);
        assert!(run.status.success(), "{who:?}: {}", text(&run.stderr));
        for made in [a.path("keys"), dir.clone()] {
            assert_eq!(mode(&made), 0o700, "{who:?}: {} is {:o}", made.display(), mode(&made));
        }
        assert_eq!(mode(&dir.join("test-1.secret")), 0o600, "{who:?}");
        assert!(dir.join("test-1.public").is_file());
    }
}
