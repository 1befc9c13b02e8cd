//! `pkgs.dockerTools` end to end: images built by `mini build` are read by
//! real clients — `skopeo` inspects and copies them, `umoci` unpacks them
//! and `runc` runs them — and are shared, bounded and reproducible the way
//! nixpkgs' layered images are.
//!
//! Most tests need skopeo, umoci or runc (Debian packages, installed by
//! `scripts/install-prerequisites`): a missing tool skips what needs it,
//! with a message, except under `CI=true`, where it fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::clients::{ci, have, image_ref, json, root, run, run_container, skopeo_inspect};
use common::{mini_at as mini, ok, text, Scratch};

// ---------------------------------------------------------------------------
// mini and flakes

/// What every test flake starts with: `script name line`, a package whose
/// `bin/<name>` is a busybox sh script echoing `line`, and `hello`.
const FLAKE_PRELUDE: &str = r#"{ pkgs, ... }:
let
  inherit (pkgs) busybox runCommand dockerTools;
  script = name: line: runCommand name { } ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\necho %s\n' '${line}' > $out/bin/${name}
    chmod +x $out/bin/${name}
  '';
  hello = script "hello" "hello from the image";
in
"#;

/// Writes a flake in `dir` whose attribute set (Nix source, `rec`) is
/// `attrs`, with `busybox`, `runCommand`, `dockerTools`, `script` and
/// `hello` in scope.
fn flake(dir: &Path, attrs: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("flake.nixlike"), format!("{FLAKE_PRELUDE}rec {{\n{attrs}\n}}\n")).unwrap();
}

/// Attribute `attr`: the usual test image, busybox at `/` running `hello`,
/// tagged `hello:v1`, with `settings` (Nix attribute definitions) added.
fn hello_image(attr: &str, settings: &str) -> String {
    format!(
        "  {attr} = dockerTools.buildLayeredImage {{\n    name = \"hello\";\n    tag = \"v1\";\n    \
         contents = [ busybox ];\n    config.Cmd = [ \"${{hello}}/bin/hello\" ];\n    {settings}\n  }};\n"
    )
}

/// Builds `attr` of the flake in `dir` and returns where its output is on disk.
fn build(store: &Path, dir: &Path, attr: &str) -> PathBuf {
    let out = ok(&mini(store, dir, &["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"]));
    let name = out.strip_prefix("/mini/store/").unwrap_or_else(|| panic!("not a store path: {out}"));
    store.join("store").join(name)
}

/// A store root and a flake directory in a scratch dir.
struct Setup {
    scratch: Scratch,
    store: PathBuf,
    dir: PathBuf,
}

fn setup(name: &str, attrs: &str) -> Setup {
    let scratch = Scratch::new(name);
    let store = scratch.0.join("store");
    let dir = scratch.0.join("flake");
    flake(&dir, attrs);
    Setup { scratch, store, dir }
}

impl Setup {
    fn build(&self, attr: &str) -> PathBuf {
        build(&self.store, &self.dir, attr)
    }

    /// A fresh path inside the scratch dir for a tool to create.
    fn path(&self, name: &str) -> PathBuf {
        self.scratch.0.join(name)
    }
}

// ---------------------------------------------------------------------------
// The real clients

// ---------------------------------------------------------------------------
// Reading archives directly

/// A docker-archive unpacked with `tar`: its manifest, config and layer files.
struct Archive {
    dir: PathBuf,
    manifest: Value,
    config: Value,
}

impl Archive {
    fn unpack(archive: &Path, into: &Path) -> Archive {
        std::fs::create_dir_all(into).unwrap();
        run("tar", &["-xf", &archive.display().to_string(), "-C", &into.display().to_string()]);
        let manifest = json(&std::fs::read_to_string(into.join("manifest.json")).unwrap());
        let config_file = manifest[0]["Config"].as_str().expect("manifest names a Config");
        let config = json(&std::fs::read_to_string(into.join(config_file)).unwrap());
        Archive { dir: into.to_path_buf(), manifest, config }
    }

