//! `mini image inspect` end to end: hand-made docker-archives and OCI
//! layouts (written here with the `tar` crate, independently of mini's
//! writer) are summarised and their shared layers found; every kind of
//! malformed input is a one-line error and exit 1, never a panic; and
//! images built from a flake are inspected through their installables,
//! their layers cross-checked with skopeo where it is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

mod common;
use common::clients::have;
use common::{mini_at as mini, succeeded as ok, text, Scratch};

/// The image crate's own hand-made layers and images (its unit tests use
/// them too): written with the `tar` crate, independently of mini's writer.
#[allow(dead_code)]
#[path = "../crates/image/src/inspect/testing.rs"]
mod testing;
use testing::{docker_archive, gzip, layer_tar, sha256_hex, tar_of, write_oci_layout, TestImage, BUSYBOX};
const APP: &str = "zyxwvsrqpnmlkjihgfdcba9876543210-app";

/// Runs `mini image inspect` in `dir` with a store of its own.
fn inspect(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["image", "inspect"];
    all.extend_from_slice(args);
    mini(&dir.join("store"), dir, &all)
}

fn store_layer(base: &str) -> Vec<u8> {
    layer_tar(&["mini/", "mini/store/", &format!("mini/store/{base}/"), &format!("mini/store/{base}/bin/sh")])
}

fn custom_layer() -> Vec<u8> {
    layer_tar(&[&format!("bin -> /mini/store/{BUSYBOX}/bin"), "etc/", "etc/passwd", "tmp/"])
}

/// An image with a config that also exposes a port.
fn image(tag: &str, layers: Vec<Vec<u8>>) -> TestImage {
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", sha256_hex(l))).collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:01Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "ExposedPorts": {"8080/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    TestImage { tag: tag.to_string(), config: config.to_string().into_bytes(), layers }
}

fn web() -> TestImage {
    image("web:1.0", vec![store_layer(BUSYBOX), custom_layer()])
}

fn worker() -> TestImage {
    image("worker:2.0", vec![store_layer(BUSYBOX), store_layer(APP), custom_layer()])
}

