//! Streamed images (`dockerTools.streamLayeredImage`, issue 16) end to end,
//! handed to the real clients the way a user does: `mini image stream |
//! docker load`, `mini image copy` into the Docker daemon, an OCI layout
//! (then umoci and runc) and a registry (then skopeo), each giving the image
//! `buildLayeredImage` writes, with only missing layers made; bad sources
//! and tampered descriptions are refused without leaving a whole-looking
//! file; and the bytes do not depend on the store, the directory or the day.
//!
//! The Docker tests start a private dockerd (tests/common/docker.rs), the
//! registry test Debian's docker-registry, the OCI test skopeo, umoci and
//! runc: without them a test skips, except under `CI=true`, where it fails.
//! podman is a prerequisite too; outside CI, a machine without it skips its part.
//!
//! `tests/fixtures/recorded-image.tar` is a docker-archive mini wrote from
//! [`RECORDED`]; [`the_recorded_archive_is_rebuilt_byte_for_byte`] rebuilds
//! it, so any change to the bytes mini writes shows up there. To re-record
//! it after a deliberate change of format:
//!
//! ```text
//! MINI_RECORD_FIXTURES=1 cargo test --release --test cli_image_stream the_recorded_archive_is_rebuilt
//! ```
//!
//! and commit the new file with the change that explains it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use sha2::Digest as _;

mod common;
use common::clients::{ci, have, image_ref, json, run, skopeo_inspect, unpack_bundle, which};
use common::docker::Dockerd;
use common::registry::{self, Registry};
use common::{failed, free_port, have_busybox, http_get, oci_layout, succeeded, text, while_under_runc, Scratch};

// ---------------------------------------------------------------------------
// Flakes

/// A busybox httpd serving `/srv/index.html` on `$PORT`, with a package of
/// its own (`notes`) so the image has three layers: busybox and notes from
/// the store, and the customisation layer. `changed` differs from `stream`
/// in its page alone, so only its top layer differs; `renoted` in its
/// notes, a store path, so their layer and the one above differ.
const WEB: &str = r#"{ pkgs, ... }:
let
  inherit (pkgs) busybox dockerTools;
  web = notes: page: {
    name = "web";
    tag = "v1";
    contents = [
      busybox
      (pkgs.writeTextFile { name = "notes"; destination = "/share/notes.txt"; text = notes; })
    ];
    config.Cmd = [ "/bin/sh" "-c" "exec /bin/httpd -f -p $PORT -h /srv" ];
    extraFiles."srv/index.html" = page;
  };
in
{
  archive = dockerTools.buildLayeredImage (web "notes one\n" "page one\n");
  stream = dockerTools.streamLayeredImage (web "notes one\n" "page one\n");
  changed = dockerTools.streamLayeredImage (web "notes one\n" "page two\n");
  renoted = dockerTools.streamLayeredImage (web "notes two\n" "page one\n");
}
"#;

const PAGE_ONE: &str = "page one\n";
const PAGE_TWO: &str = "page two\n";

/// The recipe of the recorded archive: no busybox (whose store path, and so
/// everything built with it, depends on the host's busybox), only a source
/// directory ([`GREETING`] at `etc/greeting`), an extra file and a user,
/// so the bytes depend on mini alone.
const RECORDED: &str = r#"{ pkgs, ... }:
let
  args = {
    name = "recorded";
    tag = "v1";
    contents = [ ./root ];
    config = { Cmd = [ "/etc/greeting" ]; Env = [ "GREETING=/etc/greeting" ]; };
    extraFiles."etc/motd" = "recorded by mini\n";
    users = [ { name = "app"; uid = 1000; } ];
  };
in
{
  image = pkgs.dockerTools.buildLayeredImage args;
  stream = pkgs.dockerTools.streamLayeredImage args;
}
"#;

const GREETING: &str = "hello from a recorded image\n";

/// The recorded docker-archive, relative to the repository.
const FIXTURE: &str = "tests/fixtures/recorded-image.tar";

