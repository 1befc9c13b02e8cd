//! mini's images in real Docker, the way a user meets them: `mini build
//! .#docker`, `docker load < result`, `docker run`. Each test starts a
//! private dockerd (tests/common/docker.rs), which needs root and Debian's
//! docker.io: without them the tests skip, except under `CI=true`, where
//! they fail.

use std::path::{Path, PathBuf};

mod common;
use common::clients::json;
use common::docker::{leftovers, Dockerd};
use common::{mini_at as mini, ok, text, Scratch};

/// What examples/hello's program prints.
const GREETING: &str = "Hello from the mini store!\n";

/// Copies examples/hello into the scratch dir and runs `mini build .#docker`
/// there with a private store; returns the `result` link.
fn build_hello(s: &Scratch) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let dir = s.0.join("hello");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(example.join("flake.nixlike"), dir.join("flake.nixlike")).unwrap();
    ok(&mini(&s.0.join("store"), &dir, &["build", ".#docker"]));
    dir.join("result")
}

#[test]
fn docker_loads_and_runs_the_hello_image() {
    // The archive loads under its tag, runs its command, and Docker sees
    // exactly the layers mini reports; dropping the daemon stops a
    // container still running and leaves nothing behind.
    let Some(docker) = Dockerd::start() else { return };
    let s = Scratch::new("docker-hello");
    let result = build_hello(&s);

    let image = docker.load(&result);
    assert_eq!(image, "hello:latest");
    let out = docker.run(&[], &image, &[]);
    assert!(out.status.success(), "docker run failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), GREETING);

    let reported =
        json(&ok(&mini(&s.0.join("store"), &s.0, &["image", "inspect", "--json", &result.to_string_lossy()])));
    let reported: Vec<&str> = reported["images"][0]["layers"]
        .as_array()
        .expect("mini reports layers")
        .iter()
        .map(|l| l["diffId"].as_str().expect("a diffId"))
        .collect();
    let inspected = json(&docker.docker_ok(&["image", "inspect", &image]));
    let layers: Vec<&str> = inspected[0]["RootFS"]["Layers"]
        .as_array()
        .expect("docker lists the layers")
        .iter()
        .map(|l| l.as_str().expect("a layer digest"))
        .collect();
    // busybox, the greeting, hello, and the customisation layer.
    assert_eq!(reported.len(), 4, "{reported:?}");
    assert_eq!(layers, reported);

    let id = docker.run_detached(&[], &image, &["sleep", "300"]);
    let running = docker.docker_ok(&["ps", "--quiet", "--no-trunc"]);
    assert_eq!(running.trim(), id);
    let dir = docker.dir().to_path_buf();
    drop(docker);
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

#[test]
fn a_panicking_test_leaves_no_daemon_behind() {
    // A test that panics with a container running still stops the daemon
    // and its container, unmounts and removes everything.
    const FAILURE: &str = "the test fails with its container running";
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let Some(docker) = Dockerd::start() else { return };
        tx.send(docker.dir().to_path_buf()).unwrap();
        let s = Scratch::new("docker-panic");
        let image = docker.load(&build_hello(&s));
        docker.run_detached(&[], &image, &["sleep", "300"]);
        panic!("{FAILURE}");
    });
    let dir = match (test.join(), rx.recv()) {
        (Err(payload), Ok(dir)) if payload.downcast_ref::<String>().is_some_and(|m| m == FAILURE) => dir,
        (Err(other), _) => std::panic::resume_unwind(other),
        (Ok(()), Err(_)) => return, // skipped: no daemon here
        (Ok(()), Ok(_)) => unreachable!("the test panics once its daemon runs"),
    };
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}
