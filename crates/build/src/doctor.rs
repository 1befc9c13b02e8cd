//! The checks behind `mini doctor`: what mini needs from the machine, and
//! how to fix what is missing. Required: unprivileged user namespaces (the
//! build sandbox), a static busybox (the only thing builds take from the
//! host; found by `mini-flake`, whose prelude uses it, so the caller
//! supplies that check), and a store root that exists or can be made, and
//! is writable. Optional: pip (which `fetchPypi` and `mini fetch pypi:`
//! download with), cgroups, and the tools the test suite and
//! `mini graph --format svg` use.
//!
//! User namespaces are probed, not guessed from sysctls: `unshare` needs a
//! single-threaded process, so the probe runs the `mini` binary again with
//! the hidden first argument [`crate::store_view::PROBE_ARG`], which enters
//! a new user and mount namespace as `mini run` does and exits 0 or 1. The
//! sysctls only explain a failure.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One check's outcome.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub required: bool,
    pub ok: bool,
    /// What was found, or what is wrong.
    pub detail: String,
    /// How to fix it, when it failed.
    pub fix: Option<String>,
}

/// Every check, in the order `mini doctor` shows them, with `busybox`
/// (the caller's) second; `mini` is the binary to run as the probe.
pub fn checks(mini: &Path, busybox: Check, store_root: &Path) -> Vec<Check> {
    let mut checks = vec![
        user_namespaces(mini),
        busybox,
        store(store_root),
        cgroups(Path::new("/sys/fs/cgroup")),
        pip(&crate::pypi::Pip::from_env()),
    ];
    checks.extend(OPTIONAL_TOOLS.iter().map(|&(tool, purpose, package)| optional_tool(tool, purpose, package)));
    checks
}

/// Tools on `PATH` that only tests or extras use: name, what for, Debian package.
const OPTIONAL_TOOLS: &[(&str, &str, &str)] = &[
    ("skopeo", "reads and converts images in the image tests", "skopeo"),
    ("umoci", "unpacks OCI images in the image tests", "umoci"),
    ("runc", "runs built images in the image tests", "runc"),
    ("nix-instantiate", "real Nix, the oracle of the language tests", "nix-bin"),
    ("dot", "renders `mini graph --format svg`", "graphviz"),
    ("git", "lists the sources of a flake in a git work tree", "git"),
];

/// Whether per-build resource limits through cgroup v2 (`pids.max`,
/// `memory.max`) could be had here: the unified hierarchy at `root` with
/// both controllers. mini does not use them yet (the bounds it has are the
/// sizes of `/tmp` and `/dev/shm`), so this only informs.
fn cgroups(root: &Path) -> Check {
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok();
    let has = |name: &str| controllers.as_deref().is_some_and(|c| c.split_whitespace().any(|w| w == name));
    let (ok, detail) = match &controllers {
        None => (false, format!("no cgroup v2 hierarchy at {} (cgroup v1 or hybrid)", root.display())),
        Some(_) if has("pids") && has("memory") => (true, "cgroup v2 with the pids and memory controllers".to_string()),
        Some(found) => (false, format!("cgroup v2 without the pids and memory controllers (has: {})", found.trim())),
    };
    Check {
        name: "cgroups",
        required: false,
        ok,
        detail: format!(
            "{detail}; mini does not put builds in cgroups yet: they are bounded by --timeout, \
             --max-silent-time and --tmpfs-size"
        ),
        fix: (!ok).then(|| "boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2".to_string()),
    }
}

/// One line per check: status, name, detail, and the fix for a failure.
pub fn render_text(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for check in checks {
        let status = if check.ok { "ok" } else { "missing" };
        let optional = if check.required || check.ok { "" } else { "(optional) " };
        text.push_str(&format!("{status:<8} {:<width$}  {optional}{}", check.name, check.detail));
        if let Some(fix) = &check.fix {
            text.push_str(&format!("; fix: {fix}"));
        }
        text.push('\n');
    }
    text
}

