//! The image builder on a Debian root (`fromDebian`), run in process on a
//! small hand-made root: where its tree lands, what the customisation layer
//! does with the root's usr-merge links, which layers images share, and
//! what is refused.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};

use mini_store::derivation::{Derivation, Output};
use mini_store::store_path::PathKind;
use sha2::Digest as _;

use super::*;
use crate::layer_cache::Key;

/// A temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mini-image-debian-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        mini_store::store::discard_tree(&self.0);
    }
}

/// A Debian root in miniature: `usr/bin/hello`, the usr-merge links, the
/// dpkg database, and one absolute link that must not be routed.
fn fake_root(dir: &Path) -> PathBuf {
    let root = dir.join("root-src");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("usr/bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    fs::set_permissions(root.join("usr/bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("var/lib/dpkg/status"), "Package: hello\nStatus: install ok installed\n\n").unwrap();
    fs::write(root.join("etc/debian_version"), "12.0\n").unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    symlink("/usr/sbin", root.join("sbin")).unwrap();
    root
}

/// A package for `contents`: `bin/sh`, `lib/libx.so` and `share/doc`.
fn fake_package(dir: &Path) -> PathBuf {
    let package = dir.join("busybox-src");
    fs::create_dir_all(package.join("bin")).unwrap();
    fs::create_dir_all(package.join("lib")).unwrap();
    fs::create_dir_all(package.join("share/doc")).unwrap();
    fs::write(package.join("bin/sh"), "sh").unwrap();
    fs::write(package.join("lib/libx.so"), "so").unwrap();
    fs::write(package.join("share/doc/README"), "readme").unwrap();
    package
}