    /// The layer files, bottom first.
    fn layers(&self) -> Vec<PathBuf> {
        let layers = self.manifest[0]["Layers"].as_array().expect("manifest lists Layers");
        layers.iter().map(|l| self.dir.join(l.as_str().expect("layer file name"))).collect()
    }

    fn diff_ids(&self) -> Vec<String> {
        let ids = self.config["rootfs"]["diff_ids"].as_array().expect("config lists diff_ids");
        ids.iter().map(|d| d.as_str().unwrap().to_string()).collect()
    }
}

/// One entry of a layer tar as GNU tar lists it (`tar -tv`, numeric owners, UTC).
struct Entry {
    /// `drwxr-xr-x`, `-rw-r--r--`, `lrwxrwxrwx`…
    mode: String,
    /// `uid/gid`.
    owner: String,
    /// `1970-01-01 00:00:01`.
    mtime: String,
    /// Without a leading `./`; a symlink's is `name -> target`.
    name: String,
}

fn listing(layer: &Path) -> Vec<Entry> {
    let out = Command::new("tar")
        .env("TZ", "UTC")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(layer)
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar -tvf {} failed: {}", layer.display(), text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected tar listing line: {line}");
            Entry {
                mode: fields[0].to_string(),
                owner: fields[1].to_string(),
                mtime: format!("{} {}", fields[3], fields[4]),
                name: fields[5..].join(" ").trim_start_matches("./").to_string(),
            }
        })
        .collect()
}

/// The contents of file `name` in a layer.
fn layer_file(layer: &Path, name: &str) -> String {
    run("tar", &["-xOf", &layer.display().to_string(), name])
}

