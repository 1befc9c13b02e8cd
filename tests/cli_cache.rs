//! Binary caches end to end: `mini key generate`, `mini copy` to a
//! directory, then `mini build` in an empty store substituting everything
//! (no builder runs, the same path infos), over file:// and over HTTP from
//! a real server; tampered archives and untrusted signatures are refused
//! with a warning and the build falls back to building.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{ok, text, Scratch};

/// `tool` is needed only to build `app`; `app` refers to `lib` and busybox
/// at run time. Each builder prints a marker, so runs are visible with -L.
const FLAKE: &str = r#"{ pkgs, ... }:
rec {
  tool = pkgs.runCommand "tool" {} "echo MARKER-tool-built; echo tool > $out";
  lib = pkgs.runCommand "lib" {} "echo MARKER-lib-built; mkdir -p $out; seq 1 20000 > $out/numbers";
  default = pkgs.runCommand "app" {} ''
    echo MARKER-app-built
    mkdir -p $out/bin
    cat ${tool} > $out/made-with
    echo ${lib} > $out/lib
    printf '#!${pkgs.busybox}/bin/sh\necho hi\n' > $out/bin/app
    chmod +x $out/bin/app
  '';
}
"#;

/// Runs mini with its own config directory, so no user config leaks in.
fn mini(store: &Path, config: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .current_dir(dir)
        .output()
        .expect("run mini")
}

struct Setup {
    s: Scratch,
    flake: PathBuf,
    config: PathBuf,
    /// The closure of `default` as `path-info -r --json` shows it.
    infos: String,
    public_key: String,
}

impl Setup {
    /// Builds the flake in a first store, makes a key and fills `cache`.
    fn new(name: &str) -> Setup {
        let s = Scratch::new(name);
        let flake = s.0.join("flake");
        s.write("flake/flake.nixlike", FLAKE);
        let config = s.0.join("config");
        let store = s.0.join("store");
        ok(&mini(&store, &config, &flake, &["build", ".", "--no-link"]));
        let keys = s.0.join("keys");
        let files =
            ok(&mini(&store, &config, &flake, &["key", "generate", "test-cache-1", "--out", keys.to_str().unwrap()]));
        assert!(files.contains("test-cache-1.secret"), "{files}");
        let public_key = std::fs::read_to_string(keys.join("test-cache-1.public")).unwrap();
        assert!(public_key.starts_with("test-cache-1:"), "{public_key}");
        let infos = ok(&mini(&store, &config, &flake, &["path-info", "-r", "--json", "."]));
        let setup = Setup { s, flake, config, infos, public_key };
        setup.copy(&store, "cache", Some(&keys.join("test-cache-1.secret")));
        setup
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.s.0.join(rel)
    }

    /// `mini copy` of the flake's default to the directory `cache`.
    fn copy(&self, store: &Path, cache: &str, key: Option<&Path>) -> String {
        let to = format!("file://{}", self.path(cache).display());
        let mut args = vec!["copy", "--to", &to];
        let key_text;
        if let Some(key) = key {
            key_text = key.display().to_string();
            args.extend(["--secret-key", &key_text]);
        }
        args.push(".");
        let out = mini(store, &self.config, &self.flake, &args);
        ok(&out);
        text(&out.stderr)
    }

    /// `mini build -L` of the default into the fresh store `store` with these extra arguments.
    fn build(&self, store: &str, extra: &[&str]) -> (String, String) {
        let store = self.path(store);
        let mut args = vec!["build", ".", "--no-link", "-L"];
        args.extend(extra);
        let out = mini(&store, &self.config, &self.flake, &args);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "build failed:\n{stderr}");
        let infos = ok(&mini(&store, &self.config, &self.flake, &["path-info", "-r", "--json", "."]));
        (stderr, infos)
    }
}

