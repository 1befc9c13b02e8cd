//! `mini build` end to end: the sandbox (each escape probe must be
//! blocked, and each probe would report an escape if the protection were
//! missing), fixed-output checks, crash and concurrency safety,
//! determinism across directories and store roots, `--check`, timeouts,
//! logs, out-links and `mini run`.
//!
//! Builders are the prelude's busybox (from Debian's busybox-static), so
//! these tests fail, not skip, where it is missing.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{flake, flake_with, mini_at as mini, nix_string, ok, text, Scratch};

/// Builds `attr` of the flake in `dir` and returns its output path.
fn build(store: &Path, dir: &Path, attr: &str) -> String {
    ok(&mini(store, dir, &["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"]))
}

/// The physical location of a logical store path.
fn physical(store: &Path, path: &str) -> PathBuf {
    store.join("store").join(path.trim_start_matches("/mini/store/"))
}

fn read_output(store: &Path, path: &str) -> String {
    std::fs::read_to_string(physical(store, path)).unwrap()
}

#[test]
fn builds_link_results_and_skip_what_is_valid() {
    let s = Scratch::new("build-basic");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(&dir, &[("hello", "echo hello > $out"), ("default", "mkdir -p $out/bin; echo hi > $out/bin/greeting")]);
    let out = ok(&mini(&store, &dir, &["build", ".#hello", "--print-out-paths"]));
    assert!(out.starts_with("/mini/store/") && out.ends_with("-hello"), "{out}");
    assert_eq!(read_output(&store, &out), "hello\n");
    let link = std::fs::read_link(dir.join("result")).unwrap();
    assert_eq!(link, physical(&store, &out));
    // The out-link is a GC root.
    let gc = ok(&mini(&store, &dir, &["gc", "--dry-run"]));
    assert!(!gc.contains(&out), "{gc}");
    // Valid now: a second build builds nothing.
    let again = mini(&store, &dir, &["build", ".#hello", "--no-link"]);
    ok(&again);
    assert!(!text(&again.stderr).contains("building"), "{}", text(&again.stderr));
    // `PATH` alone means PATH#default; -o names the link.
    ok(&mini(&store, &dir, &["build", ".", "-o", "greet"]));
    assert_eq!(std::fs::read_to_string(dir.join("greet/bin/greeting")).unwrap(), "hi\n");
    // --json says what was built.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&mini(&store, &dir, &["build", ".#hello", "--no-link", "--json"]))).unwrap();
    assert_eq!(json[0]["outputs"]["out"], out.as_str());
    assert!(json[0]["drvPath"].as_str().unwrap().ends_with("-hello.drv"));
}

#[test]
fn the_builder_sees_only_what_the_sandbox_gives_it() {
    let s = Scratch::new("build-view");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(
        &dir,
        &[(
            "view",
            "mkdir $out; env | sort > $out/env; ls / | tr '\\n' ' ' > $out/root; hostname > $out/hostname; \
             ls /mini/store | wc -l > $out/store-entries; pwd > $out/pwd; id -u > $out/uid; \
             ls /dev | tr '\\n' ' ' > $out/dev; stat -c %a /tmp > $out/tmp-mode; cat /etc/passwd > $out/passwd",
        )],
    );
    let out = build(&store, &dir, "view");
    let file = |name: &str| std::fs::read_to_string(physical(&store, &out).join(name)).unwrap();
    let env = file("env");
    for expected in [
        "HOME=/homeless-shelter",
        "TMPDIR=/build",
        "SOURCE_DATE_EPOCH=315532800",
        "TZ=UTC",
        "LC_ALL=C",
        "MINI_BUILD_CORES=",
    ] {
        assert!(env.contains(expected), "{expected} missing from:\n{env}");
    }
    assert!(env.contains(&format!("out={out}")), "{env}");
    for leak in ["USER=", "HOSTNAME=", "CARGO", "RUST", "TERM="] {
        assert!(!env.lines().any(|l| l.starts_with(leak)), "{leak} leaked into:\n{env}");
    }
    assert_eq!(file("root").split_whitespace().collect::<Vec<_>>(), ["build", "dev", "etc", "mini", "proc", "tmp"]);
    assert_eq!(file("hostname"), "localhost\n");
    assert_eq!(file("pwd"), "/build\n");
    assert_eq!(file("uid"), "1000\n");
    assert_eq!(file("tmp-mode"), "1777\n");
    // busybox, and the output being built: nothing else of the store.
    assert_eq!(file("store-entries").trim(), "2");
    for dev in ["null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr"] {
        assert!(file("dev").split_whitespace().any(|d| d == dev), "/dev/{dev} missing: {}", file("dev"));
    }
    // No terminal: a builder must not reach the user's.
    assert!(!file("dev").split_whitespace().any(|d| d == "tty"), "/dev/tty is there: {}", file("dev"));
    assert!(file("passwd").contains(":1000:100:"));
}