#[test]
fn two_images_show_their_layers_and_share_busybox() {
    let scratch = Scratch::new("inspect-two");
    let dir = &scratch.0;
    std::fs::write(dir.join("web.tar"), docker_archive(&web(), false)).unwrap();
    write_oci_layout(&worker(), true, &dir.join("worker"));
    let busybox_diff = format!("sha256:{}", sha256_hex(&store_layer(BUSYBOX)));

    let out = ok(&inspect(dir, &["web.tar", "worker"]));
    assert!(out.starts_with("web:1.0\n  source        web.tar (docker-archive)\n  architecture  amd64\n"), "{out}");
    assert!(out.contains("\nworker:2.0\n  source        worker (oci-layout)\n"), "{out}");
    assert!(
        out.contains("  Cmd           [\"/bin/sh\"]\n  Env           PATH=/bin\n  ExposedPorts  8080/tcp\n"),
        "{out}"
    );
    assert!(out.contains(&format!("    diff_id     {busybox_diff}\n    holds       /mini/store/{BUSYBOX}\n")), "{out}");
    assert!(out.contains("(customisation layer)\n"), "{out}");
    assert!(out.contains("    holds       bin etc tmp\n"), "{out}");
    assert!(out.contains(&format!("    holds       /mini/store/{APP}\n")), "{out}");
    let shared = &out[out.find("shared layers: ").expect("a shared section")..];
    assert!(shared.starts_with("shared layers: 2 layers, "), "{shared}");
    assert!(shared.contains(&format!("  {busybox_diff}  ")), "{shared}");
    assert!(shared.contains("    in          web:1.0, worker:2.0\n"), "{shared}");

    let doc: Value = serde_json::from_str(&ok(&inspect(dir, &["web.tar", "worker", "--json"]))).unwrap();
    let images = doc["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0]["format"], "docker-archive");
    assert_eq!(images[1]["tags"], json!(["worker:2.0"]));
    assert_eq!(images[1]["layers"][1]["storePaths"], json!([format!("/mini/store/{APP}")]));
    assert_eq!(images[1]["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(images[0]["layers"][1]["otherEntries"], json!(["bin", "etc", "tmp"]));
    let sizes =
        |i: usize| images[i]["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).sum::<u64>();
    assert_eq!(images[1]["totalSize"].as_u64(), Some(sizes(1)));
    let shared = doc["sharedLayers"].as_array().unwrap();
    assert_eq!(shared.len(), 2);
    assert_eq!(shared[0]["diffId"], json!(busybox_diff));
    assert_eq!(shared[0]["images"], json!([0, 1]));
    // The same input gives the same bytes.
    assert_eq!(
        ok(&inspect(dir, &["web.tar", "worker", "--json"])),
        ok(&inspect(dir, &["web.tar", "worker", "--json"]))
    );

    // A link to an image file is just the file; one image has no shared section.
    std::os::unix::fs::symlink(dir.join("web.tar"), dir.join("result")).unwrap();
    let out = ok(&inspect(dir, &["./result"]));
    assert!(out.starts_with("web:1.0\n  source        ./result (docker-archive)\n"), "{out}");
    assert!(!out.contains("shared layers"), "{out}");
}

#[test]
fn diff_finds_the_layers_a_registry_already_has() {
    let scratch = Scratch::new("inspect-diff");
    let dir = &scratch.0;
    std::fs::write(dir.join("web.tar"), docker_archive(&web(), false)).unwrap();
    write_oci_layout(&worker(), true, &dir.join("worker"));

    // worker has busybox and the customisation layer as web does, but
    // gzipped: the same content as other blobs. APP is new.
    let doc: Value = serde_json::from_str(&ok(&inspect(dir, &["--diff", "--json", "web.tar", "worker"]))).unwrap();
    let presence: Vec<&str> =
        doc["layers"].as_array().unwrap().iter().map(|l| l["presence"].as_str().unwrap()).collect();
    assert_eq!(presence, ["otherBlob", "new", "otherBlob"]);
    assert_eq!(doc["layers"][0]["inA"], json!(1));
    assert_eq!(doc["layers"][2]["inA"], json!(2));
    let app_blob = gzip(&store_layer(APP)).len() as u64;
    let config = worker().config.len() as u64;
    assert_eq!(doc["neededLayerSize"], json!(app_blob));
    assert_eq!(doc["neededSize"], json!(app_blob + config));
    let shown = ok(&inspect(dir, &["--diff", "web.tar", "worker"]));
    assert!(shown.starts_with("worker:2.0 against web:1.0\n  B             worker (oci-layout)\n"), "{shown}");
    assert!(shown.contains(&format!(" ({} bytes) for a registry holding A:\n", app_blob + config)), "{shown}");

    // Exactly two images, or a usage error naming what was given.
    for args in [&["web.tar"][..], &["web.tar", "worker", "web.tar"]] {
        let mut all = vec!["--diff"];
        all.extend_from_slice(args);
        let out = inspect(dir, &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let expected =
            format!("error: --diff compares exactly two images, A B; {} given: {}\n", args.len(), args.join(" "));
        assert_eq!(text(&out.stderr), expected);
        assert!(out.stdout.is_empty());
    }
}

/// Asserts that inspecting `name` (written with `bytes` unless `None`)
/// fails with exactly `error: '<name>' is not an image: <message...>`.
fn assert_not_an_image(dir: &Path, name: &str, message: &str) {
    let out = inspect(dir, &[name]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
    assert!(out.stdout.is_empty(), "{name}: printed {}", text(&out.stdout));
    let expected = format!("error: '{name}' is not an image: {message}");
    assert!(stderr.starts_with(&expected), "{name}:\n  got      {stderr:?}\n  expected {expected:?}");
    assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
}

#[test]
fn malformed_docker_archives_are_clear_errors() {
    let scratch = Scratch::new("inspect-bad-docker");
    let dir = &scratch.0;
    let web = web();
    let good = docker_archive(&web, false);
    let config_name = format!("{}.json", sha256_hex(&web.config));
    let names: Vec<String> = web.layers.iter().map(|l| format!("{}.tar", sha256_hex(l))).collect();
    let manifest =
        |layers: &[&str]| json!([{"Config": config_name, "RepoTags": ["web:1.0"], "Layers": layers}]).to_string();
    let random: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut tampered = web.layers[0].clone();
    let at = tampered.len() - 1100;
    tampered[at] ^= 0x20; // padding after the last file: still a readable tar
    let both = |first: &[u8], second: &[u8], m: &str| {
        tar_of(&[(&names[0], first), (&names[1], second), (&config_name, &web.config), ("manifest.json", m.as_bytes())])
    };
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        ("empty", Vec::new(), "the file is empty".into()),
        ("random", random, "bad header checksum at byte 0: not a tar archive".into()),
        (
            "no-manifest.tar",
            tar_of(&[("a.tar", &web.layers[0])]),
            "it holds no manifest.json (not a docker archive)".into(),
        ),
        ("not-json.tar", tar_of(&[("manifest.json", b"{\"Config\": ")]), "manifest.json is not JSON".into()),
        (
            "object.tar",
            tar_of(&[("manifest.json", br#"{"Config": "c.json"}"#)]),
            "manifest.json is not a list of images".into(),
        ),
        (
            "layers-not-strings.tar",
            tar_of(&[("manifest.json", br#"[{"Config": "c.json", "Layers": [{}]}]"#)]),
            "manifest.json: image 1's \"Layers\" is not a list of strings".into(),
        ),
        (
            "missing-layer.tar",
            tar_of(&[
                (&names[0], &web.layers[0]),
                (&config_name, &web.config),
                ("manifest.json", manifest(&[&names[0], &names[1]]).as_bytes()),
            ]),
            format!("layer 2 '{}' is listed in manifest.json but missing from the archive", names[1]),
        ),
        (
            "cut-in-layer-1.tar",
            good[..512 + web.layers[0].len() / 2 + 7].to_vec(),
            format!("cannot read past '{}': the archive is truncated", names[0]),
        ),
        (
            "cut-in-layer-2.tar",
            good[..1024 + web.layers[0].len() + web.layers[1].len() / 2 + 7].to_vec(),
            format!("cannot read past '{}': the archive is truncated", names[1]),
        ),
        (
            "misnamed-layer.tar",
            both(&tampered, &web.layers[1], &manifest(&[&names[0], &names[1]])),
            format!("layer 1 ('{}') hashes to sha256:{}, not to its name", names[0], sha256_hex(&tampered)),
        ),
        (
            "wrong-order.tar",
            both(&web.layers[0], &web.layers[1], &manifest(&[&names[1], &names[0]])),
            format!(
                "layer 1 ('{}') uncompresses to sha256:{}, but the config's diff_id is sha256:{}",
                names[1],
                sha256_hex(&web.layers[1]),
                sha256_hex(&web.layers[0])
            ),
        ),
        (
            "too-few-layers.tar",
            both(&web.layers[0], &web.layers[1], &manifest(&[&names[0]])),
            "it has 1 layer(s) but its config lists 2 diff_id(s)".into(),
        ),
    ];
    for (name, bytes, message) in &cases {
        std::fs::write(dir.join(name), bytes).unwrap();
        assert_not_an_image(dir, name, message);
    }
    // A gzip-compressed archive cut short.
    let gz = gzip(&good);
    std::fs::write(dir.join("cut.tar.gz"), &gz[..gz.len() / 2]).unwrap();
    assert_not_an_image(dir, "cut.tar.gz", "");
    // A name that is neither a file nor an installable.
    let out = inspect(dir, &["absent.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: reading 'absent.tar': No such file"), "{}", text(&out.stderr));
}

#[test]
fn malformed_oci_layouts_are_clear_errors() {
    let scratch = Scratch::new("inspect-bad-oci");
    let dir = &scratch.0;
    let worker = worker();
    let fresh = |name: &str| {
        write_oci_layout(&worker, true, &dir.join(name));
        dir.join(name)
    };
    let blob =
        |d: &Path, digest: &Value| d.join("blobs/sha256").join(digest.as_str().unwrap().trim_start_matches("sha256:"));
    let manifest_of = |d: &Path| -> (PathBuf, Value) {
        let index: Value = serde_json::from_slice(&std::fs::read(d.join("index.json")).unwrap()).unwrap();
        let path = blob(d, &index["manifests"][0]["digest"]);
        let manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        (path, manifest)
    };

    std::fs::create_dir_all(dir.join("neither/sub")).unwrap();
    std::fs::write(dir.join("neither/readme"), "hi").unwrap();
    assert_not_an_image(dir, "neither", "a directory without index.json is not an OCI image layout");

    let d = fresh("no-index");
    std::fs::remove_file(d.join("index.json")).unwrap();
    assert_not_an_image(dir, "no-index", "a directory without index.json is not an OCI image layout");

    let d = fresh("bad-index");
    std::fs::write(d.join("index.json"), "{\"manifests\": 3}").unwrap();
    assert_not_an_image(dir, "bad-index", "index.json has no \"manifests\" list");

    let d = fresh("no-manifest-blob");
    std::fs::remove_file(manifest_of(&d).0).unwrap();
    assert_not_an_image(dir, "no-manifest-blob", "index.json's manifest 1's blob sha256:");

    let d = fresh("no-layer-blob");
    let (_, manifest) = manifest_of(&d);
    let layer = &manifest["layers"][1]["digest"];
    std::fs::remove_file(blob(&d, layer)).unwrap();
    assert_not_an_image(
        dir,
        "no-layer-blob",
        &format!("layer 2 ({}): the blob is missing from blobs/sha256", layer.as_str().unwrap()),
    );

    let d = fresh("no-config-blob");
    let (_, manifest) = manifest_of(&d);
    std::fs::remove_file(blob(&d, &manifest["config"]["digest"])).unwrap();
    assert_not_an_image(dir, "no-config-blob", "the config's blob sha256:");

    let d = fresh("changed-layer");
    let (_, manifest) = manifest_of(&d);
    let path = blob(&d, &manifest["layers"][0]["digest"]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4] ^= 1; // the gzip header's mtime: the same layer, other bytes
    std::fs::write(&path, &bytes).unwrap();
    assert_not_an_image(
        dir,
        "changed-layer",
        &format!("layer 1 ({}): the blob hashes to sha256:", manifest["layers"][0]["digest"].as_str().unwrap()),
    );

    let d = fresh("truncated-layer");
    let (_, manifest) = manifest_of(&d);
    let path = blob(&d, &manifest["layers"][0]["digest"]);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_not_an_image(dir, "truncated-layer", "layer 1 (sha256:");

    let d = fresh("hostile-digest");
    let mut index: Value = serde_json::from_slice(&std::fs::read(d.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"] = json!("sha256:../../../../etc/passwd");
    std::fs::write(d.join("index.json"), index.to_string()).unwrap();
    assert_not_an_image(
        dir,
        "hostile-digest",
        "index.json's manifest 1 has the digest 'sha256:../../../../etc/passwd'; only sha256:<hex> is supported",
    );
}

// ---------------------------------------------------------------------------
// Images built by mini, through installables

const FLAKE: &str = r#"{ pkgs, ... }:
let
  inherit (pkgs) busybox runCommand dockerTools;
  script = name: line: runCommand name { } ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\necho %s\n' '${line}' > $out/bin/${name}
    chmod +x $out/bin/${name}
  '';
  hello = script "hello" "hello";
  worker = script "worker" "working";
in
{
  web = dockerTools.buildLayeredImage {
    name = "web";
    tag = "1.0";
    contents = [ busybox ];
    config = { Cmd = [ "${hello}/bin/hello" ]; Env = [ "PATH=/bin" ]; ExposedPorts = { "80/tcp" = { }; }; };
  };
  worker = dockerTools.buildLayeredImage {
    name = "worker";
    tag = "2.0";
    format = "oci";
    compressor = "gzip";
    contents = [ busybox ];
    config.Cmd = [ "${worker}/bin/worker" ];
  };
}
"#;

#[test]
fn built_images_are_inspected_through_installables() {
    let scratch = Scratch::new("inspect-built");
    let dir = &scratch.0;
    std::fs::write(dir.join("flake.nixlike"), FLAKE).unwrap();
    let store = dir.join("store");
    let out = ok(&inspect(dir, &[".#web", ".#worker"]));
    let busybox = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("holds").map(str::trim).filter(|p| p.ends_with("-busybox")))
        .unwrap_or_else(|| panic!("no busybox layer:\n{out}"))
        .to_string();
    assert!(out.starts_with("web:1.0\n  source        /mini/store/"), "{out}");
    assert!(out.contains(" (oci-layout)\n"), "{out}");
    let shared = &out[out.find("shared layers: ").expect("a shared section")..];
    assert!(shared.contains(&format!("    holds       {busybox}\n")), "{shared}");
    assert!(shared.contains("    in          web:1.0, "), "{shared}");

    let doc: Value = serde_json::from_str(&ok(&inspect(dir, &[".#web", ".#worker", "--json"]))).unwrap();
    let images = doc["images"].as_array().unwrap();
    assert_eq!(images[0]["config"]["ExposedPorts"], json!({"80/tcp": {}}));
    assert!(images[1]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"));
    let last = images[0]["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["storePaths"], json!([]), "the customisation layer is last");
    assert!(last["otherEntries"].as_array().unwrap().contains(&json!("bin")));

    // The out-link of a build is read as the file it leads to.
    ok(&mini(&store, dir, &["build", ".#web"]));
    let linked: Value = serde_json::from_str(&ok(&inspect(dir, &["./result", "--json"]))).unwrap();
    assert_eq!(linked["images"][0]["layers"], images[0]["layers"]);

    // skopeo reads the same blobs, digests and sizes.
    if have(&["skopeo"]) {
        for (i, transport) in [(0, "docker-archive"), (1, "oci")] {
            let source = images[i]["source"].as_str().unwrap();
            let physical = store.join("store").join(source.trim_start_matches("/mini/store/"));
            let raw = Command::new("skopeo")
                .args(["inspect", "--raw"])
                .arg(format!("{transport}:{}", physical.display()))
                .output()
                .unwrap();
            assert!(raw.status.success(), "skopeo: {}", text(&raw.stderr));
            let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
            let theirs: Vec<(Value, Value)> = manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l["digest"].clone(), l["size"].clone()))
                .collect();
            let ours: Vec<(Value, Value)> = images[i]["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l["digest"].clone(), l["size"].clone()))
                .collect();
            assert_eq!(ours, theirs, "{transport}");
        }
    }

    // A built output that is not an image is named by its store path.
    std::fs::write(
        dir.join("flake.nixlike"),
        "{ pkgs, ... }: { plain = pkgs.runCommand \"plain\" { } \"mkdir $out\"; }",
    )
    .unwrap();
    let out = inspect(dir, &[".#plain"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: '/mini/store/")
            && last.ends_with("-plain' is not an image: a directory without index.json is not an OCI image layout"),
        "{stderr}"
    );
}

/// Two versions of an app on busybox and a library: all they do not share
/// is the app and the config.
const VERSIONS_FLAKE: &str = r#"{ pkgs, ... }:
let
  inherit (pkgs) busybox runCommand dockerTools;
  lib = runCommand "lib" { } "mkdir -p $out/lib; echo library > $out/lib/data";
  app = version: runCommand "app-${version}" { } ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\ncat ${lib}/lib/data\necho ${version}\n' > $out/bin/app
    chmod +x $out/bin/app
  '';
  image = version: dockerTools.buildLayeredImage {
    name = "app";
    tag = version;
    contents = [ busybox ];
    config.Cmd = [ "${app version}/bin/app" ];
  };
in
{
  v1 = image "1";
  v2 = image "2";
}
"#;

/// A docker-archive's config and layer blobs (as its manifest names them),
/// each as the SHA-256 of its bytes and its size.
fn archive_blobs(archive: &Path) -> ((String, u64), Vec<(String, u64)>) {
    let mut blobs = std::collections::BTreeMap::new();
    let mut manifest = Value::Null;
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        if name == "manifest.json" {
            manifest = serde_json::from_slice(&bytes).unwrap();
        }
        blobs.insert(name, (sha256_hex(&bytes), bytes.len() as u64));
    }
    let member = |v: &Value| blobs[v.as_str().unwrap()].clone();
    (member(&manifest[0]["Config"]), manifest[0]["Layers"].as_array().unwrap().iter().map(member).collect())
}

#[test]
fn diff_of_two_built_versions_counts_their_real_blobs() {
    let scratch = Scratch::new("inspect-diff-built");
    let dir = &scratch.0;
    std::fs::write(dir.join("flake.nixlike"), VERSIONS_FLAKE).unwrap();
    let store = dir.join("store");
    let built = |attr: &str| {
        let out = ok(&mini(&store, dir, &["build", attr, "--no-link", "--print-out-paths"]));
        store.join("store").join(out.trim().trim_start_matches("/mini/store/"))
    };
    let ((a_config, _), a_layers) = archive_blobs(&built(".#v1"));
    let ((b_config, b_config_size), b_layers) = archive_blobs(&built(".#v2"));
    let mut counted = std::collections::BTreeSet::new();
    let expected: u64 = b_layers
        .iter()
        .filter(|(digest, _)| !a_layers.iter().any(|(a, _)| a == digest) && counted.insert(digest.clone()))
        .map(|(_, size)| size)
        .sum::<u64>()
        + if a_config == b_config { 0 } else { b_config_size };

    let doc: Value = serde_json::from_str(&ok(&inspect(dir, &["--diff", "--json", ".#v1", ".#v2"]))).unwrap();
    assert_eq!(doc["neededSize"], json!(expected));
    assert_eq!(doc["configInA"], json!(false));
    // Everything but the app's layer is in A, blob for blob: busybox, the
    // library and the customisation layer (the same contents).
    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    for layer in layers {
        let is_app = layer["storePaths"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().ends_with("-app-2"));
        assert_eq!(layer["presence"], json!(if is_app { "new" } else { "sameBlob" }), "{layer}");
    }
    assert_eq!(doc["sharedLayers"], json!(3));
    let app_size = layers.iter().find(|l| l["presence"] == "new").unwrap()["size"].as_u64().unwrap();
    assert_eq!(doc["neededLayerSize"], json!(app_size));
    assert_eq!(expected, app_size + b_config_size);
    let text = ok(&inspect(dir, &["--diff", ".#v1", ".#v2"]));
    assert!(text.starts_with("app:2 against app:1\n"), "{text}");
    assert!(text.contains("  shared        3 of 4 layers, "), "{text}");
    assert!(text.contains(&format!(" ({expected} bytes) for a registry holding A:\n")), "{text}");
}
