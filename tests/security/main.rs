//! Escape attempts: each module is one class of attack on the host from
//! untrusted input (a builder, a git tree, an archive, a narinfo, an image,
//! a registry's answer). Every test makes the attempt for real and then
//! checks that the host is untouched: a victim directory survives, a host
//! setting is unchanged, no file appears outside the store.
//!
//! Every attempt runs as the caller and, when the caller is root, again as
//! `nobody` (through `setpriv`), since mini runs builders differently in
//! the two cases. Builders are the prelude's busybox, so these tests fail,
//! not skip, where it is missing.

mod build_root;
mod cache_bomb;
mod cache_links;
mod check_tampered;
#[path = "../common/mod.rs"]
mod common;
mod descriptors;
mod drv_tampered;
mod fetchurl_file;
mod gc_running_build;
mod git_tree;
mod host_root;
mod image_links;
mod image_names;
mod key_dir_mode;
mod registry_answers;
mod resources;
mod seccomp;
mod teardown;
mod terminal;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use common::{flake, flake_with, nix_string, ok, text, Scratch};

/// Who runs `mini` for an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// Whoever runs the tests (root under CI).
    Caller,
    /// `nobody` (65534), when the caller is root.
    Nobody,
}

/// Whether the tests run as root.
pub fn caller_is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Who each attempt runs as: the caller, and `nobody` too when that is root.
pub fn users() -> Vec<Who> {
    if caller_is_root() {
        vec![Who::Caller, Who::Nobody]
    } else {
        vec![Who::Caller]
    }
}

/// One attempt's scratch directory, store and flake, and who runs `mini`.
pub struct Attempt {
    pub scratch: Scratch,
    pub who: Who,
}

impl Attempt {
    pub fn new(name: &str, who: Who) -> Attempt {
        let scratch = Scratch::new(&format!("sec-{name}-{}", if who == Who::Caller { "caller" } else { "nobody" }));
        // `nobody` must be able to reach its scratch directory.
        let _ = std::fs::set_permissions(&scratch.0, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        Attempt { scratch, who }
    }

    /// The store the attempt's `mini` uses.
    pub fn store(&self) -> PathBuf {
        self.scratch.0.join("store")
    }

    /// The attempt's flake directory (created by [`flake`] and friends).
    pub fn dir(&self) -> PathBuf {
        self.scratch.0.join("flake")
    }

    /// A path inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.scratch.0.join(rel)
    }

    /// Writes a flake of busybox scripts (see [`flake_with`]).
    pub fn flake(&self, scripts: &[(&str, &str)], extra: &str) {
        flake_with(&self.dir(), scripts, extra);
    }

    /// A directory of the host's that the attacker aims at: it holds
    /// `keep.txt` and is owned, like everything in the scratch directory,
    /// by whoever runs `mini`, so mini's own rights would reach it.
    pub fn victim(&self) -> PathBuf {
        let victim = self.path("victim");
        std::fs::create_dir_all(&victim).expect("create the victim directory");
        std::fs::write(victim.join("keep.txt"), "keep me\n").expect("write the victim file");
        victim
    }

    /// Runs `mini --store STORE ARGS…` in the flake directory (or the
    /// scratch directory, before there is a flake) as [`Attempt::who`].
    pub fn mini(&self, args: &[&str]) -> Output {
        let dir = if self.dir().is_dir() { self.dir() } else { self.scratch.0.clone() };
        self.mini_in(&dir, args)
    }

    /// [`Attempt::mini`] in `dir`.
    pub fn mini_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.mini_env_in(dir, &[], args)
    }

    /// [`Attempt::mini`] with environment variables `env` set.
    pub fn mini_env(&self, env: &[(&str, &std::ffi::OsStr)], args: &[&str]) -> Output {
        let dir = if self.dir().is_dir() { self.dir() } else { self.scratch.0.clone() };
        self.mini_env_in(&dir, env, args)
    }

    /// [`Attempt::mini_in`] with environment variables `env` set.
    pub fn mini_env_in(&self, dir: &Path, env: &[(&str, &std::ffi::OsStr)], args: &[&str]) -> Output {
        self.command(dir).args(args).envs(env.iter().copied()).output().expect("run mini")
    }

    /// `mini --store STORE`, run in `dir` as [`Attempt::who`], ready for
    /// its arguments.
    pub fn command(&self, dir: &Path) -> Command {
        let mut command = match self.who {
            Who::Caller => Command::new(env!("CARGO_BIN_EXE_mini")),
            Who::Nobody => {
                // Everything the attempt made is handed to nobody first.
                let status = Command::new("chown").args(["-R", "65534:65534"]).arg(&self.scratch.0).status();
                assert!(status.is_ok_and(|s| s.success()), "chown the scratch directory to nobody");
                let mut c = Command::new("setpriv");
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_mini")]);
                c
            }
        };
        command.arg("--store").arg(self.store()).current_dir(dir).env("HOME", &self.scratch.0);
        command
    }

    /// Builds `attr` of the flake, which must succeed; its output path.
    pub fn build(&self, attr: &str) -> String {
        ok(&self.mini(&["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"]))
    }

    /// The physical location of a logical store path.
    pub fn physical(&self, path: &str) -> PathBuf {
        self.store().join("store").join(path.trim_start_matches("/mini/store/"))
    }
}

/// Every file below `dir` (relative, sorted), without following links.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            found.push(path.strip_prefix(dir).unwrap_or(&path).display().to_string());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Compiles the hostile builder (`attacker/attacker.c`, static, so it
/// needs nothing in the sandbox) to `dir/attacker`. It needs a C compiler
/// and static libc (`gcc`, `libc6-dev`: scripts/install-prerequisites).
pub fn compile_attacker(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/security/attacker/attacker.c");
    std::fs::create_dir_all(dir).expect("create the attacker's directory");
    let binary = dir.join("attacker");
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("run cc (install gcc and libc6-dev: scripts/install-prerequisites)");
    assert!(out.status.success(), "compiling the attacker failed:\n{}", text(&out.stderr));
    binary
}

/// A flake whose attributes run the attacker with one mode each:
/// `(attribute, mode, fixed-output hash or "")`.
pub fn attacker_flake(attempt: &Attempt, attrs: &[(&str, &str, &str)]) {
    compile_attacker(&attempt.dir());
    let mut source = String::from("{ pkgs, ... }: {\n");
    for (attr, mode, hash) in attrs {
        let fixed = if hash.is_empty() {
            String::new()
        } else {
            format!(" outputHashAlgo = \"sha256\"; outputHashMode = \"flat\"; outputHash = \"{hash}\";")
        };
        source.push_str(&format!(
            "  {attr} = derivation {{ name = \"{attr}\"; system = \"x86_64-linux\"; builder = ./attacker; \
             args = [ \"{mode}\" ];{fixed} }};\n"
        ));
    }
    source.push_str("}\n");
    std::fs::write(attempt.dir().join("flake.nixlike"), source).expect("write the attacker's flake");
}

/// The attacker's report (`NAME=RESULT` lines) as a map.
pub fn report(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