#[test]
fn sandbox_escapes_are_blocked() {
    let s = Scratch::new("build-escape");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    // A listener on the host's loopback, a secret outside the inputs, a
    // host process to look for.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let secret = s.write("secret.txt", "the secret\n");
    let home_secret = std::env::var("HOME").map(PathBuf::from).unwrap_or_else(|_| "/root".into());
    let mut marker = Command::new("sleep").arg("300").spawn().unwrap();
    let marker_pid = marker.id();
    let busybox =
        ok(&mini(&store, &dir_with_busybox_flake(&s.0), &["build", ".#bb", "--no-link", "--print-out-paths"]));
    let probe = |attempt: &str| format!("if {attempt}; then echo escaped > $out; else echo blocked > $out; fi");
    flake(
        &dir,
        &[
            ("tcp", &probe(&format!("echo hi | nc -w 2 127.0.0.1 {port}"))),
            ("secret", &probe(&format!("cat {}", secret.display()))),
            ("home", &probe(&format!("ls {}", home_secret.display()))),
            ("procs", &probe(&format!("test -e /proc/{marker_pid}"))),
            ("store", &probe(&format!("touch {busybox}/bin/evil 2>/dev/null || mkdir {busybox}/evil"))),
        ],
    );
    for probe in ["tcp", "secret", "home", "procs", "store"] {
        let out = build(&store, &dir, probe);
        assert_eq!(read_output(&store, &out), "blocked\n", "the {probe} probe escaped the sandbox");
    }
    assert!(listener.accept().is_err(), "a build reached the host's loopback listener");
    assert!(!physical(&store, &busybox).join("bin/evil").exists());
    let _ = marker.kill();
    let _ = marker.wait();
}

/// A second flake that only exposes busybox, to learn its store path.
fn dir_with_busybox_flake(root: &Path) -> PathBuf {
    let dir = root.join("busybox-flake");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("flake.nixlike"),
        "{ pkgs, ... }: { bb = derivation { name = \"bb\"; system = \"x86_64-linux\"; \
         builder = \"${pkgs.busybox}/bin/sh\"; args = [ \"-c\" \"echo ${pkgs.busybox} > $out\" ]; }; }",
    )
    .unwrap();
    dir
}

#[test]
fn writing_into_the_store_outside_out_leaves_no_trace() {
    let s = Scratch::new("build-store-write");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(&dir, &[("w", "mkdir /mini/store/00000000000000000000000000000000-smuggled; echo ok > $out")]);
    build(&store, &dir, "w");
    let entries: Vec<String> = std::fs::read_dir(store.join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!entries.iter().any(|e| e.ends_with("-smuggled")), "{entries:?}");
}