/// The file the narinfo of `default`'s output names.
fn archive_of_default(setup: &Setup, cache: &Path) -> PathBuf {
    let out = ok(&mini(&setup.path("store"), &setup.config, &setup.flake, &["path-info", "."]));
    let hash = out.trim_start_matches("/mini/store/").split('-').next().unwrap().to_string();
    let info = std::fs::read_to_string(cache.join(format!("{hash}.narinfo"))).unwrap();
    let url = info.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
    cache.join(url)
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_closure_is_substituted_without_running_a_builder() {
    let setup = Setup::new("cache-file");
    let cache = setup.path("cache");
    let info = std::fs::read_to_string(cache.join("nix-cache-info")).unwrap();
    assert!(info.contains("StoreDir: /mini/store"), "{info}");
    let narinfos: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".narinfo"))
        .collect();
    // app, lib and busybox: tool is not in app's runtime closure.
    assert_eq!(narinfos.len(), 3);
    let one = std::fs::read_to_string(narinfos[0].path()).unwrap();
    for field in ["StorePath: /mini/store/", "URL: nar/", "Compression: xz", "NarHash: blake3:", "Sig: test-cache-1:"] {
        assert!(one.contains(field), "{field} missing from:\n{one}");
    }
    // Only what is missing is sent.
    let again = setup.copy(&setup.path("store"), "cache", None);
    assert!(again.contains("copied 0 path(s); 3 were already there"), "{again}");

    let url = format!("file://{}", cache.display());
    let (stderr, infos) =
        setup.build("fresh", &["--substituters", &url, "--trusted-public-keys", setup.public_key.trim()]);
    assert!(!stderr.contains("building '") && !stderr.contains("MARKER"), "a builder ran:\n{stderr}");
    assert!(stderr.contains("from a binary cache"), "{stderr}");
    assert_eq!(infos, setup.infos);
    // The build-only input was neither built nor fetched.
    let tool = ok(&mini(&setup.path("store"), &setup.config, &setup.flake, &["path-info", ".#tool"]));
    let fresh = mini(&setup.path("fresh"), &setup.config, &setup.flake, &["path-info", &tool]);
    assert!(!fresh.status.success(), "{tool} is in the substituting store");
    ok(&mini(&setup.path("fresh"), &setup.config, &setup.flake, &["store", "verify", "--check-contents"]));
}

