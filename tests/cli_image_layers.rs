//! Layers end to end. The layer digest cache: a store path's layer digest
//! is recorded once and its layer is the same bytes in every image holding
//! it; rebuilding an image after one package changed records only that
//! package; `mini gc` drops the records of deleted paths. Layering:
//! `minLayerSize` folds small unshared paths, `maxLayers` merges the least
//! popular, and the build log names every path either moved.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

mod common;
use common::{mini_at as mini, ok, Scratch};

/// Three packages and two images of them; `c_text` is what package c holds.
fn flake(dir: &Path, c_text: &str) {
    let source = format!(
        r#"{{ pkgs, ... }}:
rec {{
  pkg = name: text: pkgs.runCommand name {{ inherit text; }} "mkdir -p $out/share; echo \"$text\" > $out/share/${{name}}";
  a = pkg "a" "alpha";
  b = pkg "b" "beta";
  c = pkg "c" "{c_text}";
  image = name: contents: derivation {{
    name = "${{name}}.tar"; system = "x86_64-linux"; builder = "builtin:image";
    imageName = name; imageTag = "1"; inherit contents;
  }};
  abc = image "abc" [ a b c ];
  ab = image "ab" [ a b ];
  # One layer holding a (and the customisation entries), then a layered
  # image whose one store-path layer holds a alone.
  singleA = derivation {{
    name = "single-a.tar"; system = "x86_64-linux"; builder = "builtin:image";
    imageName = "single-a"; imageTag = "1"; layering = "single"; contents = [ a ];
  }};
  layeredA = image "layered-a" [ a ];
}}
"#
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("flake.nixlike"), source).unwrap();
}

/// Layer digest records: file name → (inode, mtime in ns).
fn cached_records(store: &Path) -> BTreeMap<String, (u64, i64)> {
    std::fs::read_dir(store.join("layers/v3"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| {
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (meta.ino(), meta.mtime() * 1_000_000_000 + meta.mtime_nsec()),
            )
        })
        .collect()
}

/// The layers' diff_ids an image's config lists, bottom first.
fn layer_digests(archive: &Path) -> Vec<String> {
    let mut documents: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            documents.insert(name, serde_json::from_str(&text).unwrap());
        }
    }
    let manifest = &documents["manifest.json"];
    let config = &documents[manifest[0]["Config"].as_str().unwrap()];
    config["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
}

fn build(store: &Path, dir: &Path, attr: &str) -> PathBuf {
    let out = ok(&mini(store, dir, &["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"]));
    store.join("store").join(out.trim_start_matches("/mini/store/"))
}

#[test]
fn layer_digests_are_recorded_once_and_layers_shared() {
    let s = Scratch::new("image-cache");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(&dir, "gamma");
    let abc = layer_digests(&build(&store, &dir, "abc"));
    let first = cached_records(&store);
    assert_eq!(first.len(), 3, "one record per store path: {first:?}");
    // A second image of two of the same paths has the same layers, and
    // nothing new is recorded.
    let ab = layer_digests(&build(&store, &dir, "ab"));
    assert_eq!(cached_records(&store), first);
    for digest in &ab[..2] {
        assert!(abc.contains(digest), "layer {digest} of ab is not in abc: {abc:?}");
    }
    // Changing c records c alone; a's and b's records are untouched.
    flake(&dir, "GAMMA");
    let changed = layer_digests(&build(&store, &dir, "abc"));
    let second = cached_records(&store);
    let fresh: Vec<&String> = second.keys().filter(|k| !first.contains_key(*k)).collect();
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert!(fresh[0].ends_with("-c.json"), "{fresh:?}");
    for (name, stamp) in &first {
        assert_eq!(second.get(name), Some(stamp), "{name} was recorded again");
    }
    let unchanged = changed.iter().filter(|d| abc.contains(d)).count();
    assert_eq!(unchanged, 2, "a and b keep their layers: {abc:?} vs {changed:?}");
}

#[test]
fn gc_drops_the_layers_of_deleted_paths() {
    let s = Scratch::new("image-cache-gc");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(&dir, "gamma");
    build(&store, &dir, "abc");
    assert_eq!(cached_records(&store).len(), 3);
    // Nothing is rooted (--no-link): everything goes, layers included.
    let report = ok(&mini(&store, &dir, &["gc"]));
    assert!(report.contains("bytes of cached image layers and push blobs freed"), "{report}");
    assert!(cached_records(&store).is_empty());
}

