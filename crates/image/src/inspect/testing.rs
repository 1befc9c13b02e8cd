//! Hand-made layers and images for the inspect tests, written with the
//! `tar` crate so the reader is checked against an independent writer.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A store path base name: 32 base-32 characters and a name.
pub const BUSYBOX: &str = "0123456789abcdfghijklmnpqrsvwxyz-busybox";

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mini-inspect-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    mini_store::encoding::hex(&Sha256::digest(bytes))
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zstd_compress(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// A tar of `entries`: `dir/` is a directory, `link -> target` a symlink,
/// anything else a file holding its own name.
pub fn layer_tar(entries: &[&str]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1);
        if let Some((link, target)) = entry.split_once(" -> ") {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, link, target).unwrap();
        } else if entry.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, entry, std::io::empty()).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o555);
            h.set_size(entry.len() as u64);
            b.append_data(&mut h, entry, entry.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// A tar of named members, in the order given.
pub fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o444);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// An image: uncompressed layer tars and the config listing them.
pub struct TestImage {
    pub tag: String,
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
}

/// A config document for layers with these uncompressed tars.
pub fn config_for(layers: &[Vec<u8>], cmd: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", sha256_hex(l))).collect();
    serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:01Z",
        "config": {"Cmd": [cmd], "Env": ["PATH=/bin"], "WorkingDir": ""},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes()
}

/// busybox in one store layer, plus a customisation layer of `bin` and `tmp`.
pub fn sample_image() -> TestImage {
    let store = layer_tar(&[
        "mini/",
        "mini/store/",
        &format!("mini/store/{BUSYBOX}/"),
        &format!("mini/store/{BUSYBOX}/bin/sh"),
    ]);
    let custom = layer_tar(&[&format!("bin -> /mini/store/{BUSYBOX}/bin"), "tmp/"]);
    let layers = vec![store, custom];
    TestImage { tag: "busybox:latest".into(), config: config_for(&layers, "/bin/sh"), layers }
}

/// The image as a docker-archive, named as mini names things, with the
/// manifest last (so a reader must not expect it first).
pub fn docker_archive(image: &TestImage, gzipped: bool) -> Vec<u8> {
    let blobs: Vec<Vec<u8>> = image.layers.iter().map(|l| if gzipped { gzip(l) } else { l.clone() }).collect();
    let ext = if gzipped { "tar.gz" } else { "tar" };
    let names: Vec<String> = blobs.iter().map(|b| format!("{}.{ext}", sha256_hex(b))).collect();
    let config_name = format!("{}.json", sha256_hex(&image.config));
    let manifest =
        serde_json::json!([{"Config": config_name, "RepoTags": [image.tag], "Layers": names}]).to_string().into_bytes();
    let mut members: Vec<(&str, &[u8])> =
        names.iter().map(String::as_str).zip(blobs.iter().map(Vec::as_slice)).collect();
    members.push((&config_name, &image.config));
    members.push(("manifest.json", &manifest));
    tar_of(&members)
}

/// Writes the image as an OCI layout at `dir`.
pub fn write_oci_layout(image: &TestImage, gzipped: bool, dir: &Path) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        serde_json::json!({"digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let media =
        if gzipped { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" };
    let layers: Vec<serde_json::Value> = image
        .layers
        .iter()
        .map(|l| {
            let mut d = put(&if gzipped { gzip(l) } else { l.clone() });
            d["mediaType"] = media.into();
            d
        })
        .collect();
    let mut config = put(&image.config);
    config["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    });
    let mut desc = put(manifest.to_string().as_bytes());
    desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": image.tag});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}
