//! The examples, end to end, as a user meets them: the quotes service's
//! image is built, copied with skopeo, unpacked with umoci and run with
//! runc, and answers an HTTP GET with one of its quotes; rebuilding it in a
//! fresh store gives the same archive digest; the monorepo's images share
//! their busybox layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::clients::have;
use common::{free_port, http_get, mini_at as mini, oci_layout, ok, while_under_runc, Scratch};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds `installable` into `store` and returns the output on disk.
fn build(store: &Path, installable: &str) -> PathBuf {
    let out = ok(&mini(store, repo(), &["build", installable, "--no-link", "--print-out-paths"]));
    store.join("store").join(out.trim_start_matches("/mini/store/"))
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    format!("{:x}", sha2::Sha256::digest(&bytes))
}

#[test]
fn the_quotes_image_serves_a_quote_under_runc() {
    if !have(&["skopeo", "umoci", "runc"]) {
        return;
    }
    let s = Scratch::new("example-quotes");
    let store = s.0.join("store");
    let archive = build(&store, "./examples/quotes#docker");
    let (layout, config) = oci_layout(&s.0, &archive);
    assert_eq!(config["config"]["ExposedPorts"]["8080/tcp"], serde_json::json!({}));

    let port = free_port();
    let (response, _) =
        while_under_runc(&s.0, &layout, "quotes", port, || http_get(port, "/", Duration::from_secs(15)));
    let response = response.expect("the container never answered on its port");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string();
    let quotes = std::fs::read_to_string(repo().join("examples/quotes/quotes.txt")).unwrap();
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "{response}");
    assert!(quotes.lines().any(|q| q == body), "not a quote: {body:?}\n{response}");
}

#[test]
fn a_fresh_store_rebuilds_the_same_image() {
    let s = Scratch::new("example-fresh");
    let first = sha256_of(&build(&s.0.join("store-a"), "./examples/quotes#docker"));
    let second = sha256_of(&build(&s.0.join("store-b"), "./examples/quotes#docker"));
    assert_eq!(first, second);
}

/// The layers of a docker-archive by the store paths they hold.
fn layers_by_path(store: &Path, archive: &Path) -> BTreeMap<String, String> {
    let out = ok(&mini(store, repo(), &["image", "inspect", "--json", &archive.display().to_string()]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut layers = BTreeMap::new();
    for layer in json["images"][0]["layers"].as_array().unwrap() {
        for path in layer["storePaths"].as_array().unwrap() {
            layers.insert(path.as_str().unwrap().to_string(), layer["diffId"].as_str().unwrap().to_string());
        }
    }
    layers
}

#[test]
fn the_monorepo_images_share_the_busybox_layer() {
    let s = Scratch::new("example-monorepo");
    let store = s.0.join("store");
    let mut busybox_layers = Vec::new();
    for service in ["greeter", "clock", "echo"] {
        let archive = build(&store, &format!("./examples/monorepo#{service}-image"));
        let layers = layers_by_path(&store, &archive);
        let (_, digest) = layers.iter().find(|(p, _)| p.ends_with("-busybox")).expect("a busybox layer");
        busybox_layers.push(digest.clone());
    }
    assert!(busybox_layers.windows(2).all(|w| w[0] == w[1]), "{busybox_layers:?}");
}