/// A python3 http.server on a free port, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python's `http.server`, taught to store what is PUT (plain or chunked
/// bodies), as a writable binary cache needs.
const PUT_SERVER: &str = r#"
import functools, http.server, os, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_PUT(self):
        path = self.translate_path(self.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(path, "wb") as f:
            f.write(body)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()
handler = functools.partial(Handler, directory=sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"#;

fn serve(dir: &Path) -> Option<(Server, u16)> {
    serve_with(dir, false)
}

/// An HTTP server on a free loopback port serving `dir`, accepting PUTs
/// if `writable`; `None` (the test skips) if python3 is missing, except
/// under CI, where that fails.
fn serve_with(dir: &Path, writable: bool) -> Option<(Server, u16)> {
    let has_python = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_python {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "python3 is missing (scripts/install-prerequisites)");
        eprintln!("skipping: python3 is missing");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = Command::new("python3");
    if writable {
        std::fs::create_dir_all(dir).unwrap();
        command.args(["-c", PUT_SERVER, &port.to_string()]).arg(dir);
    } else {
        command.args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"]).arg(dir);
    }
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let server = Server(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the http server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((server, port))
}

#[test]
fn a_closure_is_substituted_over_http_from_the_config_file() {
    let setup = Setup::new("cache-http");
    let Some((_server, port)) = serve(&setup.path("cache")) else { return };
    let config = serde_json::json!({
        "substituters": [format!("http://127.0.0.1:{port}")],
        "trustedPublicKeys": [setup.public_key.trim()],
    });
    setup.s.write("config/mini/config.json", &config.to_string());
    let (stderr, infos) = setup.build("fresh", &[]);
    assert!(!stderr.contains("building '") && !stderr.contains("MARKER"), "a builder ran:\n{stderr}");
    assert_eq!(infos, setup.infos);
}

#[test]
fn tampered_archives_and_untrusted_signatures_are_refused() {
    let setup = Setup::new("cache-bad");
    let trusted = setup.public_key.trim().to_string();

    // One byte of app's archive flipped: refused, app and what it needs built.
    copy_dir(&setup.path("cache"), &setup.path("tampered"));
    let archive = archive_of_default(&setup, &setup.path("tampered"));
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&archive, bytes).unwrap();
    let url = format!("file://{}", setup.path("tampered").display());
    let (stderr, infos) = setup.build("s1", &["--substituters", &url, "--trusted-public-keys", &trusted]);
    assert!(stderr.contains("is corrupt or was tampered with: its FileHash"), "{stderr}");
    assert!(stderr.contains("MARKER-app-built") && stderr.contains("MARKER-tool-built"), "{stderr}");
    // The inputs the plan left to substitution are announced as more work, not as a new plan.
    assert!(
        stderr.contains("more derivation") && stderr.contains("will be built first, for lack of a substitute"),
        "{stderr}"
    );
    // lib was still fine to substitute.
    assert!(!stderr.contains("MARKER-lib-built"), "{stderr}");
    assert_eq!(infos, setup.infos);
    ok(&mini(&setup.path("s1"), &setup.config, &setup.flake, &["store", "verify", "--check-contents"]));

    // Signed by another key: refused, everything built.
    let other = setup.path("other-keys");
    ok(&mini(
        &setup.path("store"),
        &setup.config,
        &setup.flake,
        &["key", "generate", "test-cache-1", "--out", other.to_str().unwrap()],
    ));
    setup.copy(&setup.path("store"), "other-cache", Some(&other.join("test-cache-1.secret")));
    let url = format!("file://{}", setup.path("other-cache").display());
    let (stderr, infos) = setup.build("s2", &["--substituters", &url, "--trusted-public-keys", &trusted]);
    assert!(stderr.contains("has no valid signature by a trusted key"), "{stderr}");
    assert!(stderr.contains("MARKER-app-built") && stderr.contains("MARKER-lib-built"), "{stderr}");
    assert_eq!(infos, setup.infos);

    // Unsigned: refused too.
    setup.copy(&setup.path("store"), "unsigned-cache", None);
    let url = format!("file://{}", setup.path("unsigned-cache").display());
    let (stderr, _) = setup.build("s3", &["--substituters", &url, "--trusted-public-keys", &trusted]);
    assert!(stderr.contains("is unsigned"), "{stderr}");
    assert!(stderr.contains("MARKER-app-built"), "{stderr}");
}

#[test]
fn copying_to_an_http_cache_uploads_with_put() {
    let setup = Setup::new("cache-put");
    let Some((_server, port)) = serve_with(&setup.path("uploaded"), true) else { return };
    let url = format!("http://127.0.0.1:{port}");
    let key = setup.path("keys/test-cache-1.secret");
    let store = setup.path("store");
    let key_text = key.display().to_string();
    let copy = |what: &str| {
        let out = mini(&store, &setup.config, &setup.flake, &["copy", "--to", &url, "--secret-key", &key_text, "."]);
        ok(&out);
        format!("{what}: {}", text(&out.stderr))
    };
    copy("first copy");
    // The uploaded cache holds what a file cache would, and serves a fresh store.
    assert!(setup.path("uploaded/nix-cache-info").is_file());
    let narinfos = std::fs::read_dir(setup.path("uploaded")).unwrap().flatten();
    assert!(narinfos.filter(|e| e.file_name().to_string_lossy().ends_with(".narinfo")).count() >= 2);
    let (stderr, infos) =
        setup.build("fresh", &["--substituters", &url, "--trusted-public-keys", setup.public_key.trim()]);
    assert!(!stderr.contains("building '") && !stderr.contains("MARKER"), "a builder ran:\n{stderr}");
    assert_eq!(infos, setup.infos);
    // Everything is there now: a second copy uploads nothing.
    let before: Vec<_> = walk(&setup.path("uploaded"));
    copy("second copy");
    assert_eq!(walk(&setup.path("uploaded")), before);
}

/// Every file under `dir` with its modification time, sorted.
fn walk(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push((entry.path(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}
