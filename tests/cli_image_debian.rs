//! `dockerTools` images on a Debian root (`fromDebian`) end to end: a root
//! made by hand (a `runCommand` laying out `usr/bin` with a static busybox,
//! the usr-merge links and a dpkg status file) is the image's bottom layer
//! at `/`; umoci unpacks it and runc runs programs from `/usr/bin` and,
//! through the root's `bin -> usr/bin`, a `contents` package's. Images on
//! the same root share its layer; the same recipe gives the same bytes in
//! another store; a streamed image streams the same archive.
//!
//! Needs skopeo, umoci and runc for the container part (skipped with a
//! message when missing, except under `CI=true`) and the static busybox.

use std::path::{Path, PathBuf};

mod common;
use common::clients::{have, image_ref, json, run, run_container, unpack_bundle};
use common::{have_busybox, mini_at as mini, ok, Scratch};

const FLAKE: &str = r#"{ pkgs, ... }:
let
  inherit (pkgs) busybox runCommand dockerTools;
  # A Debian root by hand: what pkgs.debian.root makes, in miniature.
  root = runCommand "debian-root" { } ''
    mkdir -p $out/usr/bin $out/usr/lib $out/var/lib/dpkg $out/etc
    cp ${busybox}/bin/busybox $out/usr/bin/busybox
    ln -s busybox $out/usr/bin/sh
    ln -s busybox $out/usr/bin/ls
    ln -s busybox $out/usr/bin/cat
    ln -s busybox $out/usr/bin/readlink
    printf '#!/bin/sh\necho hello from usr/bin\n' > $out/usr/bin/hello
    chmod +x $out/usr/bin/hello
    printf 'Package: hello\nStatus: install ok installed\nVersion: 1.0\n\n' > $out/var/lib/dpkg/status
    echo 12.0 > $out/etc/debian_version
    ln -s usr/bin $out/bin
    ln -s usr/lib $out/lib
  '';
  greet = runCommand "greet" { } ''
    mkdir -p $out/bin
    printf '#!/bin/sh\necho greetings through the bin link\n' > $out/bin/greet
    chmod +x $out/bin/greet
  '';
  image = args: dockerTools.buildLayeredImage ({ fromDebian = root; tag = "v1"; } // args);
in
{
  plain = image { name = "plain"; config.Cmd = [ "/usr/bin/hello" ]; };
  greeter = image {
    name = "greeter";
    contents = [ greet ];
    config.Cmd = [ "/bin/sh" "-c" "hello; greet; readlink /bin; cat /var/lib/dpkg/status" ];
  };
  single = dockerTools.buildImage { name = "single"; tag = "v1"; fromDebian = root; contents = [ greet ]; };
  streamed = dockerTools.streamLayeredImage { name = "greeter"; tag = "v1"; fromDebian = root; contents = [ greet ];
    config.Cmd = [ "/bin/sh" "-c" "hello; greet; readlink /bin; cat /var/lib/dpkg/status" ]; };
  tooFew = image { name = "few"; maxLayers = 2; };
}
"#;

struct Setup {
    scratch: Scratch,
    dir: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Option<Setup> {
        let scratch = Scratch::new(name);
        if !have_busybox(&scratch) {
            return None;
        }
        let dir = scratch.0.join("flake");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("flake.nixlike"), FLAKE).unwrap();
        Some(Setup { scratch, dir })
    }

    fn store(&self, name: &str) -> PathBuf {
        self.scratch.0.join(name)
    }

    /// Builds `attr` in the store `store`: its store path and where it is on disk.
    fn build(&self, store: &str, attr: &str) -> (String, PathBuf) {
        let store = self.store(store);
        let out = ok(&mini(&store, &self.dir, &["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"]));
        let base = out.strip_prefix("/mini/store/").unwrap_or_else(|| panic!("not a store path: {out}")).to_string();
        (out, store.join("store").join(base))
    }

    fn mini(&self, store: &str, args: &[&str]) -> std::process::Output {
        mini(&self.store(store), &self.dir, args)
    }
}

/// The OCI layout `DIR/NAME` with the docker-archive `archive` as `v1`.
fn oci_layout(dir: &Path, name: &str, archive: &Path) -> PathBuf {
    let layout = dir.join(name);
    run("skopeo", &["copy", &image_ref("docker-archive", archive, None), &image_ref("oci", &layout, Some("v1"))]);
    layout
}

