//! Remote builds end to end (issue 19): `mini build --remote` against a
//! private BuildGrid (tests/common/buildgrid.rs) with real `mini worker`s,
//! each with a store of its own. What a remote build leaves in the client's
//! store must be what a local build would have; the action cache must
//! spare a second client every execution; a worker that dies mid-build,
//! a server that restarts, a blob corrupted in CAS and a failing builder
//! must each end as they would locally, or in a clear error.
//!
//! BuildGrid and PostgreSQL are installed by `scripts/install-prerequisites`,
//! the static busybox by the host: without them the tests skip, with a
//! message, except under `CI=true`, where they fail.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::buildgrid::{self, BuildGrid, Worker, KEEPALIVE_SECONDS};
use common::{failed, flake_with, have_busybox, mini_at, ok, text, Scratch};

/// How long any one remote build may take before the test gives up on it.
const BUILD_TIMEOUT: Duration = Duration::from_secs(180);

/// A scratch directory for a test that needs BuildGrid and busybox; `None`
/// (the test skips) when one is missing outside CI.
fn scratch(name: &str) -> Option<Scratch> {
    buildgrid::installed()?;
    let s = Scratch::new(name);
    have_busybox(&s).then_some(s)
}

/// `mini --store STORE build --remote URL -j JOBS --no-link
/// --print-out-paths .#ATTR` in the flake `dir`.
fn build_remote(store: &Path, dir: &Path, url: &str, jobs: usize, attr: &str) -> Output {
    let jobs = jobs.to_string();
    let installable = format!(".#{attr}");
    mini_at(store, dir, &["build", "--remote", url, "-j", &jobs, "--no-link", "--print-out-paths", &installable])
}

/// `mini --store STORE build --no-remote -j JOBS ...`: the same, here.
fn build_local(store: &Path, dir: &Path, jobs: usize, attr: &str) -> String {
    let jobs = jobs.to_string();
    let installable = format!(".#{attr}");
    ok(&mini_at(store, dir, &["build", "--no-remote", "-j", &jobs, "--no-link", "--print-out-paths", &installable]))
}

/// `mini path-info -r --json OUT` in `store`: the closure as the store
/// registered it.
fn closure_info(store: &Path, out: &str) -> String {
    ok(&mini_at(store, Path::new("."), &["path-info", "-r", "--json", out]))
}

/// Where a logical store path of `store` is on disk.
fn physical(store: &Path, path: &str) -> PathBuf {
    store.join("store").join(path.trim_start_matches("/mini/store/"))
}