#[test]
fn gc_keeps_push_blobs_of_live_layers_only() {
    let s = Scratch::new("image-cache-push-gc");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(&dir, "gamma");
    // Rooted: the image and its layers stay.
    ok(&mini(&store, &dir, &["build", ".#abc"]));
    let record = std::fs::read_dir(store.join("layers/v3"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .expect("a layer record");
    let text = std::fs::read_to_string(record.path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let live = json["sha256"].as_str().unwrap().to_string();
    let blobs = store.join("push-blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let dead = "0".repeat(64);
    for name in [format!("{live}.gz"), format!("{live}.gz.json"), format!("{dead}.gz"), format!("{dead}.gz.json")] {
        std::fs::write(blobs.join(name), "x").unwrap();
    }
    ok(&mini(&store, &dir, &["gc"]));
    let left: Vec<String> =
        std::fs::read_dir(&blobs).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(left.contains(&format!("{live}.gz")) && left.contains(&format!("{live}.gz.json")), "{left:?}");
    assert!(!left.iter().any(|n| n.starts_with(&dead)), "{left:?}");
}

/// A closure with one big path, one small path two others refer to, and
/// small paths nothing shares; `small` folds the unshared small ones,
/// `few` has room for two store-path layers.
const SIZED_FLAKE: &str = r#"{ pkgs, ... }:
let
  inherit (pkgs) runCommand dockerTools;
  # 2^k bytes of "x" in $out/data.
  sized = name: k: runCommand name { } ''
    mkdir $out; s=x; i=0
    while [ $i -lt ${toString k} ]; do s=$s$s; i=$((i+1)); done
    printf %s "$s" > $out/data
  '';
  shared = sized "shared" 3;
  user = name: runCommand name { } "mkdir $out; echo ${shared} > $out/ref";
  contents = [ (sized "big" 16) (sized "small1" 2) (sized "small2" 3) (sized "small3" 4) (user "user1") (user "user2") ];
in
{
  small = dockerTools.buildLayeredImage { name = "small"; inherit contents; minLayerSize = 4096; };
  few = dockerTools.buildLayeredImage { name = "few"; inherit contents; maxLayers = 3; };
}
"#;

/// Each layer's store-path names (without hashes), bottom first.
fn layer_names(image: &serde_json::Value) -> Vec<Vec<String>> {
    image["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let mut names: Vec<String> = l["storePaths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().trim_start_matches("/mini/store/")[33..].to_string())
                .collect();
            names.sort();
            names
        })
        .collect()
}

#[test]
fn small_unshared_paths_fold_and_merges_past_max_layers_are_logged() {
    let s = Scratch::new("image-layer-sizes");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("flake.nixlike"), SIZED_FLAKE).unwrap();
    let doc = ok(&mini(&store, &dir, &["image", "inspect", "--json", ".#small", ".#few"]));
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let unshared = ["small1", "small2", "small3", "user1", "user2"];

    // shared is small but two paths refer to it: its own layer, at the
    // bottom. big is big. The small unshared ones share the next layer;
    // the customisation layer is last.
    let small = layer_names(&doc["images"][0]);
    assert_eq!(small, [names(&["shared"]), names(&["big"]), names(&unshared), vec![]], "{small:?}");
    let log = ok(&mini(&store, &dir, &["log", ".#small"]));
    assert!(
        log.contains("minLayerSize 4096: 5 unshared paths under 4.0 KiB (")
            && log.contains(") share layer 3: small1 small2 small3 user1 user2\n"),
        "{log}"
    );

    // maxLayers = 3: two store-path layers, the second holding everything
    // but the most popular path, every one of them named in the log.
    let few = layer_names(&doc["images"][1]);
    let rest = ["big", "small1", "small2", "small3", "user1", "user2"];
    assert_eq!(few, [names(&["shared"]), names(&rest), vec![]], "{few:?}");
    let log = ok(&mini(&store, &dir, &["log", ".#few"]));
    assert!(
        log.contains("maxLayers 3: 6 paths (")
            && log.contains(") share layer 2: big small1 small2 small3 user1 user2\n"),
        "{log}"
    );
}

#[test]
fn a_single_layer_image_records_no_store_path_layer_digest() {
    // buildImage's one layer also holds the customisation entries: its
    // digest is not the digest of its paths' layer, so it is not recorded
    // (a record under the paths' key would make a later layered image of
    // the same paths fail).
    let s = Scratch::new("image-single-then-layered");
    let store = s.0.join("store");
    let dir = s.0.join("flake");
    flake(&dir, "gamma");
    let single = layer_digests(&build(&store, &dir, "singleA"));
    assert_eq!(single.len(), 1);
    assert!(!store.join("layers/v3").exists() || cached_records(&store).is_empty(), "{:?}", cached_records(&store));
    let layered = layer_digests(&build(&store, &dir, "layeredA"));
    assert_eq!(layered.len(), 2, "a's layer and the customisation layer: {layered:?}");
    assert_ne!(layered[0], single[0]);
    assert_eq!(cached_records(&store).len(), 1);
}
