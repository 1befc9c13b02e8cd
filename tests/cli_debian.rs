//! Debian packages end to end, with real apt and real packages: the
//! c-make example built by Debian's gcc and make in the sandbox (the same
//! bytes in a fresh store, `--check` passing), the python-service image
//! run under runc and docker with its dpkg database readable by
//! `dpkg-query`, a `.deb` whose bytes are not the locked ones refused with
//! both hashes, a package missing from the lock refused with the exact
//! `mini debian lock` fix, and a package's postinst not run.
//!
//! The locked `.deb` files come from the cache `scripts/install-prerequisites`
//! fills (tests/common `seed_debs`), so only the tampered-hash test
//! downloads anything: one small package, through the host's apt.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
use common::clients::{self, have};
use common::docker::Dockerd;
use common::{failed, free_port, http_get, mini_at as mini, ok, seed_debs, text, while_under_runc, Scratch};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the host has apt and dpkg (Debian's): without them these tests
/// are skipped, except under CI, where they must run.
fn have_apt() -> bool {
    let found = ["apt-get", "dpkg-deb", "dpkg-query"].iter().all(|tool| clients::which(tool).is_some());
    assert!(found || !clients::ci(), "apt-get, dpkg-deb and dpkg-query are needed (a Debian host)");
    found
}

/// A copy of the example `name` in `dir` (so two builds read it from
/// different places).
fn copy_example(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(name);
    let status = Command::new("cp").arg("-r").arg(repo().join("examples").join(name)).arg(&to).status().unwrap();
    assert!(status.success());
    to
}

/// Builds `installable` (run in `dir`) into `store`; the output's path.
fn build(store: &Path, dir: &Path, installable: &str) -> String {
    ok(&mini(store, dir, &["build", installable, "--no-link", "--print-out-paths"])).trim().to_string()
}

fn physical(store: &Path, path: &str) -> PathBuf {
    store.join("store").join(path.trim_start_matches("/mini/store/"))
}

/// `mini path-info --json` of `path`: its NAR hash and references, which
/// say whether two builds gave the same bytes.
fn path_info(store: &Path, path: &str) -> serde_json::Value {
    let out = ok(&mini(store, repo(), &["path-info", "--json", path]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn c_make_builds_with_debians_gcc_and_make_the_same_in_a_fresh_store() {
    if !have_apt() {
        return;
    }
    let s = Scratch::new("debian-c-make");
    let (store_a, store_b) = (s.0.join("store-a"), s.0.join("store-b"));
    let (dir_a, dir_b) = (s.0.join("a"), s.0.join("elsewhere/b"));
    std::fs::create_dir_all(&dir_b).unwrap();
    std::fs::create_dir_all(&dir_a).unwrap();
    let lock = repo().join("examples/c-make/debian.lock");
    if !seed_debs(&store_a, &lock) || !seed_debs(&store_b, &lock) {
        return;
    }
    let a = copy_example("c-make", &dir_a);
    let first = build(&store_a, &a, ".");
    let program = physical(&store_a, &first).join("bin/hello");
    let run = Command::new(&program).arg("Debian").output().expect("run the program");
    let said = text(&run.stdout);
    assert!(said.starts_with("Hello, Debian! (built with Debian's gcc 12."), "{said}{}", text(&run.stderr));

    // The root: usr-merged, with the dpkg database and the alternatives' links.
    let root = build(&store_a, &a, ".#root");
    let root_dir = physical(&store_a, &root);
    assert_eq!(std::fs::read_link(root_dir.join("bin")).unwrap(), Path::new("usr/bin"));
    assert!(std::fs::symlink_metadata(root_dir.join("usr/bin/cc")).is_ok(), "cc -> gcc");
    let listed = Command::new("dpkg-query")
        .arg(format!("--admindir={}", root_dir.join("var/lib/dpkg").display()))
        .args(["-W", "-f", "${Package} ${Version}\n"])
        .output()
        .unwrap();
    let listed = text(&listed.stdout);
    assert!(listed.lines().any(|l| l.starts_with("gcc-12 12.2.0")), "{listed}");
    assert_eq!(listed.lines().count(), 63, "{listed}");

    // A fresh store, the example read from elsewhere: the same paths and bytes.
    let b = copy_example("c-make", &dir_b);
    assert_eq!(build(&store_b, &b, "."), first);
    assert_eq!(build(&store_b, &b, ".#root"), root);
    for path in [&first, &root] {
        let (info_a, info_b) = (path_info(&store_a, path), path_info(&store_b, path));
        assert_eq!(info_a, info_b, "{path} differs between the stores");
    }
    // And building again gives the same bytes.
    ok(&mini(&store_a, &a, &["build", ".", "--no-link", "--check"]));
}

#[test]
fn the_python_service_image_answers_under_runc_and_docker_and_dpkg_sees_python3() {
    if !have_apt() || !have(&["skopeo", "umoci", "runc"]) {
        return;
    }
    let s = Scratch::new("debian-python");
    let store = s.0.join("store");
    if !seed_debs(&store, &repo().join("examples/python-service/debian.lock")) {
        return;
    }
    let archive = physical(&store, &build(&store, repo(), "./examples/python-service#docker"));
    let (layout, config) = common::oci_layout(&s.0, &archive);
    assert_eq!(config["config"]["Cmd"][0], "/usr/bin/python3");

    // dpkg's view of the unpacked image.
    let bundle = clients::unpack_bundle(&s.0, &layout, "latest", "dpkg", &[]);
    let admindir = bundle.join("rootfs/var/lib/dpkg");
    let listed =
        Command::new("dpkg-query").arg(format!("--admindir={}", admindir.display())).arg("-W").output().unwrap();
    let listed = text(&listed.stdout);
    for package in ["python3-minimal", "python3.11-minimal", "libc6"] {
        // Multi-Arch: same packages are listed as NAME:ARCH.
        let listed_as = |l: &str| l.split(['\t', ':']).next() == Some(package);
        assert!(listed.lines().any(listed_as), "{package} not listed:\n{listed}");
    }

    let port = free_port();
    let (response, _) =
        while_under_runc(&s.0, &layout, "python", port, || http_get(port, "/", Duration::from_secs(20)));
    let response = response.expect("the container never answered on its port");
    assert!(response.contains(" 200 ") && response.contains("hello from Debian's python3"), "{response}");

    let Some(docker) = Dockerd::start() else { return };
    let image = docker.load(&archive);
    let port = free_port();
    let id = docker.run_detached(&["-e", &format!("PORT={port}")], &image, &[]);
    let response = http_get(port, "/", Duration::from_secs(20));
    docker.docker(&["rm", "-f", &id]);
    let response = response.expect("the docker container never answered");
    assert!(response.contains("hello from Debian's python3"), "{response}");
}

/// A flake in `dir` whose `root` is built from `lock` (a file next to it).
fn root_flake(dir: &Path, lock: &str, packages: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("debian.lock"), lock).unwrap();
    let packages: String = packages.iter().map(|p| format!("\"{p}\" ")).collect();
    std::fs::write(
        dir.join("flake.nixlike"),
        format!("{{ pkgs, ... }}: {{\n  root = pkgs.debian.root {{ lock = ./debian.lock; packages = [ {packages}]; }};\n}}\n"),
    )
    .unwrap();
}

#[test]
fn a_deb_whose_bytes_are_not_the_locked_ones_fails_with_both_hashes_and_nothing_is_registered() {
    if !have_apt() {
        return;
    }
    let s = Scratch::new("debian-tampered");
    let store = s.0.join("store");
    // A real lock of a small package; its .deb fetched with another hash.
    let lock = ok(&mini(&store, &s.0, &["debian", "lock", "hostname"]));
    let parsed: serde_json::Value = serde_json::from_str(&lock).unwrap();
    let package = parsed["packages"].as_array().unwrap().iter().find(|p| p["name"] == "hostname").unwrap().clone();
    let field = |f: &str| package[f].as_str().unwrap().to_string();
    let wrong = "0".repeat(64);
    let dir = s.0.join("flake");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("flake.nixlike"),
        format!(
            "{{ pkgs, ... }}: {{\n  deb = pkgs.debian.fetchDeb {{ name = \"hostname\"; version = \"{}\"; arch = \"{}\"; \
             sha256 = \"{wrong}\"; }};\n}}\n",
            field("version"),
            field("architecture")
        ),
    )
    .unwrap();
    let err = failed(&mini(&store, &dir, &["build", ".#deb", "--no-link"]));
    // Both hashes, as the error gives them (SRI).
    let sri = |hex: &str| mini_store::encoding::sri("sha256", &mini_store::encoding::hex_decode(hex).unwrap());
    assert!(err.contains(&sri(&wrong)) && err.contains(&sri(&field("sha256"))), "both hashes are named:\n{err}");
    let store_names: Vec<String> = std::fs::read_dir(store.join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb") || n.ends_with("-debian-root"))
        .collect();
    assert!(store_names.is_empty(), "nothing is registered: {store_names:?}");
}

#[test]
fn a_package_missing_from_the_lock_is_refused_with_the_exact_fix() {
    let s = Scratch::new("debian-missing");
    let lock = std::fs::read_to_string(repo().join("examples/python-service/debian.lock")).unwrap();
    let dir = s.0.join("flake");
    root_flake(&dir, &lock, &["python3-minimal", "curl"]);
    let err = failed(&mini(&s.0.join("store"), &dir, &["build", ".#root", "--no-link"]));
    assert!(
        err.contains(
            "package 'curl' is not in debian.lock; lock it with: \
             mini debian lock --suite bookworm --arch amd64 curl python3-minimal > debian.lock"
        ),
        "{err}"
    );
}

/// Builds a `.deb` of package `name` with `files` (path, contents) and
/// maintainer scripts `scripts` (name, body) with dpkg-deb; its path.
fn make_deb(dir: &Path, name: &str, files: &[(&str, &str)], scripts: &[(&str, &str)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tree = dir.join(format!("{name}-tree"));
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Nobody <nobody@example.invalid>\n\
             Description: a test package\n"
        ),
    )
    .unwrap();
    for (script, body) in scripts {
        let path = tree.join("DEBIAN").join(script);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (path, contents) in files {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let deb = dir.join(format!("{name}_1.0-1_all.deb"));
    let out =
        Command::new("dpkg-deb").args(["--root-owner-group", "-Zxz", "--build"]).arg(&tree).arg(&deb).output().unwrap();
    assert!(out.status.success(), "dpkg-deb: {}", text(&out.stderr));
    deb
}

#[test]
fn maintainer_scripts_are_not_run_and_the_package_is_still_unpacked() {
    if !have_apt() {
        return;
    }
    let s = Scratch::new("debian-postinst");
    let store = s.0.join("store");
    let witness = s.0.join("postinst-ran");
    let deb = make_deb(
        &s.0,
        "with-postinst",
        &[("usr/share/with-postinst/data", "unpacked\n")],
        &[("postinst", &format!("#!/bin/sh\ntouch {} /postinst-ran\n", witness.display()))],
    );
    let added = ok(&mini(&store, &s.0, &["store", "add-fixed", &deb.display().to_string()]));
    assert!(added.trim().ends_with("with-postinst_1.0-1_all.deb"), "{added}");
    let sha256 = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(std::fs::read(&deb).unwrap()))
    };
    let lock = serde_json::json!({
        "version": 1, "suite": "bookworm", "architecture": "amd64", "requested": ["with-postinst"],
        "packages": [{
            "name": "with-postinst", "version": "1.0-1", "architecture": "all",
            "filename": "pool/main/w/with-postinst/with-postinst_1.0-1_all.deb",
            "size": std::fs::metadata(&deb).unwrap().len(), "sha256": sha256, "depends": []
        }]
    });
    let dir = s.0.join("flake");
    root_flake(&dir, &serde_json::to_string_pretty(&lock).unwrap(), &["with-postinst"]);
    let root = physical(&store, &build(&store, &dir, ".#root"));
    assert_eq!(std::fs::read_to_string(root.join("usr/share/with-postinst/data")).unwrap(), "unpacked\n");
    assert!(!witness.exists(), "the postinst ran on the host");
    assert!(std::fs::symlink_metadata(root.join("postinst-ran")).is_err(), "the postinst ran in the root");
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains("Package: with-postinst\nStatus: install ok installed\n"), "{status}");
}

#[test]
fn changing_the_lock_changes_the_derivation_built_in_its_root() {
    let s = Scratch::new("debian-lock-hash");
    let store = s.0.join("store");
    let dir = copy_example("c-make", &s.0);
    let drv_path = || ok(&mini(&store, &dir, &["eval", ".#hello.drvPath"]));
    let before = drv_path();
    let lock_file = dir.join("debian.lock");
    let lock = std::fs::read_to_string(&lock_file).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&lock).unwrap();
    let make = parsed["packages"].as_array().unwrap().iter().find(|p| p["name"] == "make").unwrap();
    std::fs::write(&lock_file, lock.replace(make["sha256"].as_str().unwrap(), &"1".repeat(64))).unwrap();
    let after = drv_path();
    assert_ne!(before, after, "the root is an input of the build");
}