/// Builds the image derivation with `env` (its inputs `inputs`) into
/// `out`; the error's message on failure.
fn build(store: &Store, env: &[(&str, &str)], inputs: &[&StorePath], out: &Path) -> std::result::Result<(), String> {
    let digest = blake3::hash(format!("{env:?}").as_bytes());
    let kind = PathKind::Source { references: &[] };
    let out_path = StorePath::compute(&kind, "sha256", digest.as_bytes(), "image").unwrap();
    let drv_path = StorePath::compute(&kind, "sha256", digest.as_bytes(), "image.drv").unwrap();
    let drv = Derivation {
        name: "image".into(),
        outputs: BTreeMap::from([("out".into(), Output { path: Some(out_path), fixed: None })]),
        input_drvs: BTreeMap::new(),
        input_srcs: inputs.iter().map(|p| (*p).clone()).collect(),
        system: "x86_64-linux".into(),
        builder: "builtin:image".into(),
        args: Vec::new(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let outputs = BTreeMap::from([("out".to_string(), out.to_path_buf())]);
    let mut log = Vec::new();
    let mut job = BuiltinJob {
        drv_path: &drv_path,
        drv: &drv,
        outputs: &outputs,
        store,
        log: &mut log,
        references: BTreeMap::new(),
        archive_hashes: BTreeMap::new(),
    };
    build_image(&mut job).map_err(|e| e.to_string())
}

/// A tar's members: name → (kind, link target, mode, uid, mtime, contents).
type Members = BTreeMap<String, (tar::EntryType, Option<String>, u32, u64, u64, Vec<u8>)>;

fn members(bytes: &[u8]) -> Members {
    let mut archive = tar::Archive::new(bytes);
    let mut found = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let name = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
        let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        let fields =
            (header.entry_type(), link, header.mode().unwrap(), header.uid().unwrap(), header.mtime().unwrap());
        found.insert(name, (fields.0, fields.1, fields.2, fields.3, fields.4, contents));
    }
    found
}

/// A docker-archive's layer tars, bottom first, and its config.
fn layers_of(archive: &Path) -> (Vec<Vec<u8>>, serde_json::Value) {
    let all = members(&fs::read(archive).unwrap());
    let manifest: serde_json::Value = serde_json::from_slice(&all["manifest.json"].5).unwrap();
    let names = manifest[0]["Layers"].as_array().unwrap();
    let layers = names.iter().map(|n| all[n.as_str().unwrap()].5.clone()).collect();
    let config = serde_json::from_slice(&all[manifest[0]["Config"].as_str().unwrap()].5).unwrap();
    (layers, config)
}

struct Setup {
    _scratch: Scratch,
    store: Store,
    root: StorePath,
    package: StorePath,
    out: PathBuf,
}

fn setup(name: &str) -> Setup {
    let scratch = Scratch::new(name);
    let store = Store::open(&scratch.0.join("store")).unwrap();
    let root = store.add_path(&fake_root(&scratch.0), "debian-root").unwrap();
    let package = store.add_path(&fake_package(&scratch.0), "busybox").unwrap();
    let out = scratch.0.join("out");
    fs::create_dir_all(&out).unwrap();
    Setup { _scratch: scratch, store, root, package, out }
}

#[test]
fn the_root_is_the_bottom_layer_at_slash_and_contents_go_through_its_links() {
    let s = setup("layer");
    let (root, package) = (s.root.to_string(), s.package.to_string());
    let image = s.out.join("a.tar");
    let env = [("imageName", "a"), ("fromDebian", &root[..]), ("contents", &package[..]), ("maxLayers", "3")];
    build(&s.store, &env, &[&s.root, &s.package], &image).unwrap();
    let (layers, config) = layers_of(&image);
    assert_eq!(layers.len(), 3, "the root, the one store layer maxLayers leaves, the customisation");

    let bottom = members(&layers[0]);
    let (kind, _, mode, uid, mtime, contents) = &bottom["usr/bin/hello"];
    assert_eq!((*kind, *mode, *uid, *mtime), (tar::EntryType::Regular, 0o555, 0, 1));
    assert_eq!(contents, b"#!/bin/sh\necho hello\n");
    assert_eq!(bottom["bin"].0, tar::EntryType::Symlink);
    assert_eq!(bottom["bin"].1.as_deref(), Some("usr/bin"));
    assert_eq!(bottom["sbin"].1.as_deref(), Some("/usr/sbin"));
    assert_eq!(bottom["var/lib/dpkg/status"].0, tar::EntryType::Regular);
    assert!(bottom.keys().all(|k| !k.starts_with("mini")), "the root's tree is at /: {:?}", bottom.keys());

    // The root is nowhere under /mini/store: nothing in the closure refers to it.
    let store_layer = members(&layers[1]);
    assert!(store_layer.contains_key(&format!("mini/store/{}/bin/sh", s.package.base_name())));
    assert!(store_layer.keys().all(|k| !k.contains(&s.root.base_name())));

    let custom = members(&layers[2]);
    // bin/sh and lib/libx.so through the root's links; share/ is no link.
    assert_eq!(custom["usr/bin/sh"].1, Some(format!("{package}/bin/sh")));
    assert_eq!(custom["usr/lib/libx.so"].1, Some(format!("{package}/lib/libx.so")));
    assert_eq!(custom["share/doc"].1, Some(format!("{package}/share/doc")));
    assert!(!custom.contains_key("bin") && !custom.contains_key("lib"), "{:?}", custom.keys());
    assert_eq!(custom["etc/passwd"].5, b"root:x:0:0:root:/root:/bin/sh\n");
    assert_eq!(custom["etc/group"].5, b"root:x:0:\n");

    assert_eq!(config["history"][0]["comment"], format!("debian root {root}"));
    let summary = crate::inspect::inspect(&image).unwrap();
    assert_eq!(summary[0].layers[0].debian_root.as_deref(), Some(&root[..]));
    assert_eq!(summary[0].layers[1].debian_root, None);
}

#[test]
fn images_on_one_root_share_its_layer_and_build_alike_in_another_store() {
    let s = setup("shared");
    let root = s.root.to_string();
    let package = s.package.to_string();
    let (first, second) = (s.out.join("first.tar"), s.out.join("second.tar"));
    build(&s.store, &[("imageName", "first"), ("fromDebian", &root)], &[&s.root], &first).unwrap();
    let recorded = DigestCache::open(&s.store).unwrap().get(Key::DebianRoot(&s.root)).tar;
    let env = [("imageName", "second"), ("fromDebian", &root[..]), ("contents", &package[..])];
    build(&s.store, &env, &[&s.root, &s.package], &second).unwrap();
    let (one, two) = (layers_of(&first).0, layers_of(&second).0);
    assert_eq!(one[0], two[0], "the root's layer is the same in both images");
    let digest = <[u8; 32]>::from(sha2::Sha256::digest(&one[0]));
    assert_eq!(recorded.map(|d| d.sha256), Some(digest), "and cached by the first");
    assert_ne!(one.last(), two.last());
    // The customisation layer's own /tmp is there without contents, too.
    assert!(members(&one[1]).contains_key("tmp"));

    // The same recipe in another store: the same bytes.
    let other = setup("shared-again");
    assert_eq!((other.root.clone(), other.package.clone()), (s.root.clone(), s.package.clone()));
    let again = other.out.join("second.tar");
    build(&other.store, &env, &[&other.root, &other.package], &again).unwrap();
    assert_eq!(fs::read(&again).unwrap(), fs::read(&second).unwrap());
}

#[test]
fn a_root_the_closure_refers_to_is_also_in_the_store() {
    let s = setup("named");
    let root = s.root.to_string();
    let image = s.out.join("named.tar");
    let extra = format!(r#"{{"etc/root-path":{{"text":"{root}"}}}}"#);
    let env = [("imageName", "n"), ("fromDebian", &root[..]), ("contents", &root[..]), ("extraFiles", &extra[..])];
    build(&s.store, &env, &[&s.root], &image).unwrap();
    let (layers, _) = layers_of(&image);
    assert!(members(&layers[1]).contains_key(&format!("mini/store/{}/usr/bin/hello", s.root.base_name())));
    // As a content, its bin/ goes through its own link like any other's;
    // its sbin, a link leaving it, is linked at / as it is, replacing the
    // root's (as asked).
    let custom = members(layers.last().unwrap());
    assert_eq!(custom["usr/bin/hello"].1, Some(format!("{root}/bin/hello")));
    assert_eq!(custom["sbin"].1, Some(format!("{root}/sbin")));
    assert!(!custom.contains_key("bin"));
}

#[test]
fn streamed_images_describe_the_root_and_stream_it_back() {
    let s = setup("stream");
    let root = s.root.to_string();
    let (streamed, archive) = (s.out.join("s"), s.out.join("s.tar"));
    let env = [("imageName", "s"), ("imageTag", "v1"), ("fromDebian", &root[..])];
    build(&s.store, &[&env[..], &[("format", "stream")]].concat(), &[&s.root], &streamed).unwrap();
    let image = stream::open(&streamed, &s.store).unwrap();
    assert_eq!(image.description.layers[0].contents, Holds::DebianRoot(s.root.clone()));
    assert!(image.layers[0].recorded, "the root's digest is this store's record");
    build(&s.store, &env, &[&s.root], &archive).unwrap();
    let mut streamed_bytes = Vec::new();
    let image_ref = Image {
        layers: &image.layers,
        config: &|_: &[[u8; 32]]| image.config.clone(),
        repo_tag: image.description.repo_tag.clone(),
        tag: image.description.tag.clone(),
    };
    DockerArchive::plan(&image_ref, docker_archive::layer_sizes(&image.layers).unwrap(), BTreeSet::new())
        .write(&mut streamed_bytes)
        .unwrap();
    assert_eq!(streamed_bytes, fs::read(&archive).unwrap(), "streaming gives the image the builder writes");
}

#[test]
fn what_is_not_a_root_is_refused() {
    let s = setup("refused");
    let package = s.package.to_string();
    let image = s.out.join("x.tar");
    let e = build(&s.store, &[("imageName", "x"), ("fromDebian", &package)], &[&s.package], &image).unwrap_err();
    assert!(
        e.contains("is not a Debian root") && e.contains("no directory usr/") && e.contains("pkgs.debian.root"),
        "{e}"
    );
    assert!(!image.exists(), "nothing is written");
    // A root given as a bare string, without its context: not an input.
    let root = s.root.to_string();
    let e = build(&s.store, &[("imageName", "x"), ("fromDebian", &root)], &[], &image).unwrap_err();
    assert!(e.contains("not an input of the image"), "{e}");
    // A directory with usr/ but no dpkg database.
    let scratch = Scratch::new("refused-usr");
    fs::create_dir_all(scratch.0.join("tree/usr/bin")).unwrap();
    let bare = s.store.add_path(&scratch.0.join("tree"), "bare").unwrap();
    let e = build(&s.store, &[("imageName", "x"), ("fromDebian", &bare.to_string())], &[&bare], &image).unwrap_err();
    assert!(e.contains("no file var/lib/dpkg/status"), "{e}");
}
