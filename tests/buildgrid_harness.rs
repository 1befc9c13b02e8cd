//! The BuildGrid harness of the remote-build tests (tests/common/buildgrid.rs)
//! tested on its own: a private BuildGrid starts and answers, survives a
//! server restart on the same port, and leaves no process behind when
//! dropped; a `Worker` dies when killed.
//!
//! BuildGrid and PostgreSQL are installed by `scripts/install-prerequisites`:
//! without them the test skips, with a message, except under `CI=true`,
//! where it fails.

use std::path::Path;

mod common;
use common::buildgrid::{self, BuildGrid, Worker};
use common::Scratch;

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rfind(')').is_some_and(|end| !stat[end + 1..].trim_start().starts_with('Z')))
}

/// The live processes whose command line mentions `dir`.
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let mentions = cmdline.windows(needle.len()).any(|w| w == needle);
            (mentions && alive(pid)).then(|| format!("{pid}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect()
}

#[test]
fn buildgrid_starts_restarts_and_stops_cleanly() {
    if buildgrid::installed().is_none() {
        return;
    }
    let s = Scratch::new("buildgrid-harness");
    let mut grid = BuildGrid::start(&s.0);
    assert!(grid.url().starts_with("grpc://127.0.0.1:"), "{}", grid.url());
    let capabilities = grid.capabilities();
    assert!(capabilities.contains("SHA256"), "{capabilities}");
    assert!(grid.cas_dir().is_dir());

    grid.restart_server();
    let capabilities = grid.capabilities();
    assert!(capabilities.contains("SHA256"), "{capabilities}");
    assert!(grid.log().contains("Starting BuildGrid server"), "{}", grid.log());

    let mut worker = Worker::spawn(&s.0.join("worker-store"), &grid.url(), 1, &s.0.join("worker.log"));
    let worker_pid = worker.pid() as libc::pid_t;
    worker.kill();
    assert!(!alive(worker_pid), "the killed worker {worker_pid} still runs");

    let pids = grid.pids();
    assert!(pids.len() >= 2, "expected postgres and bgd processes, found {pids:?}");
    drop(grid);
    let left: Vec<_> = pids.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(left.is_empty(), "still running after drop: {left:?}");
    let left = processes_mentioning(&s.0);
    assert!(left.is_empty(), "still running after drop:\n{}", left.join("\n"));
}
