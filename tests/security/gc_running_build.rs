//! A GC must not delete the inputs of a running build: `dep` is built (and
//! rooted by nothing), `main` refers to it and runs for a few seconds, and
//! `mini gc` runs in the middle. Before temporary roots covered the inputs
//! of every build, gc deleted `dep` and `main` was registered with a broken
//! closure, which `mini store verify` did not notice. Also: verify reports
//! a reference to a path that is gone, and `verify --repair` puts it back,
//! by building it again or from a binary cache.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{ok, text, users, Attempt};

/// `dep` writes a file; `main` says it started, waits, and refers to `dep`.
const MAIN: &str = "  main = sh \"main\" \"echo started; sleep 3; cat ${dep}/data > $out; echo ${dep} >> $out\";\n";

fn flake(a: &Attempt) {
    a.flake(&[("dep", "mkdir $out; echo dep > $out/data")], MAIN);
}

/// Starts `mini ARGS…` as [`Attempt::mini`] runs it, without waiting.
fn spawn(a: &Attempt, args: &[&str]) -> Child {
    a.command(&a.dir()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start mini")
}

/// Waits until the log of the running build of `main` says it started.
fn wait_for_start(a: &Attempt, mut child: Child) -> Child {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let started = std::fs::read_dir(a.store().join("log")).into_iter().flatten().flatten().any(|entry| {
            entry.file_name().to_string_lossy().ends_with("-main.drv")
                && std::fs::read_to_string(entry.path()).is_ok_and(|log| log.contains("started"))
        });
        if started {
            return child;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            let out = child.wait_with_output().expect("collect the output of mini");
            panic!("the build of main ended before it was seen running:\n{}", text(&out.stderr));
        }
        assert!(Instant::now() < deadline, "the build of main never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn gc_during_a_build_keeps_its_inputs() {
    for who in users() {
        let a = Attempt::new("gc-running", who);
        flake(&a);
        // Built and then rooted by nothing: only the build of main uses it.
        let dep = a.build("dep");
        let link = a.path("result-main");
        let main = spawn(&a, &["build", ".#main", "-o", link.to_str().expect("a UTF-8 path"), "--print-out-paths"]);
        let main = wait_for_start(&a, main);
        let collected = ok(&a.mini(&["gc"]));
        assert!(!collected.contains(&dep), "{who:?}: gc deleted an input of a running build:\n{collected}");
        let out = main.wait_with_output().expect("wait for the build of main");
        assert!(out.status.success(), "{who:?}: main failed:\n{}", text(&out.stderr));
        assert!(a.physical(&dep).join("data").is_file(), "{who:?}: {dep} is gone");
        let main_out = text(&out.stdout).trim().to_string();
        assert_eq!(std::fs::read_to_string(a.physical(&main_out)).unwrap_or_default(), format!("dep\n{dep}\n"));
        ok(&a.mini(&["store", "verify", "--check-contents"]));
    }
}

/// Deletes `path` from the store behind mini's back: record and files.
fn delete(a: &Attempt, path: &str) {
    let base = path.trim_start_matches("/mini/store/");
    let hash = base.split('-').next().expect("a store path has a hash");
    std::fs::remove_file(a.store().join("db").join(format!("{hash}.json"))).expect("delete the record");
    crate::common::remove(&a.physical(path));
    assert!(!a.physical(path).exists());
}

#[test]
fn a_reference_gone_from_the_store_is_reported_and_repaired() {
    for who in users() {
        let a = Attempt::new("gc-repair", who);
        a.flake(&[("dep", "mkdir $out; echo dep > $out/data")], "  main = sh \"main\" \"echo ${dep} > $out\";\n");
        let main = ok(&a.mini(&["build", ".#main", "--print-out-paths"]));
        let dep = ok(&a.mini(&["build", ".#dep", "--no-link", "--print-out-paths"]));
        delete(&a, &dep);

        let broken = format!("{main} refers to {dep}, which is missing");
        for args in [&["store", "verify"][..], &["store", "verify", "--check-contents"]] {
            let out = a.mini(args);
            assert!(!out.status.success(), "{who:?}: {args:?} found nothing wrong");
            assert!(text(&out.stderr).contains(&broken), "{who:?}: {}", text(&out.stderr));
        }
        let json = a.mini(&["store", "verify", "--json"]);
        assert!(text(&json.stdout).contains("\"missing reference\""), "{}", text(&json.stdout));

        let repaired = a.mini(&["store", "verify", "--repair"]);
        let said = text(&repaired.stderr);
        assert!(repaired.status.success(), "{who:?}: {said}");
        assert!(said.contains(&format!("repaired {dep}: built again from")), "{who:?}: {said}");
        assert_eq!(std::fs::read_to_string(a.physical(&dep).join("data")).unwrap_or_default(), "dep\n");
        ok(&a.mini(&["store", "verify", "--check-contents"]));
    }
}

#[test]
fn repair_downloads_from_a_binary_cache_and_says_what_it_could_not_do() {
    for who in users() {
        let a = Attempt::new("gc-repair-cache", who);
        a.flake(&[("dep", "mkdir $out; echo dep > $out/data")], "  main = sh \"main\" \"echo ${dep} > $out\";\n");
        let main = ok(&a.mini(&["build", ".#main", "--print-out-paths"]));
        let dep = ok(&a.mini(&["build", ".#dep", "--no-link", "--print-out-paths"]));
        let keys = a.path("keys");
        ok(&a.mini(&["key", "generate", "repair-test-1", "--out", keys.to_str().expect("a UTF-8 path")]));
        let cache = a.path("cache");
        let url = format!("file://{}", cache.display());
        let secret = keys.join("repair-test-1.secret");
        ok(&a.mini(&["copy", "--to", &url, "--secret-key", secret.to_str().expect("a UTF-8 path"), ".#main"]));
        let public = std::fs::read_to_string(keys.join("repair-test-1.public")).expect("the public key");

        // Nothing in the store can rebuild a path whose derivation is gone too.
        delete(&a, &dep);
        let dep_drv = std::fs::read_dir(a.store().join("store"))
            .expect("list the store")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with("-dep.drv"))
            .expect("dep's derivation");
        let dep_drv = format!("/mini/store/{dep_drv}");
        std::fs::remove_file(a.physical(&dep_drv)).expect("delete dep's derivation");

        let stuck = a.mini(&["store", "verify", "--repair"]);
        let said = text(&stuck.stderr);
        assert!(!stuck.status.success(), "{who:?}: {said}");
        assert!(said.contains(&format!("could not repair {dep}")), "{who:?}: {said}");
        assert!(said.contains(&format!("{main} refers to {dep}, which is missing")), "{who:?}: {said}");

        let fixed =
            a.mini(&["store", "verify", "--repair", "--substituters", &url, "--trusted-public-keys", public.trim()]);
        let said = text(&fixed.stderr);
        assert!(fixed.status.success(), "{who:?}: {said}");
        assert!(said.contains(&format!("repaired {dep}: downloaded again from a binary cache")), "{who:?}: {said}");
        assert_eq!(std::fs::read_to_string(a.physical(&dep).join("data")).unwrap_or_default(), "dep\n");
        ok(&a.mini(&["store", "verify", "--check-contents"]));
    }
}