/// `{"ok": …, "checks": [{"name", "required", "ok", "detail", "fix"}, …]}`.
pub fn render_json(checks: &[Check]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = checks
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name, "required": c.required, "ok": c.ok, "detail": c.detail, "fix": c.fix,
            })
        })
        .collect();
    serde_json::json!({ "ok": checks.iter().all(|c| c.ok || !c.required), "checks": items })
}

fn user_namespaces(mini: &Path) -> Check {
    let probe = Command::new(mini)
        .arg(crate::store_view::PROBE_ARG)
        .output()
        .map_err(|e| format!("cannot run the probe: {e}"))
        .and_then(|out| match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    match probe {
        Ok(()) => Check {
            name: "user namespaces",
            required: true,
            ok: true,
            detail: "unprivileged user and mount namespaces work (the build sandbox)".into(),
            fix: None,
        },
        Err(why) => Check {
            name: "user namespaces",
            required: true,
            ok: false,
            detail: format!("the build sandbox cannot start: {why}"),
            fix: Some(userns_fix(|name| std::fs::read_to_string(format!("/proc/sys/{name}")).ok())),
        },
    }
}

/// The fix for failing user namespaces, from the sysctls that can forbid
/// them (`sysctl` reads one by its path under `/proc/sys`).
fn userns_fix(sysctl: impl Fn(&str) -> Option<String>) -> String {
    let value = |name: &str| sysctl(name).map(|v| v.trim().to_string());
    if value("user/max_user_namespaces").as_deref() == Some("0") {
        return "sysctl -w user.max_user_namespaces=10000".into();
    }
    if value("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "sysctl -w kernel.unprivileged_userns_clone=1".into();
    }
    if value("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (AppArmor forbids them)".into();
    }
    "inside a container, allow user namespaces (e.g. docker run --security-opt seccomp=unconfined \
     --security-opt apparmor=unconfined)"
        .into()
}

/// The store root exists and is writable, or its nearest existing parent is
/// (so `Store::open` can make it). Writability is tried, not inferred from
/// mode bits, which say nothing of read-only mounts or of root.
fn store(root: &Path) -> Check {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let fix = "choose a writable place with --store DIR or $MINI_STORE".to_string();
    let existing = root.ancestors().find(|dir| dir.exists()).unwrap_or(Path::new("/"));
    let result = if !existing.is_dir() {
        Err(format!("{} is not a directory", existing.display()))
    } else {
        let probe = existing.join(format!(".mini-doctor-{}", std::process::id()));
        std::fs::create_dir(&probe)
            .and_then(|()| std::fs::remove_dir(&probe))
            .map_err(|e| format!("{} is not writable: {e}", existing.display()))
    };
    match result {
        Ok(()) if existing == root => Check {
            name: "store",
            required: true,
            ok: true,
            detail: format!("{} is writable", root.display()),
            fix: None,
        },
        Ok(()) => Check {
            name: "store",
            required: true,
            ok: true,
            detail: format!("{} can be created (in {})", root.display(), existing.display()),
            fix: None,
        },
        Err(why) => Check {
            name: "store",
            required: true,
            ok: false,
            detail: format!("cannot use {}: {why}", root.display()),
            fix: Some(fix),
        },
    }
}

/// The pip `fetchPypi` runs (`$MINI_PIP`, else `python3 -m pip`): its
/// version, or how to get one.
fn pip(pip: &crate::pypi::Pip) -> Check {
    match pip.version() {
        Ok(version) => Check {
            name: "pip",
            required: false,
            ok: true,
            detail: format!(
                "{} is {version} (optional: fetchPypi and `mini fetch pypi:` download with it)",
                pip.describe()
            ),
            fix: None,
        },
        Err(why) => Check {
            name: "pip",
            required: false,
            ok: false,
            detail: format!("fetchPypi and `mini fetch pypi:` cannot download: {why}"),
            fix: Some(format!(
                "apt-get install python3-pip, or set {}=COMMAND to the pip to use",
                crate::pypi::PIP_VAR
            )),
        },
    }
}

fn optional_tool(tool: &'static str, purpose: &str, package: &str) -> Check {
    match find_on_path(tool) {
        Some(found) => Check {
            name: tool,
            required: false,
            ok: true,
            detail: format!("{} (optional: {purpose})", found.display()),
            fix: None,
        },
        None => Check {
            name: tool,
            required: false,
            ok: false,
            detail: format!("not on PATH; {purpose}"),
            fix: Some(format!("apt-get install {package}")),
        },
    }
}

/// The first executable file named `tool` in `$PATH`'s directories.
fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|candidate| {
        std::fs::metadata(candidate).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_need_the_unified_hierarchy_with_pids_and_memory() {
        let dir = std::env::temp_dir().join(format!("mini-doctor-cgroups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!cgroups(&dir).ok && cgroups(&dir).detail.contains("no cgroup v2"));
        std::fs::write(dir.join("cgroup.controllers"), "cpu io\n").unwrap();
        assert!(!cgroups(&dir).ok && cgroups(&dir).detail.contains("has: cpu io"));
        std::fs::write(dir.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        let found = cgroups(&dir);
        assert!(found.ok && !found.required && found.fix.is_none(), "{found:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pip_is_found_or_the_fix_says_how_to_get_one() {
        let missing = pip(&crate::pypi::Pip::new(vec!["/nonexistent/mini-pip".into()]));
        assert!(!missing.ok && !missing.required, "{missing:?}");
        assert!(missing.detail.contains("/nonexistent/mini-pip"), "{missing:?}");
        assert!(missing.fix.as_deref().is_some_and(|f| f.contains("python3-pip") && f.contains("MINI_PIP")));
        let fake = std::env::temp_dir().join(format!("mini-doctor-pip-{}", std::process::id()));
        std::fs::write(&fake, "echo 'pip 99.1 from /somewhere (python 3.99)'\n").unwrap();
        let found = pip(&crate::pypi::Pip::new(vec!["sh".into(), fake.clone().into()]));
        std::fs::remove_file(&fake).unwrap();
        assert!(found.ok && found.detail.contains("is pip 99.1 from /somewhere"), "{found:?}");
    }

    #[test]
    fn the_fix_names_the_sysctl_that_forbids_namespaces() {
        let with = |name: &'static str, value: &'static str| move |n: &str| (n == name).then(|| format!("{value}\n"));
        assert!(userns_fix(with("user/max_user_namespaces", "0")).contains("user.max_user_namespaces="));
        assert!(userns_fix(with("kernel/unprivileged_userns_clone", "0")).contains("unprivileged_userns_clone=1"));
        let apparmor = userns_fix(with("kernel/apparmor_restrict_unprivileged_userns", "1"));
        assert!(apparmor.contains("apparmor_restrict_unprivileged_userns=0"), "{apparmor}");
        assert!(userns_fix(|_| None).contains("container"));
    }

    #[test]
    fn text_has_one_line_per_check_with_fixes_for_failures() {
        let checks = [
            Check { name: "store", required: true, ok: true, detail: "/s is writable".into(), fix: None },
            Check {
                name: "dot",
                required: false,
                ok: false,
                detail: "not on PATH; draws".into(),
                fix: Some("apt-get install graphviz".into()),
            },
        ];
        assert_eq!(
            render_text(&checks),
            "ok       store  /s is writable\nmissing  dot    (optional) not on PATH; draws; fix: apt-get install graphviz\n"
        );
        let json = render_json(&checks);
        assert_eq!(json["ok"], true);
        assert_eq!(json["checks"][1]["fix"], "apt-get install graphviz");
    }
}