/// The store paths (`<hash>-<name>`) a layer holds.
fn store_paths_in(layer: &Path) -> BTreeSet<String> {
    listing(layer)
        .iter()
        .filter_map(|e| e.name.strip_prefix("mini/store/"))
        .filter_map(|rest| rest.split(['/', ' ']).next())
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

fn sha256_of(path: &Path) -> String {
    let out = run("sha256sum", &[&path.display().to_string()]);
    out.split_whitespace().next().expect("sha256sum output").to_string()
}

fn layer_media_types(manifest: &Value) -> Vec<String> {
    let layers = manifest["layers"].as_array().expect("manifest lists layers");
    layers.iter().map(|l| l["mediaType"].as_str().unwrap().to_string()).collect()
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn image_derivations_carry_the_builder_contract() {
    // The prelude writes exactly the attributes `builtin:image` reads, with
    // defaults filled in and user-facing shorthands normalised, and refuses
    // bad settings at evaluation with a clear message.
    let s = setup(
        "image-contract",
        &(hello_image("image", "")
            + r#"
  full = dockerTools.buildImage {
    name = "example.org/team/app";
    format = "oci";
    compressor = "zstd";
    maxLayers = 7;
    extraFiles = {
      "etc/motd" = "welcome\n";
      "etc/greeting" = pkgs.writeText "greeting" "hi\n";
      "etc/conf" = { text = "x"; mode = "0600"; };
    };
    users = [ { name = "app"; uid = 1000; } { name = "web"; uid = 1001; gid = 100; home = "/srv"; } ];
  };
  badFormat = dockerTools.buildLayeredImage { name = "x"; format = "tgz"; };
  badCompressor = dockerTools.buildLayeredImage { name = "x"; compressor = "xz"; };
  badMaxLayers = dockerTools.buildLayeredImage { name = "x"; maxLayers = 1; };
  badPath = dockerTools.buildLayeredImage { name = "x"; extraFiles."../etc/passwd" = "root"; };
  badMode = dockerTools.buildLayeredImage { name = "x"; extraFiles."a" = { text = ""; mode = "rw"; }; };
  badUser = dockerTools.buildLayeredImage { name = "x"; users = [ { name = "app"; } ]; };
"#),
    );
    let show = |attr: &str| {
        let shown = json(&ok(&mini(&s.store, &s.dir, &["derivation", "show", &format!(".#{attr}")])));
        let (_, drv) = shown.as_object().unwrap().iter().next().unwrap();
        drv.clone()
    };
    let drv = show("image");
    let env = &drv["env"];
    assert_eq!(drv["builder"], "builtin:image");
    assert_eq!(env["name"], "hello.tar");
    assert_eq!(env["imageName"], "hello");
    assert_eq!(env["imageTag"], "v1");
    assert_eq!(env["layering"], "popularity");
    assert_eq!(env["maxLayers"], "100");
    assert_eq!(env["created"], "1970-01-01T00:00:01Z");
    assert_eq!(env["architecture"], "amd64");
    assert_eq!(env["os"], "linux");
    assert_eq!(env["format"], "docker");
    assert_eq!(env["compressor"], "none");
    assert!(env["contents"].as_str().unwrap().ends_with("-busybox"), "{env}");
    let config = json(env["config"].as_str().unwrap());
    let cmd = config["Cmd"][0].as_str().unwrap();
    assert!(cmd.starts_with("/mini/store/") && cmd.ends_with("-hello/bin/hello"), "{config}");
    // The Cmd's store path is an input, so it is in the image's closure.
    let inputs = drv["inputDrvs"].as_object().unwrap();
    assert!(inputs.keys().any(|k| k.ends_with("-hello.drv")), "{drv}");
    assert_eq!(env["extraFiles"], "{}");
    assert_eq!(env["users"], "[]");

    let drv = show("full");
    let env = &drv["env"];
    assert_eq!(env["name"], "app-oci");
    assert_eq!(env["imageTag"], "");
    assert_eq!(env["layering"], "single");
    assert_eq!((&env["format"], &env["compressor"]), (&"oci".into(), &"zstd".into()));
    let extra = json(env["extraFiles"].as_str().unwrap());
    assert_eq!(extra["etc/motd"], serde_json::json!({ "text": "welcome\n", "mode": "0644" }));
    assert_eq!(extra["etc/conf"], serde_json::json!({ "text": "x", "mode": "0600" }));
    let source = extra["etc/greeting"]["source"].as_str().unwrap();
    assert!(source.starts_with("/mini/store/") && source.ends_with("-greeting"), "{extra}");
    assert!(extra["etc/greeting"].get("mode").is_none(), "a source keeps its own executable bit: {extra}");
    assert_eq!(
        json(env["users"].as_str().unwrap()),
        serde_json::json!([
            { "name": "app", "uid": 1000, "gid": 1000, "home": "/home/app" },
            { "name": "web", "uid": 1001, "gid": 100, "home": "/srv" },
        ])
    );

    for (attr, message) in [
        ("badFormat", "format must be \"docker\" or \"oci\""),
        ("badCompressor", "compressor must be \"none\", \"gzip\" or \"zstd\""),
        ("badMaxLayers", "maxLayers must be an integer of at least 2"),
        ("badPath", "extraFiles path '../etc/passwd' must be relative"),
        ("badMode", "extraFiles.\"a\".mode must be an octal string like \"0644\""),
        ("badUser", "each of users needs a name and a uid"),
    ] {
        let out = mini(&s.store, &s.dir, &["derivation", "show", &format!(".#{attr}")]);
        assert!(!out.status.success(), "{attr} evaluated");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("error: dockerTools: ") && stderr.contains(message), "{attr}: {stderr}");
    }
}

#[test]
fn skopeo_reads_the_docker_archive() {
    // skopeo accepts the docker-archive and sees the configured command, the
    // tag, one layer per store path plus the customisation layer, and the
    // fixed creation date.
    if !have(&["skopeo"]) {
        return;
    }
    let s = setup("image-skopeo", &hello_image("image", ""));
    let archive = s.build("image");
    assert!(archive.is_file(), "a docker-archive is one file: {}", archive.display());
    let image = image_ref("docker-archive", &archive, None);

    let config = skopeo_inspect(&image, Some("--config"));
    let cmd = config["config"]["Cmd"].as_array().expect("Cmd");
    assert_eq!(cmd.len(), 1);
    assert!(cmd[0].as_str().unwrap().ends_with("-hello/bin/hello"), "{config}");
    assert_eq!((&config["architecture"], &config["os"]), (&"amd64".into(), &"linux".into()));

    let inspected = skopeo_inspect(&image, None);
    assert_eq!(inspected["Created"], "1970-01-01T00:00:01Z");
    // busybox, hello, and the customisation layer.
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3, "{inspected}");
    let raw = skopeo_inspect(&image, Some("--raw"));
    assert_eq!(raw["layers"].as_array().unwrap().len(), 3, "{raw}");

    let unpacked = Archive::unpack(&archive, &s.path("unpacked"));
    assert_eq!(unpacked.manifest[0]["RepoTags"], serde_json::json!(["hello:v1"]));
    assert_eq!(unpacked.layers().len(), unpacked.diff_ids().len());
    for (layer, diff_id) in unpacked.layers().iter().zip(unpacked.diff_ids()) {
        assert_eq!(format!("sha256:{}", sha256_of(layer)), diff_id, "{}", layer.display());
    }
}

#[test]
fn an_untagged_image_is_tagged_with_its_output_hash() {
    // With `tag = null` the tag is the output path's hash part, as in nixpkgs.
    let s = setup("image-untagged", r#"image = dockerTools.buildLayeredImage { name = "plain"; };"#);
    let archive = s.build("image");
    let hash = archive.file_name().unwrap().to_str().unwrap().split('-').next().unwrap().to_string();
    let unpacked = Archive::unpack(&archive, &s.path("unpacked"));
    assert_eq!(unpacked.manifest[0]["RepoTags"], serde_json::json!([format!("plain:{hash}")]));
}

#[test]
fn skopeo_copies_the_archive_to_oci_and_reads_the_oci_format() {
    // A docker-archive converts to an OCI layout with skopeo (which checks
    // every layer against its digest), and `format = "oci"` writes a layout
    // skopeo reads under its tag, with the same layers.
    if !have(&["skopeo"]) {
        return;
    }
    let s = setup("image-oci", &(hello_image("image", "") + &hello_image("oci", r#"format = "oci";"#)));
    let archive = s.build("image");
    let copied = s.path("copied");
    run("skopeo", &["copy", &image_ref("docker-archive", &archive, None), &image_ref("oci", &copied, Some("v1"))]);
    let copied_config = skopeo_inspect(&image_ref("oci", &copied, Some("v1")), Some("--config"));

    let layout = s.build("oci");
    assert!(layout.join("oci-layout").is_file() && layout.join("index.json").is_file(), "{}", layout.display());
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "v1", "{index}");
    let oci = image_ref("oci", &layout, Some("v1"));
    let config = skopeo_inspect(&oci, Some("--config"));
    assert_eq!(config["config"]["Cmd"], copied_config["config"]["Cmd"]);
    assert_eq!(config["rootfs"]["diff_ids"], copied_config["rootfs"]["diff_ids"]);
    let manifest = skopeo_inspect(&oci, Some("--raw"));
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(layer_media_types(&manifest), vec!["application/vnd.oci.image.layer.v1.tar"; 3]);
}

#[test]
fn the_image_runs_under_runc() {
    // umoci unpacks the image into a bundle and runc runs its Cmd, a script
    // whose interpreter is busybox from the image's store; busybox's applets
    // are linked at /bin.
    if !have(&["skopeo", "umoci", "runc"]) {
        return;
    }
    let s = setup(
        "image-runc",
        &(hello_image("image", "")
            + r#"
  probe = dockerTools.buildLayeredImage {
    name = "probe";
    tag = "v1";
    format = "oci";
    contents = [ busybox ];
    config.Cmd = [ "/bin/sh" "-c" "readlink /bin/sh; ${hello}/bin/hello" ];
  };
"#),
    );
    let archive = s.build("image");
    let layout = s.path("layout");
    run("skopeo", &["copy", &image_ref("docker-archive", &archive, None), &image_ref("oci", &layout, Some("v1"))]);
    assert_eq!(run_container(&s.scratch.0, &layout, "v1", "runc-archive"), "hello from the image\n");

    let probe = s.build("probe");
    let out = run_container(&s.scratch.0, &probe, "v1", "runc-oci");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("/mini/store/") && lines[0].ends_with("-busybox/bin/sh"), "{out}");
    assert_eq!(lines[1], "hello from the image");
}

#[test]
fn images_sharing_busybox_share_its_layer() {
    // Two different images built on busybox hold it in byte-identical
    // layers (same digest), at the bottom, where it is most popular.
    let s = setup(
        "image-share",
        &(hello_image("image", "")
            + r#"
  bye = script "bye" "goodbye";
  other = dockerTools.buildLayeredImage {
    name = "bye";
    tag = "v2";
    contents = [ busybox bye ];
    config.Entrypoint = [ "/bin/bye" ];
    extraFiles."etc/motd" = "hi\n";
  };
"#),
    );
    let busybox_layer = |attr: &str| {
        let archive = Archive::unpack(&s.build(attr), &s.path(attr));
        let layers = archive.layers();
        let index = layers
            .iter()
            .position(|l| store_paths_in(l).iter().any(|p| p.ends_with("-busybox")))
            .unwrap_or_else(|| panic!("no layer of {attr} holds busybox"));
        assert_eq!(store_paths_in(&layers[index]).len(), 1, "busybox shares its layer in {attr}");
        assert_eq!(index, 0, "busybox is the most popular path of {attr}");
        (archive.diff_ids()[index].clone(), sha256_of(&layers[index]))
    };
    let (first_diff_id, first_digest) = busybox_layer("image");
    let (second_diff_id, second_digest) = busybox_layer("other");
    assert_eq!(first_diff_id, second_diff_id);
    assert_eq!(first_digest, second_digest);
    if have(&["skopeo"]) {
        let layers = |attr: &str| {
            let inspected = skopeo_inspect(&image_ref("docker-archive", &s.build(attr), None), None);
            inspected["Layers"].as_array().unwrap().clone()
        };
        assert_eq!(layers("image")[0], layers("other")[0]);
        assert_ne!(layers("image").last(), layers("other").last());
    }
}

#[test]
fn the_same_image_is_the_same_bytes_anywhere() {
    // The same recipe built in two store roots, from two directories, at two
    // different times gives the same archive and the same OCI layout, byte
    // for byte.
    let attrs = hello_image("image", "")
        + r#"
  oci = dockerTools.buildLayeredImage {
    name = "hello";
    format = "oci";
    compressor = "gzip";
    contents = [ busybox hello ];
    extraFiles."etc/motd" = "hi\n";
    users = [ { name = "app"; uid = 1000; } ];
  };
"#;
    let s = Scratch::new("image-repro");
    let mut digests = Vec::new();
    for place in ["first", "second"] {
        let store = s.0.join(format!("{place}-store"));
        let dir = s.0.join(format!("{place}-flake"));
        flake(&dir, &attrs);
        let archive = build(&store, &dir, "image");
        let layout = build(&store, &dir, "oci");
        let index = std::fs::read_to_string(layout.join("index.json")).unwrap();
        let mut blobs: Vec<(String, String)> = std::fs::read_dir(layout.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), sha256_of(&p)))
            .collect();
        blobs.sort();
        for (name, digest) in &blobs {
            assert_eq!(name, digest, "a blob's name is its digest");
        }
        digests.push((sha256_of(&archive), index, blobs));
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn a_closure_larger_than_max_layers_fills_exactly_max_layers() {
    // Twelve chained store paths with `maxLayers = 5`: the four most popular
    // get a layer each except the last, which holds all the rest, and the
    // customisation layer comes last.
    let mut chain = String::from("  d0 = runCommand \"d0\" { } \"echo start > $out\";\n");
    for i in 1..12 {
        chain.push_str(&format!("  d{i} = runCommand \"d{i}\" {{ }} \"echo ${{d{}}} > $out\";\n", i - 1));
    }
    let s = setup(
        "image-max-layers",
        &format!(
            "{chain}{}",
            r#"
  image = dockerTools.buildLayeredImage {
    name = "chain";
    tag = "v1";
    maxLayers = 5;
    config.Env = [ "CHAIN=${d11}" ];
  };
"#
        ),
    );
    let archive = s.build("image");
    let unpacked = Archive::unpack(&archive, &s.path("unpacked"));
    let layers = unpacked.layers();
    assert_eq!(layers.len(), 5);
    let per_layer: Vec<usize> = layers.iter().map(|l| store_paths_in(l).len()).collect();
    assert_eq!(per_layer, [1, 1, 1, 9, 0], "store paths per layer");
    if have(&["skopeo"]) {
        let inspected = skopeo_inspect(&image_ref("docker-archive", &archive, None), None);
        assert_eq!(inspected["Layers"].as_array().unwrap().len(), 5);
        assert!(inspected["Env"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().starts_with("CHAIN=")));
    }
}

#[test]
fn users_run_the_command_as_their_uid() {
    // With `users` and `config.User`, the command runs as that user, who is
    // in /etc/passwd and owns their home; /tmp is world-writable and sticky.
    if !have(&["umoci", "runc"]) {
        return;
    }
    if !root() {
        // A rootless container maps only the caller's uid: uid 1000 has no one to be.
        assert!(!ci(), "running as another user needs root, which CI has");
        eprintln!("skipping: running a container as uid 1000 needs root");
        return;
    }
    let s = setup(
        "image-users",
        r#"
  image = dockerTools.buildLayeredImage {
    name = "users";
    tag = "v1";
    format = "oci";
    contents = [ busybox ];
    users = [ { name = "app"; uid = 1000; gid = 1000; } ];
    config = {
      User = "app";
      WorkingDir = "/home/app";
      Cmd = [ "/bin/sh" "-c" "id -u; id -g; id -un; pwd; stat -c '%a %u:%g' /tmp; stat -c %u:%g /home/app; grep -c . /etc/passwd" ];
    };
  };
"#,
    );
    let layout = s.build("image");
    let out = run_container(&s.scratch.0, &layout, "v1", "users");
    assert_eq!(out, "1000\n1000\napp\n/home/app\n1777 0:0\n1000:1000\n2\n");
}

#[test]
fn the_customisation_layer_holds_links_users_and_extra_files() {
    // The last layer links the contents' entries at /, and holds /tmp
    // (1777), /etc/passwd and /etc/group, each user's home owned by them
    // and the extra files with their modes (a source keeps its executable
    // bit unless a mode is given). Every entry of every layer has mtime 1
    // and belongs to root, except the homes.
    let s = setup(
        "image-custom",
        r#"
  tool = runCommand "tool" { } "echo 'echo tool' > $out; chmod +x $out";
  motd = pkgs.writeText "motd" "from a file\n";
  image = dockerTools.buildLayeredImage {
    name = "custom";
    tag = "v1";
    contents = [ busybox ];
    users = [ { name = "app"; uid = 1000; } { name = "web"; uid = 1001; gid = 1000; home = "/srv/web"; } ];
    extraFiles = {
      "etc/motd" = motd;
      "etc/issue" = "welcome\n";
      "etc/secret" = { text = "s"; mode = "0600"; };
      "usr/bin/tool" = tool;
      "usr/bin/plain" = { source = tool; mode = "0644"; };
      "usr/bin/bb" = { source = "${busybox}/bin/busybox"; };
    };
  };
  fileContents = dockerTools.buildLayeredImage { name = "file"; contents = [ motd ]; };
"#,
    );
    let unpacked = Archive::unpack(&s.build("image"), &s.path("unpacked"));
    let layers = unpacked.layers();
    let custom = layers.last().expect("a customisation layer");
    let entries = listing(custom);
    let entry = |name: &str| {
        let found =
            entries.iter().find(|e| e.name.trim_end_matches('/') == name || e.name.starts_with(&format!("{name} -> ")));
        found.unwrap_or_else(|| panic!("no {name} in the customisation layer"))
    };
    let sh = &entry("bin/sh").name;
    assert!(sh.starts_with("bin/sh -> /mini/store/") && sh.ends_with("-busybox/bin/sh"), "{sh}");
    assert_eq!(entry("tmp").mode, "drwxrwxrwt");
    for (name, mode) in [
        ("etc/passwd", "-rw-r--r--"),
        ("etc/group", "-rw-r--r--"),
        ("etc/motd", "-rw-r--r--"),
        ("etc/issue", "-rw-r--r--"),
        ("etc/secret", "-rw-------"),
        ("usr/bin/tool", "-rwxr-xr-x"),
        ("usr/bin/plain", "-rw-r--r--"),
        ("usr/bin/bb", "-rwxr-xr-x"),
    ] {
        assert_eq!((name, entry(name).mode.as_str()), (name, mode));
    }
    assert_eq!(entry("home/app").owner, "1000/1000");
    assert_eq!(entry("srv/web").owner, "1001/1000");
    assert_eq!(layer_file(custom, "etc/motd"), "from a file\n");
    assert_eq!(layer_file(custom, "etc/issue"), "welcome\n");
    assert_eq!(layer_file(custom, "usr/bin/tool"), "echo tool\n");
    let passwd = layer_file(custom, "etc/passwd");
    for line in ["root:x:0:0:", "app:x:1000:1000:", "web:x:1001:1000:"] {
        assert!(passwd.lines().any(|l| l.starts_with(line)), "{line} missing from:\n{passwd}");
    }
    // A file in contents has no bin/ or etc/ to link: a clear error.
    let refused = mini(&s.store, &s.dir, &["build", ".#fileContents", "--no-link"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("is not a directory") && err.contains("extraFiles"), "{err}");
    let group = layer_file(custom, "etc/group");
    assert!(group.lines().any(|l| l.starts_with("root:x:0:")), "{group}");
    assert_eq!(group.lines().filter(|l| l.contains(":x:1000:")).count(), 1, "{group}");

    for layer in &layers {
        for e in listing(layer) {
            assert_eq!(e.mtime, "1970-01-01 00:00:01", "{} in {}", e.name, layer.display());
            if !matches!(e.name.trim_end_matches('/'), "home/app" | "srv/web") {
                assert_eq!(e.owner, "0/0", "{} in {}", e.name, layer.display());
            }
        }
    }
}

#[test]
fn build_image_puts_everything_in_one_layer() {
    // `buildImage` packs the closure and the customisation into one layer,
    // and the image still runs.
    if !have(&["skopeo", "umoci", "runc"]) {
        return;
    }
    let s = setup(
        "image-single",
        r#"
  image = dockerTools.buildImage {
    name = "single";
    tag = "v1";
    contents = [ busybox ];
    config.Cmd = [ "/bin/sh" "-c" "${hello}/bin/hello; ls /tmp" ];
  };
"#,
    );
    let archive = s.build("image");
    let docker = image_ref("docker-archive", &archive, None);
    assert_eq!(skopeo_inspect(&docker, None)["Layers"].as_array().unwrap().len(), 1);
    let unpacked = Archive::unpack(&archive, &s.path("unpacked"));
    let layers = unpacked.layers();
    assert_eq!(layers.len(), 1);
    let paths = store_paths_in(&layers[0]);
    assert!(paths.iter().any(|p| p.ends_with("-busybox")) && paths.iter().any(|p| p.ends_with("-hello")), "{paths:?}");
    let layout = s.path("layout");
    run("skopeo", &["copy", &docker, &image_ref("oci", &layout, Some("v1"))]);
    assert_eq!(run_container(&s.scratch.0, &layout, "v1", "single"), "hello from the image\n");
}

#[test]
fn gzip_layers_are_read_by_skopeo_and_run() {
    // `compressor = "gzip"`: the archive's layers are gzip streams whose
    // contents match the diff_ids (skopeo checks while copying), the OCI
    // format names them `+gzip`, and the image runs.
    if !have(&["skopeo", "umoci", "runc"]) {
        return;
    }
    let s = setup(
        "image-gzip",
        &(hello_image("image", r#"compressor = "gzip";"#)
            + &hello_image("oci", r#"format = "oci"; compressor = "gzip";"#)),
    );
    let archive = s.build("image");
    let unpacked = Archive::unpack(&archive, &s.path("unpacked"));
    for layer in unpacked.layers() {
        assert_eq!(std::fs::read(&layer).unwrap()[..2], [0x1f, 0x8b], "{} is not gzip", layer.display());
    }
    let docker = image_ref("docker-archive", &archive, None);
    assert_eq!(skopeo_inspect(&docker, None)["Layers"].as_array().unwrap().len(), 3);
    let copied = s.path("copied");
    run("skopeo", &["copy", &docker, &image_ref("oci", &copied, Some("v1"))]);
    assert_eq!(run_container(&s.scratch.0, &copied, "v1", "gzip-archive"), "hello from the image\n");

    let layout = s.build("oci");
    let manifest = skopeo_inspect(&image_ref("oci", &layout, Some("v1")), Some("--raw"));
    assert_eq!(layer_media_types(&manifest), vec!["application/vnd.oci.image.layer.v1.tar+gzip"; 3]);
    assert_eq!(run_container(&s.scratch.0, &layout, "v1", "gzip-oci"), "hello from the image\n");
}

#[test]
fn zstd_layers_are_read_by_skopeo_and_run() {
    // `compressor = "zstd"`: skopeo reads zstd layers from a docker-archive
    // and from an OCI layout (`+zstd`); recompressed to gzip by skopeo (the
    // umoci here reads no zstd), the image runs.
    if !have(&["skopeo", "umoci", "runc"]) {
        return;
    }
    let s = setup(
        "image-zstd",
        &(hello_image("image", r#"compressor = "zstd";"#)
            + &hello_image("oci", r#"format = "oci"; compressor = "zstd";"#)),
    );
    let archive = s.build("image");
    let unpacked = Archive::unpack(&archive, &s.path("unpacked"));
    for layer in unpacked.layers() {
        assert_eq!(std::fs::read(&layer).unwrap()[..4], [0x28, 0xb5, 0x2f, 0xfd], "{} is not zstd", layer.display());
    }
    let docker = image_ref("docker-archive", &archive, None);
    assert_eq!(skopeo_inspect(&docker, None)["Layers"].as_array().unwrap().len(), 3);
    let from_archive = s.path("from-archive");
    run("skopeo", &["copy", "--dest-compress-format", "gzip", &docker, &image_ref("oci", &from_archive, Some("v1"))]);
    assert_eq!(run_container(&s.scratch.0, &from_archive, "v1", "zstd-archive"), "hello from the image\n");

    let layout = s.build("oci");
    let oci = image_ref("oci", &layout, Some("v1"));
    let manifest = skopeo_inspect(&oci, Some("--raw"));
    assert_eq!(layer_media_types(&manifest), vec!["application/vnd.oci.image.layer.v1.tar+zstd"; 3]);
    let gzipped = s.path("gzipped");
    run(
        "skopeo",
        &["copy", "--dest-compress", "--dest-compress-format", "gzip", &oci, &image_ref("oci", &gzipped, Some("v1"))],
    );
    assert_eq!(run_container(&s.scratch.0, &gzipped, "v1", "zstd-oci"), "hello from the image\n");
}
