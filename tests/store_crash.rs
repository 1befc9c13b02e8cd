//! The store survives `kill -9` at any moment and concurrent writers: after
//! every kill, `mini store verify --check-contents` is clean and the next
//! add completes; four processes adding overlapping paths copy each path
//! exactly once and leave no corruption.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::Scratch;

/// A source tree big enough that adding it takes a few milliseconds.
fn source_tree(dir: &Path, seed: usize) -> PathBuf {
    let src = dir.join(format!("src{seed}"));
    std::fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..150 {
        std::fs::write(src.join("many").join(format!("f{i}")), format!("{seed}:{i}\n").repeat(20)).unwrap();
    }
    std::fs::write(src.join("big"), vec![seed as u8; 3 << 20]).unwrap();
    src
}

fn mini(store: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mini"));
    cmd.arg("--store").arg(store);
    cmd
}

fn verify_clean(store: &Path) {
    let out = mini(store).args(["store", "verify", "--check-contents"]).output().expect("run verify");
    assert!(out.status.success(), "verify after a kill: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn killing_at_random_moments_never_corrupts_the_store() {
    let s = Scratch::new("kill");
    let store = s.0.join("store");
    let sources: Vec<PathBuf> = (0..4).map(|i| source_tree(&s.0, i)).collect();
    // Time complete adds (the first also flushes the fresh sources, so it is
    // not counted), so the kills can be spread over all of one.
    let mut durations: Vec<u64> = (0..4)
        .map(|i| {
            let started = std::time::Instant::now();
            let name = format!("calibration{i}");
            let out = mini(&s.0.join("calibration"))
                .args(["store", "add", sources[0].to_str().unwrap(), "--name", &name])
                .output();
            assert!(out.expect("run mini").status.success());
            started.elapsed().as_micros() as u64
        })
        .skip(1)
        .collect();
    durations.sort();
    // The span the kill delays are drawn from adapts: a kill that finds the
    // add already finished shrinks it, one that interrupts widens it. A busy
    // machine makes single timings unreliable; this keeps the kills landing
    // inside adds, whatever the load.
    let mut span_us = (durations[1] * 13 / 10).max(20_000);
    // Deterministic "random" delays, spread over the time one add takes.
    let mut state: u64 = 0x5eed_1234_abcd_ef01;
    let (mut interrupted, mut rounds) = (0, 0);
    while (rounds < 40 || interrupted < 10) && rounds < 300 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Delays cover every phase, from hashing to registration and after.
        let delay = Duration::from_micros(state % span_us);
        let src = &sources[rounds % sources.len()];
        let mut child = mini(&store)
            .args(["store", "add", src.to_str().unwrap(), "--name", &format!("round{}", rounds % 7)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mini");
        std::thread::sleep(delay);
        if matches!(child.try_wait(), Ok(None)) {
            interrupted += 1;
            span_us = span_us * 21 / 20;
        } else {
            span_us = (span_us * 4 / 5).max(1_000);
        }
        let _ = child.kill();
        let _ = child.wait();
        verify_clean(&store);
        rounds += 1;
    }
    eprintln!("{interrupted} of {rounds} kills landed mid-add");
    assert!(interrupted >= 10, "only {interrupted} of {rounds} kills landed mid-add; the test needs slower adds");
    // And the store still works: every source can be added to completion.
    for src in &sources {
        let out = mini(&store).args(["store", "add", src.to_str().unwrap()]).output().expect("run mini");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    verify_clean(&store);
}

#[test]
fn four_processes_copy_each_path_once() {
    let s = Scratch::new("concurrent");
    let store = s.0.join("store");
    let sources: Vec<PathBuf> = (0..3).map(|i| source_tree(&s.0, 10 + i)).collect();
    let children: Vec<_> = (0..4)
        .map(|p| {
            // Each process adds all sources, starting at a different one.
            let order: Vec<&PathBuf> = (0..sources.len()).map(|i| &sources[(i + p) % sources.len()]).collect();
            let script: Vec<String> = order
                .iter()
                .map(|src| {
                    format!("{} --store {} store add {}", env!("CARGO_BIN_EXE_mini"), store.display(), src.display())
                })
                .collect();
            Command::new("sh").arg("-c").arg(script.join(" && ")).output()
        })
        .map(|o| std::thread::spawn(move || o))
        .collect();
    let mut copies = std::collections::BTreeMap::<String, usize>::new();
    let mut printed = std::collections::BTreeSet::new();
    for child in children {
        let out = child.join().expect("thread").expect("run sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        printed.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string));
        for line in String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("copying")) {
            *copies.entry(line.to_string()).or_default() += 1;
        }
    }
    assert_eq!(printed.len(), sources.len(), "{printed:?}");
    assert_eq!(copies.len(), sources.len(), "every path copied by someone: {copies:?}");
    assert!(copies.values().all(|&n| n == 1), "no path copied twice: {copies:?}");
    verify_clean(&store);
}
