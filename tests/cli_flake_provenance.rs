//! Image provenance never records where things are on this machine: the
//! same flake whose `path:` input lives in two places gives the same
//! image, byte for byte, and its labels name the input's content hash but
//! not its location. Needs a static busybox (required under CI, else
//! skipped).

use std::path::{Path, PathBuf};

mod common;
use common::clients::json;
use common::{have_busybox, mini_at, ok, Scratch};

/// A flake taking the toolchain directory at `toolchain` as an input.
fn flake(toolchain: &Path) -> String {
    format!(
        r#"{{
  inputs.go = {{ url = "path:{}"; flake = false; }};
  outputs = {{ pkgs, go, ... }}: {{
    docker = pkgs.dockerTools.buildLayeredImage {{
      name = "app";
      contents = [ pkgs.busybox ];
      config.Cmd = [ "cat" "${{go}}/VERSION" ];
    }};
  }};
}}
"#,
        toolchain.display()
    )
}

/// Locks and builds the flake in `dir` (whose input is at `toolchain`):
/// the image's physical path.
fn image(s: &Scratch, dir: &str, toolchain: &str) -> PathBuf {
    let store = s.0.join("store");
    s.write(&format!("{toolchain}/VERSION"), "go1.27\n");
    s.write(&format!("{dir}/flake.nixlike"), &flake(&s.0.join(toolchain)));
    let proj = s.0.join(dir);
    ok(&mini_at(&store, &proj, &["lock"]));
    let out = ok(&mini_at(&store, &proj, &["build", ".#docker", "--no-link", "--print-out-paths"]));
    store.join("store").join(out.strip_prefix("/mini/store/").expect("a store path"))
}

#[test]
fn an_input_in_two_places_gives_the_same_image() {
    let s = Scratch::new("provenance-paths");
    if !have_busybox(&s) {
        return;
    }
    let here = image(&s, "one/app", "opt/go-toolchain");
    let there = image(&s, "two/app", "srv/elsewhere/go");
    assert_eq!(here, there, "the same derivation");
    assert_eq!(std::fs::read(&here).unwrap(), std::fs::read(&there).unwrap(), "the same bytes");

    let out = ok(&mini_at(&s.0.join("store"), &s.0, &["image", "inspect", "--json", here.to_str().unwrap()]));
    let doc = json(&out);
    let input = doc["images"][0]["provenance"]["inputs"]["go"].as_str().unwrap_or_default().to_string();
    assert!(input.starts_with("narHash=blake3:"), "the content hash alone: {input}");
    let labels = doc["images"][0]["config"]["Labels"].to_string();
    assert!(!labels.contains(&s.0.display().to_string()), "no local path in the labels: {labels}");
}