/// A store and a flake in a scratch directory.
struct Project {
    scratch: Scratch,
    store: PathBuf,
    dir: PathBuf,
}

impl Project {
    /// A project whose flake is `source`, in a fresh scratch dir.
    fn new(name: &str, source: &str) -> Project {
        let scratch = Scratch::new(name);
        let (store, dir) = (scratch.0.join("store"), scratch.0.join("flake"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("flake.nixlike"), source).unwrap();
        Project { scratch, store, dir }
    }

    /// The project of the recorded archive.
    fn recorded(name: &str) -> Project {
        let p = Project::new(name, RECORDED);
        p.scratch.write("flake/root/etc/greeting", GREETING);
        p
    }

    /// `mini --store STORE ARGS` in the flake's directory, with no Docker
    /// daemon or registry credentials from the environment but `env`.
    fn mini(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        command.output().expect("run mini")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mini"));
        command.arg("--store").arg(&self.store).args(args).current_dir(&self.dir);
        for var in ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "MINI_REGISTRY_USER", "MINI_REGISTRY_PASSWORD"] {
            command.env_remove(var);
        }
        command.env("HOME", &self.scratch.0);
        command
    }

    /// Builds `.#attr`; where its output is on disk.
    fn build(&self, attr: &str) -> PathBuf {
        let out = succeeded(&self.mini(&["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"], &[]));
        let name = out.trim().strip_prefix("/mini/store/").unwrap_or_else(|| panic!("not a store path: {out}"));
        self.store.join("store").join(name)
    }

    /// `mini image copy [FLAGS] IMAGE DESTINATION` with `env`.
    fn copy(&self, flags: &[&str], image: &Path, destination: &str, env: &[(&str, &str)]) -> Output {
        let image = image.to_str().expect("a UTF-8 path");
        self.mini(&[&["image", "copy"], flags, &[image, destination]].concat(), env)
    }

    /// A path in the scratch dir for something to create.
    fn path(&self, name: &str) -> PathBuf {
        self.scratch.0.join(name)
    }
}

/// The stderr of a mini run that must have succeeded.
fn succeeded_stderr(out: &Output) -> String {
    succeeded(out);
    text(&out.stderr)
}

/// `(written, already there)` from a copy's "N layers written, M already
/// there" line.
fn counts(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.contains(" layers written, "))
        .unwrap_or_else(|| panic!("no 'layers written' line:\n{stderr}"));
    let number = |s: &str| s.trim().parse::<usize>().unwrap_or_else(|_| panic!("not a count in: {line}"));
    let (written, rest) = line.split_once(" layers written, ").unwrap();
    let there = rest.split(" already there").next().unwrap();
    (number(written), number(there))
}