/// The store has no problems, contents included.
fn assert_store_verifies(store: &Path) {
    let out = mini_at(store, Path::new("."), &["store", "verify", "--check-contents"]);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "mini store verify found problems:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The number of `building ` lines a worker has logged.
fn builds(worker: &Worker) -> usize {
    worker.log().lines().filter(|l| l.contains(": building ")).count()
}

/// Names of store entries in `store` whose name ends with `-NAME`.
fn entries_named(store: &Path, name: &str) -> Vec<String> {
    let suffix = format!("-{name}");
    std::fs::read_dir(store.join("store"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(&suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `condition` every 50 ms until it holds; panics with `what` (and
/// `context()`) after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}:\n{}", context());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `mini build --remote` running in the background, its stdout and
/// stderr going to files.
struct Background {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    fn spawn(store: &Path, dir: &Path, url: &str, attr: &str, logs: &Path) -> Background {
        let stdout = logs.join("client.out");
        let stderr = logs.join("client.err");
        let child = Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(store)
            .args(["build", "--remote", url, "--no-link", "--print-out-paths", &format!(".#{attr}")])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create client.out"))
            .stderr(File::create(&stderr).expect("create client.err"))
            .spawn()
            .expect("start mini build");
        Background { child, stdout, stderr }
    }

    /// Waits for the build to end (killing it after [`BUILD_TIMEOUT`]):
    /// whether it succeeded, its stdout and its stderr.
    fn finish(mut self) -> (bool, String, String) {
        let deadline = Instant::now() + BUILD_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for mini build") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let (stdout, stderr) = (read(&self.stdout), read(&self.stderr));
        let status = status.unwrap_or_else(|| panic!("mini build did not end within {BUILD_TIMEOUT:?}:\n{stderr}"));
        (status.success(), stdout, stderr)
    }
}

/// The derivations of a 50-node DAG, as flake attributes (`sh` in scope):
/// 20 leaves; 20 mids, each linking to two leaves; 9 uppers, each linking
/// to the mids whose number modulo 9 is its own; and `top`, whose output
/// holds an absolute symlink to each of the 49 others, an empty directory
/// and an executable.
fn fifty_derivations() -> String {
    let mut nix = String::new();
    let mut all = Vec::new();
    for i in 0..20 {
        nix.push_str(&format!("  leaf{i} = sh \"leaf{i}\" \"echo leaf {i} > $out\";\n"));
        all.push(format!("leaf{i}"));
    }
    for i in 0..20 {
        let (a, b) = (i, (i + 7) % 20);
        nix.push_str(&format!(
            "  mid{i} = sh \"mid{i}\" \"mkdir $out; ln -s ${{leaf{a}}} $out/a; ln -s ${{leaf{b}}} $out/b; \
             echo {i} > $out/n\";\n"
        ));
        all.push(format!("mid{i}"));
    }
    for u in 0..9 {
        let links: String =
            (0..20).filter(|m| m % 9 == u).map(|m| format!("ln -s ${{mid{m}}} $out/mid{m}; ")).collect();
        nix.push_str(&format!("  upper{u} = sh \"upper{u}\" \"mkdir $out; {links}echo upper {u} > $out/n\";\n"));
        all.push(format!("upper{u}"));
    }
    let targets: String = all.iter().map(|a| format!("${{{a}}} ")).collect();
    nix.push_str(&format!(
        "  top = sh \"top\" \"mkdir $out $out/bin $out/empty; for d in {targets}; do ln -s $d $out/; done; \
         echo exit 0 > $out/bin/run; chmod 555 $out/bin/run\";\n"
    ));
    nix
}

/// Starts BuildGrid and two workers (`-j 1`, each its own store) in `s`,
/// writes the 50-derivation flake to `s/flake` and builds `top` remotely
/// into `s/client` with `-j 4`: the grid, the workers, the flake and
/// `top`'s output. Asserts that all 50 were executed on the workers and
/// that the closure is what a local build registers.
fn build_fifty_remotely(s: &Scratch) -> (BuildGrid, [Worker; 2], PathBuf, String) {
    let grid = BuildGrid::start(&s.0.join("grid"));
    let workers = [1, 2].map(|n| {
        let store = s.0.join(format!("worker{n}"));
        Worker::spawn(&store, &grid.url(), 1, &s.0.join(format!("worker{n}.log")))
    });
    // Both must be serving before the build, or one may take everything.
    for worker in &workers {
        wait_for("a worker to serve", Duration::from_secs(30), || worker.log().contains(": serving "), || worker.log());
    }
    let dir = s.0.join("flake");
    flake_with(&dir, &[], &fifty_derivations());
    let client = s.0.join("client");
    let built = build_remote(&client, &dir, &grid.url(), 4, "top");
    let remote_out = ok(&built);
    let stderr = text(&built.stderr);
    assert!(stderr.contains("remote: 50 executed, 0 from the action cache"), "{stderr}");
    for (n, worker) in workers.iter().enumerate() {
        assert!(builds(worker) >= 1, "worker {} built nothing:\n{}", n + 1, worker.log());
    }

    let local = s.0.join("local");
    let local_out = build_local(&local, &dir, 4, "top");
    assert_eq!(remote_out, local_out);
    let remote_info = closure_info(&client, &remote_out);
    assert_eq!(remote_info, closure_info(&local, &local_out));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&remote_info).unwrap().as_array().map(Vec::len), Some(50));
    assert_store_verifies(&client);
    (grid, workers, dir, remote_out)
}

#[test]
fn a_fifty_derivation_dag_built_remotely_is_identical_to_a_local_build() {
    let Some(s) = scratch("remote-dag") else { return };
    let (_grid, _workers, _dir, out) = build_fifty_remotely(&s);
    let top = physical(&s.0.join("client"), &out);
    let links: Vec<String> = std::fs::read_dir(&top)
        .expect("read top's output")
        .filter_map(|e| std::fs::read_link(e.expect("an entry").path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    assert_eq!(links.len(), 49, "{links:?}");
    assert!(links.iter().all(|l| l.starts_with("/mini/store/")), "{links:?}");
    assert!(top.join("empty").is_dir());
    let mode = std::fs::metadata(top.join("bin/run")).expect("top's bin/run").permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "{mode:o}");
}

#[test]
fn a_second_client_with_a_fresh_store_gets_everything_from_the_action_cache() {
    let Some(s) = scratch("remote-cached") else { return };
    let (grid, workers, dir, out) = build_fifty_remotely(&s);
    let before = workers.each_ref().map(builds);
    let second = s.0.join("second");
    let built = build_remote(&second, &dir, &grid.url(), 4, "top");
    assert_eq!(ok(&built), out);
    let stderr = text(&built.stderr);
    assert!(stderr.contains("remote: 0 executed, 50 from the action cache"), "{stderr}");
    assert_eq!(closure_info(&second, &out), closure_info(&s.0.join("client"), &out));
    assert_eq!(workers.each_ref().map(builds), before, "{}\n{}", workers[0].log(), workers[1].log());
    assert_store_verifies(&second);
}

/// The builder of the derivation a worker is killed building.
const SLEEPER: &str = "sleep 6; echo done > $out";

/// The live processes whose command line holds `needle`.
fn processes_running(needle: &str) -> Vec<String> {
    let needle = needle.as_bytes();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let zombie = stat[stat.rfind(')')? + 1..].trim_start().starts_with('Z');
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let mentions = cmdline.windows(needle.len()).any(|w| w == needle);
            (mentions && !zombie).then(|| format!("{pid}: {}", text(&cmdline).replace('\0', " ")))
        })
        .collect()
}

#[test]
fn a_worker_killed_mid_build_loses_nothing_and_the_build_completes() {
    let Some(s) = scratch("remote-killed") else { return };
    let grid = BuildGrid::start(&s.0.join("grid"));
    let mut workers = [1, 2].map(|n| {
        let store = s.0.join(format!("worker{n}"));
        Worker::spawn(&store, &grid.url(), 1, &s.0.join(format!("worker{n}.log")))
    });
    let dir = s.0.join("flake");
    flake_with(&dir, &[("sleeper", SLEEPER)], "");
    let client = s.0.join("client");
    let build = Background::spawn(&client, &dir, &grid.url(), "sleeper", &s.0);
    let building = |w: &Worker| w.log().lines().any(|l| l.contains(": building ") && l.ends_with("-sleeper.drv"));
    let mut first = None;
    wait_for(
        "a worker to start building",
        Duration::from_secs(60),
        || {
            first = workers.iter().position(building);
            first.is_some()
        },
        || format!("{}\n{}\n{}", workers[0].log(), workers[1].log(), grid.log()),
    );
    let first = first.expect("a worker builds");
    let other = 1 - first;
    wait_for(
        "its builder to run",
        Duration::from_secs(10),
        || !processes_running(SLEEPER).is_empty(),
        || workers[first].log(),
    );
    workers[first].kill();
    let started = Instant::now();
    // Its builder dies with it: until the server gives the lease to the
    // other worker (after the keepalive timeout), no builder runs it.
    std::thread::sleep(Duration::from_millis(500));
    let survivors = processes_running(SLEEPER);
    if !building(&workers[other]) {
        assert!(survivors.is_empty(), "the killed worker's builder still runs: {survivors:?}");
    }

    let (success, stdout, stderr) = build.finish();
    assert!(success, "the build failed after its worker was killed:\n{stderr}\n{}", workers[other].log());
    assert!(
        started.elapsed() >= Duration::from_secs(KEEPALIVE_SECONDS.into()) / 2,
        "the build ended before the server could notice the dead worker: {:?}",
        started.elapsed()
    );
    assert!(building(&workers[other]), "the other worker did not build it:\n{}", workers[other].log());
    let out = stdout.trim();
    assert_eq!(std::fs::read_to_string(physical(&client, out)).ok().as_deref(), Some("done\n"));
    let shown = ok(&mini_at(&client, &dir, &["path-info", out]));
    assert_eq!(shown, out);
    assert!(stderr.contains("remote: 1 executed"), "{stderr}");
    assert_store_verifies(&client);
}

#[test]
fn a_failing_derivation_s_log_reaches_the_client() {
    let Some(s) = scratch("remote-failing") else { return };
    let grid = BuildGrid::start(&s.0.join("grid"));
    let _worker = Worker::spawn(&s.0.join("worker"), &grid.url(), 1, &s.0.join("worker.log"));
    let dir = s.0.join("flake");
    flake_with(&dir, &[("failer", "echo the-distinctive-line-of-failer; exit 3")], "");
    let client = s.0.join("client");
    let built = build_remote(&client, &dir, &grid.url(), 1, "failer");
    assert_eq!(built.status.code(), Some(1), "{}", text(&built.stderr));
    let stderr = failed(&built);
    assert!(stderr.contains("the-distinctive-line-of-failer"), "{stderr}");
    assert!(stderr.contains("on the remote builder"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let log = ok(&mini_at(&client, &dir, &["log", ".#failer"]));
    assert!(log.contains("the-distinctive-line-of-failer"), "{log}");
    assert!(entries_named(&client, "failer").is_empty(), "{:?}", entries_named(&client, "failer"));
    assert_store_verifies(&client);
}

#[test]
fn a_remote_build_is_killed_after_the_timeout() {
    let Some(s) = scratch("remote-timeout") else { return };
    let grid = BuildGrid::start(&s.0.join("grid"));
    let worker = Worker::spawn(&s.0.join("worker"), &grid.url(), 1, &s.0.join("worker.log"));
    let dir = s.0.join("flake");
    flake_with(&dir, &[("overlong", "sleep 25; echo late > $out")], "");
    let client = s.0.join("client");
    let started = Instant::now();
    let out = mini_at(&client, &dir, &["build", "--remote", &grid.url(), "--timeout", "2", "--no-link", ".#overlong"]);
    let elapsed = started.elapsed();
    let stderr = failed(&out);
    assert!(stderr.contains("timed out"), "{stderr}\n{}", worker.log());
    assert!(elapsed < Duration::from_secs(24), "the build ran {elapsed:?} despite --timeout 2:\n{stderr}");
    assert!(entries_named(&client, "overlong").is_empty(), "{:?}", entries_named(&client, "overlong"));
}

#[test]
fn fixed_output_derivations_are_built_by_the_client() {
    let Some(s) = scratch("remote-fixed") else { return };
    let grid = BuildGrid::start(&s.0.join("grid"));
    let worker = Worker::spawn(&s.0.join("worker"), &grid.url(), 1, &s.0.join("worker.log"));
    let dir = s.0.join("flake");
    // sha256("hello\n"); `uses` is an ordinary derivation that needs it.
    flake_with(
        &dir,
        &[],
        "  fixedHello = derivation { name = \"fixed-hello\"; system = \"x86_64-linux\"; \
         builder = \"${pkgs.busybox}/bin/sh\"; args = [ \"-c\" \"echo hello > $out\" ]; \
         PATH = \"${pkgs.busybox}/bin\"; outputHashAlgo = \"sha256\"; \
         outputHash = \"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\"; };\n  \
         usesFixed = sh \"uses-fixed\" \"cat ${fixedHello} > $out\";\n",
    );
    let client = s.0.join("client");
    let fixed = build_remote(&client, &dir, &grid.url(), 2, "fixedHello");
    let stderr = text(&fixed.stderr);
    let out = ok(&fixed);
    assert!(stderr.contains("remote: 0 executed, 0 from the action cache"), "{stderr}");
    assert_eq!(std::fs::read_to_string(physical(&client, &out)).ok().as_deref(), Some("hello\n"));
    let uses = build_remote(&client, &dir, &grid.url(), 2, "usesFixed");
    let stderr = text(&uses.stderr);
    ok(&uses);
    assert!(stderr.contains("remote: 1 executed"), "{stderr}");
    let log = worker.log();
    assert!(log.contains("-uses-fixed.drv"), "{log}");
    assert!(!log.contains("-fixed-hello.drv"), "the worker was sent the fixed-output derivation:\n{log}");
    assert_store_verifies(&client);
}

#[test]
fn a_worker_reconnects_after_the_server_restarts() {
    let Some(s) = scratch("remote-restart") else { return };
    let mut grid = BuildGrid::start(&s.0.join("grid"));
    let worker = Worker::spawn(&s.0.join("worker"), &grid.url(), 1, &s.0.join("worker.log"));
    wait_for("the worker to serve", Duration::from_secs(30), || worker.log().contains(": serving "), || worker.log());
    grid.restart_server();
    wait_for(
        "the worker to notice the restart",
        Duration::from_secs(30),
        || worker.log().contains("connecting again"),
        || worker.log(),
    );
    let dir = s.0.join("flake");
    flake_with(&dir, &[("after-restart", "echo built after the restart > $out")], "");
    let client = s.0.join("client");
    let built = build_remote(&client, &dir, &grid.url(), 1, "after-restart");
    let stderr = text(&built.stderr);
    ok(&built);
    assert!(stderr.contains("remote: 1 executed"), "{stderr}");
    let log = worker.log();
    let reconnected = log.find("connecting again").expect("seen above");
    let building = log.find("-after-restart.drv").unwrap_or_else(|| panic!("the worker did not build it:\n{log}"));
    assert!(reconnected < building, "{log}");
}

#[test]
fn a_server_restart_mid_build_does_not_lose_the_build() {
    let Some(s) = scratch("remote-restart-mid-build") else { return };
    let mut grid = BuildGrid::start(&s.0.join("grid"));
    let worker = Worker::spawn(&s.0.join("worker"), &grid.url(), 1, &s.0.join("worker.log"));
    let dir = s.0.join("flake");
    flake_with(&dir, &[("slow", "sleep 4; echo slow > $out")], "");
    let client = s.0.join("client");
    let build = Background::spawn(&client, &dir, &grid.url(), "slow", &s.0);
    wait_for(
        "the worker to start building",
        Duration::from_secs(60),
        || worker.log().contains("-slow.drv"),
        || format!("{}\n{}", worker.log(), grid.log()),
    );
    grid.restart_server();
    let (success, stdout, stderr) = build.finish();
    assert!(success, "{stderr}\n{}", worker.log());
    assert!(stderr.contains("remote: 1 executed"), "{stderr}");
    assert!(!stderr.contains("building it here instead"), "{stderr}");
    assert_eq!(std::fs::read_to_string(physical(&client, stdout.trim())).ok().as_deref(), Some("slow\n"));
    // The worker either kept its session across the restart or made a new one.
    let log = worker.log();
    assert!(log.contains("asking again with its lease") || log.contains("connecting again"), "{log}");
    assert_store_verifies(&client);
}

#[test]
fn a_corrupt_blob_in_cas_is_refused_and_the_derivation_built_locally() {
    let Some(s) = scratch("remote-corrupt") else { return };
    let grid = BuildGrid::start(&s.0.join("grid"));
    let _worker = Worker::spawn(&s.0.join("worker"), &grid.url(), 1, &s.0.join("worker.log"));
    let dir = s.0.join("flake");
    flake_with(&dir, &[("small", "echo a small output > $out")], "");
    let first = s.0.join("first");
    let built = build_remote(&first, &dir, &grid.url(), 1, "small");
    let out = ok(&built);
    assert!(text(&built.stderr).contains("remote: 1 executed"), "{}", text(&built.stderr));
    let info = ok(&mini_at(&first, &dir, &["path-info", "--json", &out]));

    // Every NAR blob BuildGrid holds gets other bytes of the same length.
    let corrupted = corrupt_nar_blobs(&grid.cas_dir());
    assert!(corrupted >= 1, "no NAR blob under {}", grid.cas_dir().display());

    let second = s.0.join("second");
    let built = build_remote(&second, &dir, &grid.url(), 1, "small");
    let stderr = text(&built.stderr);
    assert_eq!(ok(&built), out, "{stderr}");
    assert!(stderr.contains("failed, building it here instead"), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert_eq!(ok(&mini_at(&second, &dir, &["path-info", "--json", &out])), info);
    assert_store_verifies(&second);
}

/// Overwrites every blob file under `cas` whose content is a NAR (it
/// starts with the length-prefixed "nix-archive-1") with as many other
/// bytes; how many there were.
fn corrupt_nar_blobs(cas: &Path) -> usize {
    const MAGIC: &[u8] = b"\x0d\0\0\0\0\0\0\0nix-archive-1";
    let mut count = 0;
    let mut dirs = vec![cas.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the CAS directory").flatten() {
            let path = entry.path();
            let kind = entry.file_type().expect("the type of a CAS entry");
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).expect("read a blob");
                if bytes.starts_with(MAGIC) {
                    let other: Vec<u8> = bytes.iter().map(|b| !b).collect();
                    std::fs::write(&path, other).expect("overwrite a blob");
                    count += 1;
                }
            }
        }
    }
    count
}

#[test]
fn a_bad_remote_address_is_a_clear_error() {
    let s = Scratch::new("remote-bad-address");
    if !have_busybox(&s) {
        return;
    }
    let dir = s.0.join("flake");
    flake_with(&dir, &[("anything", "echo never built > $out")], "");
    let store = s.0.join("store");
    let cases = [("http://x:1", "is not a remote build service address"), ("grpc://127.0.0.1:1", "cannot reach")];
    for (url, expected) in cases {
        let out = build_remote(&store, &dir, url, 1, "anything");
        assert_eq!(out.status.code(), Some(1), "{url}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(stderr.contains(url), "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{url}: {stderr}");
        assert!(entries_named(&store, "anything").is_empty(), "{url}: {:?}", entries_named(&store, "anything"));
    }
}