/// Host processes whose command line contains `needle`.
/// The processes whose command line contains `needle` that are still
/// there after a grace of up to 3 s for the kernel to finish tearing a
/// killed namespace down (a leaked process would stay far longer).
fn survivors(needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_running(needle);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn processes_running(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = text(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn nothing_a_build_starts_outlives_it() {
    let s = Scratch::new("build-background");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(&dir, &[("bg", "sleep 4343 & sleep 4343 & echo started > $out")]);
    build(&store, &dir, "bg");
    let left = survivors("sleep 4343");
    assert!(left.is_empty(), "build processes survived: {left:?}");
}

#[test]
fn outputs_are_canonicalised() {
    let s = Scratch::new("build-canonical");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(
        &dir,
        &[(
            "modes",
            "mkdir $out; echo x > $out/suid; chmod 777 $out/suid; chmod u+s $out/suid || echo refused; \
             echo y > $out/open; chmod 666 $out/open; \
             mkdir $out/d; chmod 777 $out/d; touch -d @1700000000 $out/open",
        )],
    );
    let out = build(&store, &dir, "modes");
    let root = physical(&store, &out);
    for (file, expected) in [("suid", 0o555), ("open", 0o444), ("d", 0o555), ("", 0o555)] {
        let meta = std::fs::symlink_metadata(root.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, expected, "mode of '{file}'");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mtime(), 1, "mtime of '{file}'");
    }
    // Special files are refused, and nothing is registered.
    flake(&dir, &[("fifo", "mkdir $out; mkfifo $out/pipe")]);
    let failed = mini(&store, &dir, &["build", ".#fifo", "--no-link"]);
    assert!(!failed.status.success());
    let err = text(&failed.stderr);
    assert!(err.contains("pipe") && err.contains("fifo"), "{err}");
}

#[test]
fn fixed_output_hashes_are_verified() {
    let s = Scratch::new("build-fixed");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    // sha256("hello\n")
    let right = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let wrong = "0000000000000000000000000000000000000000000000000000000000000000";
    let fixed = |name: &str, hash: &str| {
        format!(
            "  {name} = derivation {{ name = \"{name}\"; system = \"x86_64-linux\"; \
             builder = \"${{pkgs.busybox}}/bin/sh\"; args = [ \"-c\" \"echo hello > $out\" ]; \
             PATH = \"${{pkgs.busybox}}/bin\"; outputHashAlgo = \"sha256\"; outputHash = \"{hash}\"; }};\n"
        )
    };
    flake_with(&dir, &[], &(fixed("good", right) + &fixed("bad", wrong)));
    let out = build(&store, &dir, "good");
    assert_eq!(read_output(&store, &out), "hello\n");
    let failed = mini(&store, &dir, &["build", ".#bad", "--no-link"]);
    assert!(!failed.status.success());
    let err = text(&failed.stderr);
    assert!(err.contains("hash mismatch"), "{err}");
    assert!(
        err.contains("sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM="),
        "the actual hash is not shown:\n{err}"
    );
    assert!(
        err.contains("sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        "the declared hash is not shown:\n{err}"
    );
    let registered = ok(&mini(&store, &dir, &["store", "verify"]));
    assert!(registered.is_empty(), "{registered}");
    let valid: Vec<String> = std::fs::read_dir(store.join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-bad"))
        .collect();
    assert!(valid.is_empty(), "a mismatched output was kept: {valid:?}");
}

#[test]
fn builtin_fetchurl_fetches_a_local_file_by_hash() {
    let s = Scratch::new("build-fetchurl");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    let file = s.write("data/hello.txt", "hello\n");
    flake_with(
        &dir,
        &[],
        &format!(
            "  fetched = derivation {{ name = \"hello.txt\"; system = \"builtin\"; builder = \"builtin:fetchurl\"; \
             url = \"file://{}\"; outputHashAlgo = \"sha256\"; \
             outputHash = \"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\"; }};\n",
            file.display()
        ),
    );
    // file:// URLs read only below the directories the user allows.
    let built = Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(&store)
        .args(["build", ".#fetched", "--no-link", "--print-out-paths"])
        .current_dir(&dir)
        .env("MINI_ALLOWED_FILE_URLS", s.0.join("data"))
        .output()
        .unwrap();
    let out = ok(&built);
    assert_eq!(read_output(&store, &out), "hello\n");
}

#[test]
fn failures_show_the_log_and_keep_going_builds_the_rest() {
    let s = Scratch::new("build-fail");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake_with(
        &dir,
        &[("bad", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do echo line $i; done; echo oops > /build/left-behind; exit 3"), ("good", "sleep 0.5; echo fine > $out")],
        "  both = derivation { name = \"both\"; system = \"x86_64-linux\"; builder = \"${pkgs.busybox}/bin/sh\"; \
         args = [ \"-c\" \"echo ${bad} ${good} > $out\" ]; };\n",
    );
    let failed = mini(&store, &dir, &["build", ".#bad", "--no-link", "--keep-failed"]);
    assert!(!failed.status.success());
    let err = text(&failed.stderr);
    assert!(err.contains("exit code 3"), "{err}");
    assert!(
        err.contains("line 30") && err.contains("line 6") && !err.contains("line 5\n"),
        "not the last 25 lines:\n{err}"
    );
    assert!(err.contains("the full log is at"), "{err}");
    let kept = err.lines().find_map(|l| l.split(" at ").nth(1).filter(|_| l.contains("keeping"))).unwrap();
    assert_eq!(std::fs::read_to_string(Path::new(kept.trim()).join("left-behind")).unwrap(), "oops\n");
    let log = ok(&mini(&store, &dir, &["log", ".#bad"]));
    assert!(log.starts_with("line 1\n") && log.ends_with("line 30"), "{log}");
    // Without --keep-going the first failure stops everything; with it,
    // `good` is still built.
    let stopped = mini(&store, &dir, &["build", ".#both", "--no-link", "-j", "1"]);
    assert!(!stopped.status.success());
    let going = mini(&store, &dir, &["build", ".#both", ".#good", "--no-link", "--keep-going", "-j", "2"]);
    assert!(!going.status.success());
    let good = build(&store, &dir, "good");
    assert!(physical(&store, &good).exists());
}

#[test]
fn timeouts_kill_the_build() {
    let s = Scratch::new("build-timeout");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(&dir, &[("slow", "sleep 30; echo late > $out"), ("quiet", "echo start; sleep 30; echo late > $out")]);
    let start = Instant::now();
    let out = mini(&store, &dir, &["build", ".#slow", "--no-link", "--timeout", "1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("timed out after 1 seconds"), "{}", text(&out.stderr));
    let out = mini(&store, &dir, &["build", ".#quiet", "--no-link", "--max-silent-time", "1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("silent for more than 1 seconds"), "{}", text(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(20), "the builds were not killed");
    let left = survivors("sleep 30");
    assert!(left.is_empty(), "killed builds left processes: {left:?}");
}

#[test]
fn check_catches_a_nondeterministic_build() {
    let s = Scratch::new("build-check");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(
        &dir,
        &[
            ("random", "mkdir $out; echo same > $out/stable; head -c 16 /dev/urandom > $out/noise"),
            ("steady", "echo same > $out"),
        ],
    );
    build(&store, &dir, "random");
    build(&store, &dir, "steady");
    ok(&mini(&store, &dir, &["build", ".#steady", "--no-link", "--check"]));
    let checked = mini(&store, &dir, &["build", ".#random", "--no-link", "--check"]);
    assert!(!checked.status.success());
    let err = text(&checked.stderr);
    assert!(err.contains("not deterministic") && err.contains("noise") && !err.contains("stable"), "{err}");
}

#[test]
fn the_same_flake_builds_the_same_bytes_anywhere() {
    let s = Scratch::new("build-determinism");
    let scripts = [
        ("lib", "mkdir -p $out/lib; echo 'shared code' > $out/lib/code; ln -s code $out/lib/link"),
        ("default", "mkdir -p $out/bin; date > /dev/null; ls -la / > /dev/null; echo \"uses ${0}\" > $out/bin/app"),
    ];
    let mut results = Vec::new();
    for (checkout, store_name) in [("one/checkout", "store-a"), ("elsewhere/two", "deep/store-b")] {
        let dir = s.0.join(checkout);
        flake(&dir, &scripts);
        let store = s.0.join(store_name);
        let out = build(&store, &dir, "default");
        let info = ok(&mini(&store, &dir, &["path-info", "--json", &out]));
        results.push((out, info));
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn concurrent_builds_build_each_derivation_once() {
    let s = Scratch::new("build-concurrent");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    let mut extra = String::new();
    let leaves: Vec<String> = (0..12).map(|i| format!("leaf{i}")).collect();
    for leaf in &leaves {
        extra.push_str(&format!(
            "  {leaf} = derivation {{ name = \"{leaf}\"; system = \"x86_64-linux\"; builder = \"${{pkgs.busybox}}/bin/sh\"; \
             args = [ \"-c\" \"echo RUN {leaf}; ${{pkgs.busybox}}/bin/sleep 0.1; echo {leaf} > $out\" ]; }};\n"
        ));
    }
    let all: String = leaves.iter().map(|l| format!("${{{l}}} ")).collect();
    for root in ["a", "b"] {
        extra.push_str(&format!(
            "  {root} = derivation {{ name = \"{root}\"; system = \"x86_64-linux\"; builder = \"${{pkgs.busybox}}/bin/sh\"; \
             args = [ \"-c\" \"echo RUN {root}; echo {all} > $out\" ]; }};\n"
        ));
    }
    flake_with(&dir, &[], &extra);
    let spawn = |attr: &str| {
        Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(&store)
            .args(["build", &format!(".#{attr}"), "--no-link", "-L", "-j", "2"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn("a"), spawn("b")];
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for mut child in children {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(child.wait().unwrap().success(), "{err}");
        for line in err.lines() {
            if let Some(name) = line.split("> RUN ").nth(1) {
                *runs.entry(name.to_string()).or_default() += 1;
            }
        }
    }
    for name in leaves.iter().map(String::as_str).chain(["a", "b"]) {
        assert_eq!(runs.get(name), Some(&1), "{name} ran {:?} times: {runs:?}", runs.get(name));
    }
}

#[test]
fn a_killed_build_leaves_a_sound_store() {
    let s = Scratch::new("build-crash");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    let mut extra = String::new();
    for i in 0..49 {
        extra.push_str(&format!(
            "  n{i} = derivation {{ name = \"n{i}\"; system = \"x86_64-linux\"; builder = \"${{pkgs.busybox}}/bin/sh\"; \
             args = [ \"-c\" \"${{pkgs.busybox}}/bin/mkdir $out; ${{pkgs.busybox}}/bin/sleep 0.0{i}; echo {i} > $out/n\" ]; }};\n"
        ));
    }
    let all: String = (0..49).map(|i| format!("${{n{i}}} ")).collect();
    extra.push_str(&format!(
        "  default = derivation {{ name = \"all\"; system = \"x86_64-linux\"; builder = \"${{pkgs.busybox}}/bin/sh\"; \
         args = [ \"-c\" \"echo {all} > $out\" ]; }};\n"
    ));
    flake_with(&dir, &[], &extra);
    for delay_ms in [150, 400, 700] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(&store)
            .args(["build", ".", "--no-link", "-j", "2"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let problems = ok(&mini(&store, &dir, &["store", "verify", "--check-contents"]));
        assert!(problems.is_empty(), "after a kill at {delay_ms} ms: {problems}");
    }
    let out = ok(&mini(&store, &dir, &["build", ".", "--no-link", "--print-out-paths"]));
    assert_eq!(read_output(&store, &out).split_whitespace().count(), 49);
    assert!(ok(&mini(&store, &dir, &["store", "verify", "--check-contents"])).is_empty());
}

#[test]
fn run_sees_the_store_at_its_logical_place() {
    let s = Scratch::new("build-run");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    let script = "mkdir -p $out/bin; echo \"#!$(which sh)\" > $out/bin/greeter; \
                  echo 'echo hello \"$@\" from $0' >> $out/bin/greeter; chmod +x $out/bin/greeter";
    flake_with(&dir, &[], &format!("  default = sh \"greeter-1.0\" {};\n", nix_string(script)));
    let out = mini(&store, &dir, &["run", ".", "--", "world"]);
    let stdout = ok(&out);
    assert!(
        stdout.starts_with("hello world from /mini/store/") && stdout.ends_with("-greeter-1.0/bin/greeter"),
        "{stdout}"
    );
}

#[test]
fn builds_and_runs_work_without_privileges() {
    let s = Scratch::new("build-unprivileged");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    let script =
        "mkdir -p $out/bin; echo \"#!$(which sh)\" > $out/bin/who; echo 'id -u' >> $out/bin/who; chmod +x $out/bin/who";
    flake_with(&dir, &[], &format!("  default = sh \"who\" {};\n", nix_string(script)));
    let as_root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    let mut command = if as_root {
        // Run as `nobody`, in a scratch directory that user owns.
        let status = Command::new("chown").args(["-R", "65534:65534"]).arg(&s.0).status().unwrap();
        assert!(status.success());
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_mini")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_mini"))
    };
    let out =
        command.arg("--store").arg(&store).args(["run", "."]).current_dir(&dir).env("HOME", &s.0).output().unwrap();
    let uid = ok(&out);
    assert_eq!(
        uid,
        if as_root {
            "65534".to_string()
        } else {
            text(&Command::new("id").arg("-u").output().unwrap().stdout).trim().to_string()
        }
    );
    assert!(store.join("store").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with("-who")));
}

#[test]
fn the_tour_builds_and_runs_the_hello_example() {
    let s = Scratch::new("build-readme");
    let store = s.0.join("store");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = mini(&store, root, &["run", "./examples/hello"]);
    assert_eq!(ok(&out), "Hello from the mini store!");
    let closure = ok(&mini(&store, root, &["path-info", "-r", "./examples/hello"]));
    let names: Vec<&str> = closure.lines().map(|l| l.split_once('-').map_or(l, |(_, n)| n)).collect();
    assert_eq!(names, ["busybox", "greeting.txt", "hello"], "{closure}");
}

#[test]
fn fixed_output_builds_may_use_the_network() {
    let s = Scratch::new("build-fixed-network");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = std::io::Read::read(&mut stream, &mut request);
        std::io::Write::write_all(&mut stream, b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n").unwrap();
    });
    flake_with(
        &dir,
        &[],
        &format!(
            "  fetched = derivation {{ name = \"fetched\"; system = \"x86_64-linux\"; \
             builder = \"${{pkgs.busybox}}/bin/sh\"; PATH = \"${{pkgs.busybox}}/bin\"; \
             args = [ \"-c\" \"wget -q -O $out http://127.0.0.1:{port}/\" ]; outputHashAlgo = \"sha256\"; \
             outputHash = \"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\"; }};\n"
        ),
    );
    let out = build(&store, &dir, "fetched");
    assert_eq!(read_output(&store, &out), "hello\n");
    server.join().unwrap();
}

#[test]
fn a_relative_store_root_gives_absolute_out_links() {
    let s = Scratch::new("build-relative-store");
    let dir = s.0.join("flake");
    flake(&dir, &[("default", "echo hi > $out")]);
    ok(&mini(Path::new("../rel-store"), &dir, &["build", "."]));
    let link = std::fs::read_link(dir.join("result")).unwrap();
    assert!(link.is_absolute() && link.starts_with(&s.0), "{}", link.display());
    assert_eq!(std::fs::read_to_string(dir.join("result")).unwrap(), "hi\n");
}

#[test]
fn the_prelude_prints_and_is_the_language() {
    let s = Scratch::new("build-prelude");
    let text = ok(&mini(&s.0.join("store"), &s.0, &["prelude"]));
    for name in ["runCommand", "writeText", "busybox", "buildLayeredImage", "buildImage"] {
        assert!(text.contains(name), "{name} is not in the prelude");
    }
    // One file per part, each a function of the package set's context.
    let files: Vec<&str> = text.split("# ==> prelude/").skip(1).collect();
    assert!(files.len() >= 7, "{text}");
    for file in files {
        let (header, source) = file.split_once('\n').unwrap();
        assert!(header.ends_with(".nixlike <=="), "{header}");
        let lambda = ok(&mini(&s.0.join("store"), &s.0, &["eval", "--expr", source]));
        assert_eq!(lambda, "<LAMBDA>", "{header}");
    }
}

#[test]
fn a_build_opens_the_store_once() {
    let s = Scratch::new("build-one-open");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake_with(&dir, &[("dep", "echo dep > $out")], "  top = sh \"top\" \"cat ${dep} > $out\";\n");
    let out = Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(&store)
        .args(["build", ".#top", "--no-link"])
        .env("MINI_COUNT_STORE_OPENS", "1")
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Resolving, evaluating, writing `.drv`s, planning and building all go
    // through one handle.
    assert!(stderr.contains("mini: the store was opened 1 time(s)"), "{stderr}");
}