// ---------------------------------------------------------------------------
// Reading what mini and the clients wrote

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn read_json(path: &Path) -> Value {
    json(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

/// `sha256:<hex>` of a stream result's config.json: the image ID.
fn config_digest(stream: &Path) -> String {
    format!("sha256:{}", sha256_hex(&std::fs::read(stream.join("config.json")).unwrap()))
}

/// The diffIds a stream result's image.json lists, bottom first.
fn diff_ids(stream: &Path) -> Vec<String> {
    let description = read_json(&stream.join("image.json"));
    let layers = description["layers"].as_array().expect("image.json lists layers");
    layers.iter().map(|l| l["diffId"].as_str().expect("a diffId").to_string()).collect()
}

fn strings(value: &Value) -> Vec<String> {
    let list = value.as_array().unwrap_or_else(|| panic!("not a list: {value}"));
    list.iter().map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_string()).collect()
}

/// The body of a successful HTTP response.
fn body(response: Option<String>) -> String {
    let response = response.expect("the container never answered on its port");
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// The contents of `path` in an unpacked root filesystem, following links
/// (absolute ones, into /mini/store, resolved inside `rootfs`).
fn read_in(rootfs: &Path, path: &str) -> String {
    let mut at = rootfs.join(path.trim_start_matches('/'));
    for _ in 0..8 {
        match std::fs::read_link(&at) {
            Ok(target) if target.is_absolute() => at = rootfs.join(target.strip_prefix("/").unwrap()),
            Ok(target) => at = at.parent().unwrap().join(target),
            Err(_) => break,
        }
    }
    std::fs::read_to_string(&at).unwrap_or_else(|e| panic!("read {path} in {}: {e}", rootfs.display()))
}

/// The names of the files directly in `dir`.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// One member of a tar archive: its name, its 512-byte header, its bytes.
struct Member {
    name: String,
    header: Vec<u8>,
    data: Vec<u8>,
}

fn members(archive: &[u8]) -> Vec<Member> {
    let mut reader = tar::Archive::new(archive);
    let mut members = Vec::new();
    for entry in reader.entries().expect("a tar archive") {
        let mut entry = entry.expect("a tar entry");
        let name = entry.path().expect("a member name").to_string_lossy().into_owned();
        let header = entry.header().as_bytes().to_vec();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read a member");
        members.push(Member { name, header, data });
    }
    members
}

/// Where a rebuilt archive differs from the recorded one, member by
/// member; inside layer tars, entry by entry.
fn differences(recorded: &[u8], rebuilt: &[u8]) -> String {
    let (old, new) = (members(recorded), members(rebuilt));
    let mut said = Vec::new();
    if old.len() != new.len() {
        let names = |m: &[Member]| m.iter().map(|m| m.name.clone()).collect::<Vec<_>>().join(", ");
        said.push(format!("recorded members: {}\nrebuilt members: {}", names(&old), names(&new)));
    }
    for (i, (a, b)) in old.iter().zip(&new).enumerate() {
        if a.name != b.name {
            said.push(format!("member {}: recorded as {}, rebuilt as {}", i + 1, a.name, b.name));
        }
        if a.data != b.data {
            let how = if a.name.ends_with(".tar") {
                differences(&a.data, &b.data).replace('\n', "\n    ")
            } else if a.name.ends_with(".json") {
                format!("recorded:\n    {}\n  rebuilt:\n    {}", text(&a.data), text(&b.data))
            } else if a.data.len().max(b.data.len()) <= 1024 {
                format!("recorded: {:?}\n  rebuilt:  {:?}", text(&a.data), text(&b.data))
            } else {
                format!(
                    "{} bytes, sha256 {} recorded; {} bytes, sha256 {} rebuilt",
                    a.data.len(),
                    sha256_hex(&a.data),
                    b.data.len(),
                    sha256_hex(&b.data)
                )
            };
            said.push(format!("{} differs in its contents:\n  {how}", a.name));
        } else if a.header != b.header {
            said.push(format!("{}: the same contents under another tar header (mode, owner, mtime…)", a.name));
        }
    }
    said.join("\n")
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn docker_gets_one_image_id_from_the_archive_the_stream_and_the_copy() {
    // `docker load < result` of buildLayeredImage, `mini image stream | docker
    // load` and `mini image copy … docker-daemon:` of streamLayeredImage with
    // the same arguments give the image whose ID is the digest of the stream
    // result's config, and the copy runs, serving its page.
    let p = Project::new("stream-docker", WEB);
    if !have_busybox(&p.scratch) {
        return;
    }
    let Some(docker) = Dockerd::start() else { return };
    let archive = p.build("archive");
    let stream = p.build("stream");
    let expected = config_digest(&stream);
    let id = |reference: &str| docker.docker_ok(&["image", "inspect", "-f", "{{.Id}}", reference]).trim().to_string();

    assert_eq!(docker.load(&archive), "web:v1");
    assert_eq!(id("web:v1"), expected, "docker load < result");
    docker.docker_ok(&["rmi", "web:v1"]);

    let mut streaming = p.command(&["image", "stream", stream.to_str().unwrap()]);
    let mut streaming = streaming.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run mini");
    let loaded = docker.load_from(streaming.stdout.take().expect("mini's stdout"));
    let streamed = streaming.wait_with_output().expect("wait for mini");
    assert!(streamed.status.success(), "mini image stream failed:\n{}", text(&streamed.stderr));
    assert_eq!(loaded, "web:v1");
    assert_eq!(id("web:v1"), expected, "mini image stream | docker load");
    docker.docker_ok(&["rmi", "web:v1"]);

    let copied = succeeded_stderr(&p.copy(&[], &stream, "docker-daemon:copied:v2", &[("DOCKER_HOST", docker.host())]));
    assert_eq!(counts(&copied), (3, 0), "{copied}");
    assert_eq!(id("copied:v2"), expected, "mini image copy … docker-daemon:");
    let layers = json(&docker.docker_ok(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", "copied:v2"]));
    assert_eq!(strings(&layers), diff_ids(&stream));

    let port = free_port();
    docker.run_detached(&["-e", &format!("PORT={port}")], "copied:v2", &[]);
    assert_eq!(body(http_get(port, "/", Duration::from_secs(30))), PAGE_ONE);
}

#[test]
fn copies_into_the_daemon_send_only_the_layers_it_lacks() {
    // The same image copied twice sends nothing the second time; an image
    // differing in its top layer alone sends that layer, one differing in a
    // store path sends that path's layer and those above it; all run.
    let p = Project::new("stream-daemon-again", WEB);
    if !have_busybox(&p.scratch) {
        return;
    }
    let Some(docker) = Dockerd::start() else { return };
    let daemon = [("DOCKER_HOST", docker.host())];
    let stream = p.build("stream");
    let changed = p.build("changed");
    let (ours, theirs) = (diff_ids(&stream), diff_ids(&changed));
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert_eq!(ours[..2], theirs[..2], "the changed page is in the top layer alone");
    assert_ne!(ours[2], theirs[2]);

    let first = succeeded_stderr(&p.copy(&[], &stream, "docker-daemon:web:v1", &daemon));
    assert_eq!(counts(&first), (3, 0), "{first}");
    let again = succeeded_stderr(&p.copy(&[], &stream, "docker-daemon:web:v1", &daemon));
    assert_eq!(counts(&again), (0, 3), "{again}");
    // The installable, built (already) and copied in one go.
    let out = p.mini(&["image", "copy", ".#changed", "docker-daemon:web:v2"], &daemon);
    let second = succeeded_stderr(&out);
    assert_eq!(counts(&second), (1, 2), "{second}");

    // A layer is sent when its chain (it and all below it) is new.
    let renoted = p.build("renoted");
    let shared = ours.iter().zip(diff_ids(&renoted)).take_while(|(a, b)| **a == *b).count();
    assert!((1..3).contains(&shared), "busybox, at the bottom, is shared; the notes are not: {ours:?}");
    let third = succeeded_stderr(&p.copy(&[], &renoted, "docker-daemon:web:v3", &daemon));
    assert_eq!(counts(&third), (3 - shared, shared), "{third}");

    let inspect = |reference: &str, format: &str| docker.docker_ok(&["image", "inspect", "-f", format, reference]);
    assert_eq!(inspect("web:v1", "{{.Id}}").trim(), config_digest(&stream));
    assert_eq!(inspect("web:v2", "{{.Id}}").trim(), config_digest(&changed));
    assert_eq!(inspect("web:v3", "{{.Id}}").trim(), config_digest(&renoted));
    assert_eq!(strings(&json(&inspect("web:v2", "{{json .RootFS.Layers}}"))), theirs);
    assert_eq!(strings(&json(&inspect("web:v3", "{{json .RootFS.Layers}}"))), diff_ids(&renoted));
    for (image, page) in [("web:v1", PAGE_ONE), ("web:v2", PAGE_TWO), ("web:v3", PAGE_ONE)] {
        let port = free_port();
        docker.run_detached(&["-e", &format!("PORT={port}")], image, &[]);
        assert_eq!(body(http_get(port, "/", Duration::from_secs(30))), page, "{image}");
    }
}

#[test]
fn oci_layouts_take_new_tags_and_only_the_blobs_they_lack() {
    // skopeo reads the layout mini writes and umoci and runc run it; a
    // changed image copied under another tag adds its one new layer and
    // keeps the first tag.
    if !have(&["skopeo", "umoci", "runc"]) {
        return;
    }
    let p = Project::new("stream-oci", WEB);
    if !have_busybox(&p.scratch) {
        return;
    }
    let stream = p.build("stream");
    let changed = p.build("changed");
    let layout = p.path("layout");
    let tagged = |tag: &str| image_ref("oci", &layout, Some(tag));
    let destination = |tag: &str| format!("oci:{}:{tag}", layout.display());

    let first = succeeded_stderr(&p.copy(&[], &stream, &destination("latest"), &[]));
    assert_eq!(counts(&first), (3, 0), "{first}");
    assert_eq!(skopeo_inspect(&tagged("latest"), Some("--raw"))["config"]["digest"], config_digest(&stream));
    let config = skopeo_inspect(&tagged("latest"), Some("--config"));
    assert_eq!(strings(&config["rootfs"]["diff_ids"]), diff_ids(&stream));
    let port = free_port();
    let (response, _) =
        while_under_runc(&p.scratch.0, &layout, "web", port, || http_get(port, "/", Duration::from_secs(30)));
    assert_eq!(body(response), PAGE_ONE);

    let second = succeeded_stderr(&p.copy(&[], &changed, &destination("v2"), &[]));
    assert_eq!(counts(&second), (1, 2), "{second}");
    let again = succeeded_stderr(&p.copy(&[], &stream, &destination("latest"), &[]));
    assert_eq!(counts(&again), (0, 3), "{again}");

    let index = read_json(&layout.join("index.json"));
    let mut tags: Vec<&str> = index["manifests"]
        .as_array()
        .expect("index.json lists manifests")
        .iter()
        .map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str().expect("a tag"))
        .collect();
    tags.sort();
    assert_eq!(tags, ["latest", "v2"], "{index}");
    assert_eq!(skopeo_inspect(&tagged("latest"), Some("--raw"))["config"]["digest"], config_digest(&stream));
    assert_eq!(skopeo_inspect(&tagged("v2"), Some("--raw"))["config"]["digest"], config_digest(&changed));
    let bundle = unpack_bundle(&p.scratch.0, &layout, "v2", "v2", &[]);
    assert_eq!(read_in(&bundle.join("rootfs"), "/srv/index.html"), PAGE_TWO);
}

/// The outcome ("uploaded", "exists", "mounted") of each blob a push reports.
fn outcomes(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split(' ').next())
        .filter(|w| ["uploaded", "exists", "mounted"].contains(w))
        .map(str::to_string)
        .collect()
}

#[test]
fn registries_get_the_streamed_image_and_skopeo_pulls_it_back() {
    // `mini image copy … docker://` pushes the image skopeo pulls back with
    // the stream result's config, byte for byte; a changed image sends its
    // one new layer and its config.
    if !registry::installed() || !have(&["skopeo"]) {
        return;
    }
    let p = Project::new("stream-registry", WEB);
    if !have_busybox(&p.scratch) {
        return;
    }
    let registry = Registry::start(&p.scratch.0);
    let stream = p.build("stream");
    let changed = p.build("changed");

    let pushed = succeeded_stderr(&p.copy(&["--insecure"], &stream, &registry.url("web:v1"), &[]));
    assert_eq!(outcomes(&pushed), ["uploaded"; 4], "a config and three layers:\n{pushed}");

    let pulled = p.path("pulled");
    let source = registry.url("web:v1");
    run("skopeo", &["copy", "--src-tls-verify=false", &source, &image_ref("oci", &pulled, Some("v1"))]);
    let blob = |digest: &str| pulled.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let index = read_json(&pulled.join("index.json"));
    let manifest = read_json(&blob(index["manifests"][0]["digest"].as_str().expect("a manifest digest")));
    let config = manifest["config"]["digest"].as_str().expect("a config digest");
    assert_eq!(config, config_digest(&stream));
    assert_eq!(std::fs::read(blob(config)).unwrap(), std::fs::read(stream.join("config.json")).unwrap());
    let config = read_json(&blob(config));
    assert_eq!(strings(&config["rootfs"]["diff_ids"]), diff_ids(&stream));

    let second = succeeded_stderr(&p.copy(&["--insecure"], &changed, &registry.url("web:v2"), &[]));
    let mut seen = outcomes(&second);
    seen.sort();
    assert_eq!(seen, ["exists", "exists", "uploaded", "uploaded"], "the top layer and the config go up:\n{second}");
}

#[test]
fn the_recorded_archive_is_rebuilt_byte_for_byte() {
    // The recipe recorded in tests/fixtures gives the same bytes today,
    // both from buildLayeredImage and from `mini image stream`.
    let p = Project::recorded("stream-recorded");
    let built = std::fs::read(p.build("image")).unwrap();
    let stream = p.build("stream");
    let streamed = p.mini(&["image", "stream", stream.to_str().unwrap()], &[]);
    succeeded(&streamed);
    assert!(streamed.stdout == built, "mini image stream writes what buildLayeredImage wrote");

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    if std::env::var("MINI_RECORD_FIXTURES").as_deref() == Ok("1") {
        std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
        std::fs::write(&fixture, &built).unwrap();
        eprintln!("recorded {} ({} bytes)", fixture.display(), built.len());
    }
    let recorded = std::fs::read(&fixture).unwrap_or_else(|e| {
        panic!("read {}: {e} (MINI_RECORD_FIXTURES=1 records it, see this file's docs)", fixture.display())
    });
    assert!(
        built == recorded,
        "the recipe no longer gives the recorded bytes ({FIXTURE}); if the change is deliberate, re-record it \
         (see this file's docs):\n{}",
        differences(&recorded, &built)
    );
}

#[test]
fn real_clients_accept_the_recorded_archive() {
    // docker load, skopeo, umoci (after skopeo) and podman (when installed)
    // take the recorded archive, with the ID and layers it records.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let members = members(&std::fs::read(&fixture).unwrap());
    let recorded = members
        .iter()
        .find(|m| m.name.ends_with(".json") && m.name != "manifest.json")
        .expect("the archive holds its config");
    let id = sha256_hex(&recorded.data);
    assert_eq!(recorded.name, format!("{id}.json"));
    let layers = strings(&json(&text(&recorded.data))["rootfs"]["diff_ids"]);
    let s = Scratch::new("stream-recorded-clients");

    if let Some(docker) = Dockerd::start() {
        assert_eq!(docker.load(&fixture), "recorded:v1");
        let inspect = |format: &str| docker.docker_ok(&["image", "inspect", "-f", format, "recorded:v1"]);
        assert_eq!(inspect("{{.Id}}").trim(), format!("sha256:{id}"));
        assert_eq!(strings(&json(&inspect("{{json .RootFS.Layers}}"))), layers);
        // The files are there: /etc/greeting is a link into /mini/store.
        let container = docker.docker_ok(&["create", "recorded:v1"]).trim().to_string();
        let copied = docker.docker_ok(&["cp", "-L", &format!("{container}:/etc/greeting"), "-"]);
        let copied = members_text(copied.as_bytes());
        assert_eq!(copied, [("greeting".to_string(), GREETING.to_string())]);
    }

    if have(&["skopeo"]) {
        let (layout, config) = oci_layout(&s.0, &fixture);
        assert_eq!(strings(&config["rootfs"]["diff_ids"]), layers);
        // skopeo re-serialises the config for OCI: the same document, other bytes.
        assert_eq!(config, json(&text(&recorded.data)));
        if have(&["umoci"]) {
            let bundle = unpack_bundle(&s.0, &layout, "latest", "recorded", &[]);
            let rootfs = bundle.join("rootfs");
            assert_eq!(read_in(&rootfs, "/etc/greeting"), GREETING);
            assert_eq!(read_in(&rootfs, "/etc/motd"), "recorded by mini\n");
            assert!(read_in(&rootfs, "/etc/passwd").contains("app:x:1000:1000:"), "a user of its own");
        }
    }

    match which("podman") {
        Some(program) => {
            // A storage of its own: nothing of the host's podman is touched.
            // podman refuses a runroot longer than 50 characters.
            let (root, runroot) =
                (s.0.join("podman-root"), PathBuf::from(format!("/tmp/mini-pod-{}", std::process::id())));
            let podman = |args: &[&str]| {
                let out = Command::new(&program)
                    .arg("--root")
                    .arg(&root)
                    .arg("--runroot")
                    .arg(&runroot)
                    .args(["--storage-driver", "vfs"])
                    .args(args)
                    .output()
                    .expect("run podman");
                assert!(out.status.success(), "podman {args:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
                text(&out.stdout)
            };
            podman(&["load", "-i", fixture.to_str().unwrap()]);
            let loaded = podman(&["image", "inspect", "--format", "{{.Id}}", "localhost/recorded:v1"]);
            assert_eq!(loaded.trim().trim_start_matches("sha256:"), id);
            let _ = std::fs::remove_dir_all(&runroot);
        }
        None => {
            assert!(!ci(), "podman is missing: scripts/install-prerequisites installs it");
            eprintln!("podman is not installed here: `podman load` of the recorded archive is not tested");
        }
    }
}

/// The files of a tar stream, as (name, text).
fn members_text(archive: &[u8]) -> Vec<(String, String)> {
    members(archive).into_iter().map(|m| (m.name, text(&m.data))).collect()
}

#[test]
fn bad_sources_and_destinations_are_refused_and_leave_no_file() {
    // An unknown transport, an image that is not streamed, and stream
    // descriptions tampered with after the build: each copy fails saying
    // why, and the docker-archive it was to write does not exist.
    let p = Project::recorded("stream-bad");
    let archive = p.build("image");
    let stream = p.build("stream");
    let out = p.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let target = |name: &str| format!("docker-archive:{}", out.join(name).display());

    let stderr = failed(&p.copy(&[], &stream, "ftp://example.org/web:v1", &[]));
    assert!(stderr.contains("unknown transport 'ftp'") && stderr.contains("docker-archive:, oci:"), "{stderr}");
    let stderr = failed(&p.copy(&[], &stream, &out.join("plain.tar").display().to_string(), &[]));
    assert!(stderr.contains("expected TRANSPORT:WHERE"), "{stderr}");

    let stderr = failed(&p.copy(&[], &archive, &target("archive.tar"), &[]));
    assert!(stderr.contains("is not a streamed image") && stderr.contains("docker load <"), "{stderr}");

    // A copy of the stream result out of the store, edited by `edit`.
    let tampered = |name: &str, edit: &dyn Fn(&Path)| {
        let dir = p.path(name);
        run("cp", &["-r", stream.to_str().unwrap(), dir.to_str().unwrap()]);
        run("chmod", &["-R", "u+w", dir.to_str().unwrap()]);
        edit(&dir);
        dir
    };
    let replace = |file: &Path, from: &str, to: &str| {
        let before = std::fs::read_to_string(file).unwrap();
        assert!(before.contains(from), "{from} is not in {before}");
        std::fs::write(file, before.replacen(from, to, 1)).unwrap();
    };
    let description = read_json(&stream.join("image.json"));
    let path = description["layers"][0]["paths"][0].as_str().expect("the first layer holds a store path");
    let hash = path.trim_start_matches("/mini/store/");
    // Another valid name: the hash's first character changed.
    let other = format!("{}{}", if hash.starts_with('0') { '1' } else { '0' }, &hash[1..]);
    let missing = tampered("missing-path", &|dir| replace(&dir.join("image.json"), hash, &other));
    let stderr = failed(&p.copy(&[], &missing, &target("missing.tar"), &[]));
    assert!(stderr.contains(&format!("/mini/store/{other}")) && stderr.contains("not valid in this store"), "{stderr}");

    let diff_id = diff_ids(&stream)[0].clone();
    let wrong = format!("sha256:{}", sha256_hex(b"not this layer"));
    let wrong_id = tampered("wrong-diff-id", &|dir| replace(&dir.join("image.json"), &diff_id, &wrong));
    let stderr = failed(&p.copy(&[], &wrong_id, &target("wrong-id.tar"), &[]));
    assert!(stderr.contains(&diff_id) && stderr.contains(&wrong), "names both digests: {stderr}");
    let streamed = p.mini(&["image", "stream", wrong_id.to_str().unwrap()], &[]);
    assert!(!streamed.status.success(), "mini image stream of a tampered image exits with an error");

    let edited_tar = tampered("edited-customisation", &|dir| {
        let file = dir.join("customisation.tar");
        let mut bytes = std::fs::read(&file).unwrap();
        let at = bytes.len() / 4;
        bytes[at] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
    });
    let stderr = failed(&p.copy(&[], &edited_tar, &target("edited.tar"), &[]));
    assert!(stderr.contains(&diff_ids(&stream)[1]), "names the customisation layer's digest: {stderr}");

    assert_eq!(files_in(&out), Vec::<String>::new(), "failed copies leave nothing, not even a temporary file");
}

#[test]
fn a_config_that_disagrees_with_the_description_is_refused() {
    // The config names the layers by their diff_ids too; an archive whose
    // config and layers disagree is one `docker load` refuses, so the copy
    // must refuse it first.
    let p = Project::recorded("stream-bad-config");
    let stream = p.build("stream");
    let dir = p.path("tampered");
    run("cp", &["-r", stream.to_str().unwrap(), dir.to_str().unwrap()]);
    run("chmod", &["-R", "u+w", dir.to_str().unwrap()]);
    let diff_id = diff_ids(&stream)[0].clone();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let wrong = format!("sha256:{}", sha256_hex(b"not this layer"));
    std::fs::write(dir.join("config.json"), config.replacen(&diff_id, &wrong, 1)).unwrap();
    let file = p.path("out.tar");
    let stderr = failed(&p.copy(&[], &dir, &format!("docker-archive:{}", file.display()), &[]));
    assert!(stderr.contains(&wrong), "{stderr}");
    assert!(!file.exists());
}

#[test]
fn the_stream_result_is_the_same_bytes_in_any_store() {
    // The three files of the stream result are the same, byte for byte,
    // built in two stores from two directories; and what `mini image stream`
    // writes is what buildLayeredImage writes.
    let places = [Project::new("stream-repro-first", WEB), Project::new("stream-repro-second", WEB)];
    if !have_busybox(&places[0].scratch) {
        return;
    }
    let mut results = Vec::new();
    for (place, p) in ["first", "second"].iter().zip(&places) {
        let stream = p.build("stream");
        let files: Vec<(String, Vec<u8>)> = ["image.json", "config.json", "customisation.tar"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(stream.join(f)).unwrap()))
            .collect();
        assert_eq!(files_in(&stream), ["config.json", "customisation.tar", "image.json"]);
        let streamed = p.mini(&["image", "stream", stream.to_str().unwrap()], &[]);
        succeeded(&streamed);
        assert!(streamed.stdout == std::fs::read(p.build("archive")).unwrap(), "stream and archive differ in {place}");
        results.push(files);
    }
    for ((name, first), (_, second)) in results[0].iter().zip(&results[1]) {
        assert!(first == second, "{name} differs between the two stores:\n{}\n{}", text(first), text(second));
    }
}