#[test]
fn the_root_is_at_slash_and_runs_under_runc() {
    let Some(s) = Setup::new("debian-runc") else { return };
    let (_, greeter) = s.build("store", "greeter");
    let inspected = ok(&s.mini("store", &["image", "inspect", greeter.to_str().unwrap()]));
    assert!(inspected.contains("(Debian root)") && inspected.contains("-debian-root at /"), "{inspected}");
    if !have(&["skopeo", "umoci", "runc"]) {
        return;
    }
    let work = &s.scratch.0;
    let layout = oci_layout(work, "greeter-oci", &greeter);
    let bundle = unpack_bundle(work, &layout, "v1", "greeter-tree", &[]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_link(rootfs.join("bin")).unwrap(), Path::new("usr/bin"));
    assert!(rootfs.join("usr/bin/busybox").is_file());
    assert!(std::fs::read_to_string(rootfs.join("var/lib/dpkg/status")).unwrap().starts_with("Package: hello\n"));
    let greet = std::fs::read_link(rootfs.join("usr/bin/greet")).unwrap();
    assert!(greet.to_str().unwrap().ends_with("-greet/bin/greet"), "{greet:?}");
    // Only greet is under /mini/store: the root is not (nothing refers to it).
    let stored: Vec<String> = std::fs::read_dir(rootfs.join("mini/store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(stored.len() == 1 && stored[0].ends_with("-greet"), "{stored:?}");
    let out = run_container(work, &layout, "v1", "greeter");
    assert_eq!(
        out,
        "hello from usr/bin\ngreetings through the bin link\nusr/bin\nPackage: hello\nStatus: install ok installed\nVersion: 1.0\n\n"
    );
    let (_, plain) = s.build("store", "plain");
    let plain_layout = oci_layout(work, "plain-oci", &plain);
    assert_eq!(run_container(work, &plain_layout, "v1", "plain"), "hello from usr/bin\n");
}

#[test]
fn images_on_one_root_share_its_layer_and_build_alike_anywhere() {
    let Some(s) = Setup::new("debian-shared") else { return };
    let (plain_path, plain) = s.build("store", "plain");
    let (_, greeter) = s.build("store", "greeter");
    let (_, single) = s.build("store", "single");
    let both = ok(&s.mini(
        "store",
        &["image", "inspect", "--json", plain.to_str().unwrap(), greeter.to_str().unwrap(), single.to_str().unwrap()],
    ));
    let summary = json(&both);
    let first_layers: Vec<&serde_json::Value> =
        summary["images"].as_array().unwrap().iter().map(|image| &image["layers"][0]).collect();
    for layer in &first_layers {
        assert_eq!(layer["diffId"], first_layers[0]["diffId"], "{both}");
        assert!(layer["debianRoot"].as_str().unwrap().ends_with("-debian-root"), "{both}");
    }
    assert_eq!(summary["images"][2]["layers"].as_array().unwrap().len(), 2, "buildImage: the root and one layer");
    // The same recipe, another store: the same output, byte for byte.
    let (again_path, again) = s.build("other-store", "plain");
    assert_eq!(plain_path, again_path);
    assert_eq!(std::fs::read(&plain).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn a_streamed_image_streams_the_archive_the_builder_writes() {
    let Some(s) = Setup::new("debian-stream") else { return };
    let (_, greeter) = s.build("store", "greeter");
    let (_, streamed) = s.build("store", "streamed");
    let description = json(&std::fs::read_to_string(streamed.join("image.json")).unwrap());
    assert!(description["layers"][0]["debianRoot"].as_str().unwrap().ends_with("-debian-root"), "{description}");
    let out = s.mini("store", &["image", "stream", streamed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert_eq!(out.stdout, std::fs::read(&greeter).unwrap());
}

#[test]
fn too_few_layers_for_a_root_are_refused() {
    let Some(s) = Setup::new("debian-few") else { return };
    let out = s.mini("store", &["build", ".#tooFew", "--no-link"]);
    let stderr = common::failed(&out);
    assert!(stderr.contains("maxLayers must be at least 3 with fromDebian"), "{stderr}");
}
