//! The real container tools the image tests drive (skopeo, umoci, runc):
//! finding them (missing ones fail the test under CI=true and skip it
//! otherwise), running them, and running an image as a container.

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::text;

/// Whether missing tools fail the tests instead of skipping them.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether every tool in `names` is installed: `false` (after saying which
/// is missing) means the test should skip; under CI a missing tool fails.
pub fn have(names: &[&str]) -> bool {
    for name in names {
        if which(name).is_none() {
            assert!(!ci(), "{name} is required when CI=true: run scripts/install-prerequisites");
            eprintln!("skipping what needs {name}: not installed (scripts/install-prerequisites installs it)");
            return false;
        }
    }
    true
}

/// `name` on PATH or in the sbin directories a non-root PATH may lack.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `tool` with `args` and returns its stdout; fails the test, showing
/// its output, if it fails.
pub fn run(tool: &str, args: &[&str]) -> String {
    let program = which(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {tool}: {e}"));
    assert!(out.status.success(), "{tool} {} failed:\n{}{}", args.join(" "), text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `transport:path[:tag]` as skopeo names an image.
pub fn image_ref(transport: &str, path: &Path, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("{transport}:{}:{tag}", path.display()),
        None => format!("{transport}:{}", path.display()),
    }
}

/// `skopeo inspect` of an image: `--raw` (the manifest), `--config` or plain.
pub fn skopeo_inspect(image: &str, flag: Option<&str>) -> Value {
    let mut args = vec!["inspect"];
    args.extend(flag);
    args.push(image);
    json(&run("skopeo", &args))
}

pub fn root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Unpacks `tag` of the OCI layout `layout` with umoci and runs it with
/// runc; returns the program's stdout. The container has no terminal and
/// shares the host's network namespace (nothing to set up).
pub fn run_container(work: &Path, layout: &Path, tag: &str, id: &str) -> String {
    let bundle = unpack_bundle(work, layout, tag, id, &[]);
    let state = work.join("runc-state").display().to_string();
    let id = format!("mini-test-{id}-{}", std::process::id());
    let runc = which("runc").expect("runc");
    let bundle_arg = bundle.display().to_string();
    let out = Command::new(&runc).args(["--root", &state, "run", "-b", &bundle_arg, &id]).output().expect("run runc");
    let _ = Command::new(&runc).args(["--root", &state, "delete", "-f", &id]).output();
    assert!(out.status.success(), "runc run failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Unpacks `tag` of the OCI layout `layout` into a runc bundle under `work`
/// with umoci, with no terminal, the host's network namespace (nothing to
/// set up) and `env` added to the process's environment.
pub fn unpack_bundle(work: &Path, layout: &Path, tag: &str, id: &str, env: &[&str]) -> PathBuf {
    // umoci locks and may write the layout it reads; the store's copy is read-only.
    let copy = work.join(format!("{id}-layout"));
    run("cp", &["-r", &layout.display().to_string(), &copy.display().to_string()]);
    run("chmod", &["-R", "u+w", &copy.display().to_string()]);
    let bundle = work.join(format!("{id}-bundle"));
    let image = format!("{}:{tag}", copy.display());
    let bundle_arg = bundle.display().to_string();
    let mut unpack = vec!["unpack", "--image", image.as_str(), bundle_arg.as_str()];
    if !root() {
        unpack.insert(1, "--rootless");
    }
    run("umoci", &unpack);

    let config_path = bundle.join("config.json");
    let mut config = json(&std::fs::read_to_string(&config_path).unwrap());
    config["process"]["terminal"] = Value::Bool(false);
    if let Some(namespaces) = config["linux"]["namespaces"].as_array_mut() {
        namespaces.retain(|ns| ns["type"] != "network");
    }
    if let Some(vars) = config["process"]["env"].as_array_mut() {
        vars.extend(env.iter().map(|e| Value::String(e.to_string())));
    }
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    bundle
}

/// Whether `git` runs here. Without it the tests are skipped, except under
/// CI, where they must run.
pub fn have_git() -> bool {
    if Command::new("git").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(!ci(), "git is required under CI (scripts/install-prerequisites)");
    eprintln!("skipped: no git on this host");
    false
}

/// Runs `git ARGS` in `dir` without the user's or the system's
/// configuration; its stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_dated(dir, None, args)
}

/// [`git`], with commits dated `date` (author and committer) if given.
pub fn git_dated(dir: &Path, date: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    if let Some(date) = date {
        cmd.env("GIT_AUTHOR_DATE", date).env("GIT_COMMITTER_DATE", date);
    }
    let out = cmd.output().expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}
