//! Reading an OCI image layout directory: `index.json` lists manifests
//! (tags in the `org.opencontainers.image.ref.name` annotation), possibly
//! through nested image indexes (multi-platform images); every manifest,
//! config and layer is a file `blobs/sha256/<hex>` checked against its
//! descriptor's digest and size. Digests come from the input, so only a
//! plain `sha256:<64 hex>` is ever turned into a file name. A layout may
//! come from an untrusted build, so every file in it is opened under its
//! directory's handle with `O_NOFOLLOW`: a blob that is a link (to a host
//! file, say) is an error, never read.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::layer::{scan_layer, LayerScan};
use super::located::{the_only, LocatedImage, LocatedLayer};
use super::{
    digest_hex, not_an_image, parse_config, parse_json, read_document, sha256_of, summarize, Budget, ImageSummary,
    ReadLayer,
};
use crate::confined;
use crate::error::{io_err, Result};
use crate::oci::{CONTAINERD_NAME, REF_NAME};

/// How deep image indexes may nest.
const MAX_DEPTH: usize = 4;

/// A content descriptor: what a blob is, its digest and its size.
struct Descriptor {
    media_type: Option<String>,
    hex: String,
    size: Option<u64>,
    annotations: serde_json::Map<String, Value>,
}

/// Reads the layout, scanning each distinct layer once.
struct Layout<'a> {
    dir: &'a Path,
    /// `blobs/sha256`, if the layout has it.
    blobs: Option<OwnedFd>,
    scanned: HashMap<String, LayerScan>,
    images: Vec<ImageSummary>,
    budget: Budget,
}

pub(super) fn read(dir: &Path) -> Result<Vec<ImageSummary>> {
    let bad = |message: String| not_an_image(dir, message);
    let (index, blobs) = open_layout(dir)?;
    let mut reader = Layout { dir, blobs, scanned: HashMap::new(), images: Vec::new(), budget: Budget::default() };
    reader.index(&index, "index.json", &[], 0).map_err(bad)?;
    if reader.images.is_empty() {
        return Err(bad("index.json lists no images".into()));
    }
    Ok(reader.images)
}

/// Locates the one image of a layout whose `index.json` lists exactly one
/// manifest (see `located`): its manifest and config read and checked,
/// each layer's blob opened once, without following a link.
pub(super) fn locate(dir: &Path) -> Result<LocatedImage> {
    let bad = |message: String| not_an_image(dir, message);
    let (index, blobs) = open_layout(dir)?;
    let layout = Layout { dir, blobs, scanned: HashMap::new(), images: Vec::new(), budget: Budget::default() };
    let located = || -> std::result::Result<LocatedImage, String> {
        let manifests = index.get("manifests").and_then(Value::as_array).cloned().unwrap_or_default();
        let entry = descriptor(&the_only(manifests, "index.json")?, "index.json's manifest")?;
        let manifest = parse_json(&layout.blob(&entry, "the manifest")?, "the manifest")?;
        let config_desc = descriptor(manifest.get("config").unwrap_or(&Value::Null), "the manifest's config")?;
        let config = layout.blob(&config_desc, "the config")?;
        let diff_ids = parse_config(&config)?.diff_ids;
        let Some(descs) = manifest.get("layers").and_then(Value::as_array) else {
            return Err("the manifest has no \"layers\" list".into());
        };
        if descs.len() != diff_ids.len() {
            return Err(format!("it has {} layer(s) but its config lists {} diff_id(s)", descs.len(), diff_ids.len()));
        }
        let mut layers = Vec::with_capacity(descs.len());
        for (i, (d, diff_id)) in descs.iter().zip(diff_ids).enumerate() {
            let name = format!("layer {}", i + 1);
            let desc = descriptor(d, &name)?;
            let (file, size) = layout.open_layer(&desc).map_err(|e| format!("{name} (sha256:{}): {e}", desc.hex))?;
            let what = dir.join("blobs/sha256").join(&desc.hex);
            layers.push(LocatedLayer::slice(format!("sha256:{diff_id}"), what, Arc::new(file), 0, size));
        }
        Ok(LocatedImage { config, layers })
    };
    located().map_err(bad)
}

/// Opens a layout: its parsed `index.json` (its `oci-layout` marker
/// checked, if it has one) and its `blobs/sha256` directory, if any.
fn open_layout(dir: &Path) -> Result<(Value, Option<OwnedFd>)> {
    let bad = |message: String| not_an_image(dir, message);
    let root =
        rustix::fs::open(dir, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty())
            .map_err(|e| io_err("reading", dir)(e.into()))?;
    let index = match open_in(&root, "index.json") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(bad("a directory without index.json is not an OCI image layout".into()))
        }
        opened => read_document(opened.map_err(|e| bad(cannot_open("index.json", &e)))?, "index.json").map_err(bad)?,
    };
    match open_in(&root, "oci-layout") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        opened => {
            let doc =
                read_document(opened.map_err(|e| bad(cannot_open("oci-layout", &e)))?, "oci-layout").map_err(bad)?;
            let doc = parse_json(&doc, "oci-layout").map_err(bad)?;
            if !doc.get("imageLayoutVersion").is_some_and(Value::is_string) {
                return Err(bad("oci-layout has no imageLayoutVersion".into()));
            }
        }
    }
    let index = parse_json(&index, "index.json").map_err(bad)?;
    let blobs = match confined::open_dir(&root, OsStr::new("blobs"))
        .and_then(|b| confined::open_dir(b, OsStr::new("sha256")))
    {
        Ok(fd) => Some(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(bad(cannot_open("blobs/sha256", &e))),
    };
    Ok((index, blobs))
}

/// Opens the regular file `name` in `dir` without following a link.
fn open_in(dir: impl AsFd, name: &str) -> io::Result<File> {
    confined::open_file(dir, OsStr::new(name))
}

/// Why `what` could not be opened; a link is named as such.
fn cannot_open(what: &str, e: &io::Error) -> String {
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        format!("{what} is a symbolic link; an OCI layout holds plain files and mini does not follow links in one")
    } else {
        format!("cannot open {what}: {e}")
    }
}

impl Layout<'_> {
    /// Reads every image an index lists; `tags` are those of the
    /// descriptor that led here.
    fn index(&mut self, doc: &Value, what: &str, tags: &[String], depth: usize) -> std::result::Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("image indexes nest more than {MAX_DEPTH} deep"));
        }
        if let Some(v) = doc.get("schemaVersion") {
            if v.as_u64() != Some(2) {
                return Err(format!("{what} has schemaVersion {v}, not 2"));
            }
        }
        let Some(manifests) = doc.get("manifests").and_then(Value::as_array) else {
            return Err(format!("{what} has no \"manifests\" list"));
        };
        for (i, d) in manifests.iter().enumerate() {
            self.budget.image()?;
            let what_entry = format!("{what}'s manifest {}", i + 1);
            let desc = descriptor(d, &what_entry)?;
            let mut own_tags = tag_of(&desc);
            if own_tags.is_empty() {
                own_tags = tags.to_vec();
            }
            let blob = self.blob(&desc, &what_entry)?;
            let blob_doc = parse_json(&blob, &what_entry)?;
            let is_index = match desc.media_type.as_deref() {
                Some(t) => t.ends_with("image.index.v1+json") || t.ends_with("manifest.list.v2+json"),
                None => blob_doc.get("manifests").is_some(),
            };
            if is_index {
                self.index(&blob_doc, &what_entry, &own_tags, depth + 1)?;
            } else {
                self.manifest(&blob_doc, &what_entry, own_tags)?;
            }
        }
        Ok(())
    }

    fn manifest(&mut self, doc: &Value, what: &str, tags: Vec<String>) -> std::result::Result<(), String> {
        let config_desc = descriptor(doc.get("config").unwrap_or(&Value::Null), &format!("{what}'s config"))?;
        let config = parse_config(&self.blob(&config_desc, "the config")?)?;
        let Some(layer_descs) = doc.get("layers").and_then(Value::as_array) else {
            return Err(format!("{what} has no \"layers\" list"));
        };
        let mut layers = Vec::new();
        for (i, d) in layer_descs.iter().enumerate() {
            let name = format!("layer {}", i + 1);
            let desc = descriptor(d, &name)?;
            let scan = match self.scanned.get(&desc.hex) {
                Some(scan) => scan.clone(),
                None => {
                    let scan = self.scan(&desc).map_err(|e| format!("{name} (sha256:{}): {e}", desc.hex))?;
                    self.scanned.insert(desc.hex.clone(), scan.clone());
                    scan
                }
            };
            let media_type = desc.media_type.unwrap_or_else(|| scan.compression.media_type().to_string());
            layers.push(ReadLayer { name: format!("sha256:{}", desc.hex), scan, media_type });
        }
        let source = self.dir.display().to_string();
        self.images.push(summarize(&mut self.budget, &source, "oci-layout", tags, config, layers)?);
        Ok(())
    }

    /// Opens the blob a descriptor names, without following a link.
    fn open_blob(&self, desc: &Descriptor) -> io::Result<File> {
        match &self.blobs {
            Some(blobs) => open_in(blobs, &desc.hex),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    /// A small blob (a manifest, index or config), checked.
    fn blob(&self, desc: &Descriptor, what: &str) -> std::result::Result<Vec<u8>, String> {
        let file = self.open_blob(desc).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{what}'s blob sha256:{} is missing from blobs/sha256", desc.hex),
            _ => cannot_open(&format!("{what}'s blob sha256:{}", desc.hex), &e),
        })?;
        let bytes = read_document(file, what)?;
        if let Some(size) = desc.size {
            if size != bytes.len() as u64 {
                return Err(format!(
                    "{what} (sha256:{}) is {} bytes, not the {size} its descriptor says",
                    desc.hex,
                    bytes.len()
                ));
            }
        }
        let actual = sha256_of(&bytes);
        if actual != desc.hex {
            return Err(format!("{what}'s blob sha256:{} hashes to sha256:{actual}", desc.hex));
        }
        Ok(bytes)
    }

    /// Opens a layer's blob, checking its size against the descriptor's.
    fn open_layer(&self, desc: &Descriptor) -> std::result::Result<(File, u64), String> {
        let file = self.open_blob(desc).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "the blob is missing from blobs/sha256".to_string(),
            _ => cannot_open("the blob", &e),
        })?;
        let len = file.metadata().map_err(|e| format!("cannot read it: {e}"))?.len();
        if let Some(size) = desc.size.filter(|&s| s != len) {
            return Err(format!("the blob is {len} bytes, not the {size} its descriptor says"));
        }
        Ok((file, len))
    }

    fn scan(&self, desc: &Descriptor) -> std::result::Result<LayerScan, String> {
        let (file, _) = self.open_layer(desc)?;
        let scan = scan_layer(file)?;
        if scan.digest != desc.hex {
            return Err(format!("the blob hashes to sha256:{}", scan.digest));
        }
        Ok(scan)
    }
}

fn descriptor(v: &Value, what: &str) -> std::result::Result<Descriptor, String> {
    let Value::Object(d) = v else { return Err(format!("{what} is not a descriptor object")) };
    let digest = d.get("digest").and_then(Value::as_str).ok_or_else(|| format!("{what} has no digest"))?;
    let hex = digest_hex(digest)
        .ok_or_else(|| format!("{what} has the digest '{digest}'; only sha256:<hex> is supported"))?;
    let size = match d.get("size") {
        None => None,
        Some(s) => Some(s.as_u64().ok_or_else(|| format!("{what} has a bad size {s}"))?),
    };
    Ok(Descriptor {
        media_type: d.get("mediaType").and_then(Value::as_str).map(str::to_string),
        hex: hex.to_string(),
        size,
        annotations: d.get("annotations").and_then(Value::as_object).cloned().unwrap_or_default(),
    })
}

/// The name a descriptor tags its image with, full name first.
fn tag_of(desc: &Descriptor) -> Vec<String> {
    [CONTAINERD_NAME, REF_NAME]
        .iter()
        .find_map(|key| desc.annotations.get(*key).and_then(Value::as_str))
        .map(|name| vec![name.to_string()])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::testing::*;
    use std::path::PathBuf;

    fn message(dir: &Path) -> String {
        crate::inspect::not_an_image_message(read(dir))
    }

    fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
        let mut doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        edit(&mut doc);
        std::fs::write(path, doc.to_string()).unwrap();
    }

    fn manifest_path(dir: &Path) -> PathBuf {
        let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap();
        dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    #[test]
    fn nested_indexes_and_zstd_layers() {
        let dir = TempDir::new("oci-nested");
        let image = sample_image();
        write_oci_layout(&image, false, dir.path());
        // Recompress the first layer with zstd and wrap the manifest in an index.
        let manifest_file = manifest_path(dir.path());
        let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_file).unwrap()).unwrap();
        let zst = zstd_compress(&image.layers[0]);
        std::fs::write(dir.path().join("blobs/sha256").join(sha256_hex(&zst)), &zst).unwrap();
        manifest["layers"][0] = serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
            "digest": format!("sha256:{}", sha256_hex(&zst)),
            "size": zst.len(),
        });
        let manifest = manifest.to_string();
        let put = |bytes: &[u8]| {
            std::fs::write(dir.path().join("blobs/sha256").join(sha256_hex(bytes)), bytes).unwrap();
            format!("sha256:{}", sha256_hex(bytes))
        };
        let inner = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest.as_bytes()), "size": manifest.len()}
        ]})
        .to_string();
        let outer = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"digest": put(inner.as_bytes()), "size": inner.len(), "annotations": {REF_NAME: "nested:1"}}
        ]});
        std::fs::write(dir.path().join("index.json"), outer.to_string()).unwrap();
        let [summary] = read(dir.path()).unwrap().try_into().unwrap();
        assert_eq!(summary.tags, ["nested:1"]);
        assert_eq!(summary.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
        assert_eq!(summary.layers[0].store_paths, [format!("/mini/store/{BUSYBOX}")]);
    }

    #[test]
    fn broken_layouts_are_named() {
        let dir = TempDir::new("oci-broken");
        let image = sample_image();
        let fresh = |name: &str| {
            let d = dir.path().join(name);
            write_oci_layout(&image, true, &d);
            d
        };
        let d = dir.path().join("empty");
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(message(&d), "a directory without index.json is not an OCI image layout");

        let d = fresh("bad-index");
        std::fs::write(d.join("index.json"), "[").unwrap();
        assert!(message(&d).starts_with("index.json is not JSON"));

        let d = fresh("no-manifests");
        std::fs::write(d.join("index.json"), r#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert_eq!(message(&d), "index.json lists no images");

        let d = fresh("traversal");
        edit_json(&d.join("index.json"), |i| i["manifests"][0]["digest"] = "sha256:../../../etc/passwd".into());
        assert!(message(&d).contains("only sha256:<hex> is supported"));

        let d = fresh("no-manifest-blob");
        std::fs::remove_file(manifest_path(&d)).unwrap();
        assert!(message(&d).contains("manifest 1's blob sha256:") && message(&d).contains("is missing"));

        let d = fresh("missing-layer");
        let manifest: Value = serde_json::from_slice(&std::fs::read(manifest_path(&d)).unwrap()).unwrap();
        let layer = manifest["layers"][1]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        std::fs::remove_file(d.join("blobs/sha256").join(&layer)).unwrap();
        assert_eq!(message(&d), format!("layer 2 (sha256:{layer}): the blob is missing from blobs/sha256"));

        let d = fresh("wrong-layer-bytes");
        let path = d.join("blobs/sha256").join(&layer);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(message(&d).starts_with(&format!("layer 2 (sha256:{layer}): ")));

        let d = fresh("truncated-layer");
        let path = d.join("blobs/sha256").join(&layer);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(message(&d).contains("bytes, not the"));

        // A blob that is a link (here to a host file) is never read.
        let d = fresh("linked-layer");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "host secret").unwrap();
        std::fs::remove_file(d.join("blobs/sha256").join(&layer)).unwrap();
        std::os::unix::fs::symlink(&secret, d.join("blobs/sha256").join(&layer)).unwrap();
        let e = message(&d);
        assert!(e.contains("is a symbolic link") && !e.contains(&sha256_hex(b"host secret")), "{e}");
        let d = fresh("linked-index");
        std::fs::remove_file(d.join("index.json")).unwrap();
        std::os::unix::fs::symlink(&secret, d.join("index.json")).unwrap();
        assert!(message(&d).starts_with("index.json is a symbolic link"), "{}", message(&d));

        let d = fresh("bad-layout");
        std::fs::write(d.join("oci-layout"), "{}").unwrap();
        assert_eq!(message(&d), "oci-layout has no imageLayoutVersion");
    }

    #[test]
    fn indexes_listing_one_blob_many_times_are_capped() {
        let dir = TempDir::new("oci-fanout");
        write_oci_layout(&sample_image(), false, dir.path());
        let index: Value = serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        let manifest = index["manifests"][0].clone();
        // Each level lists the one below 40 times: 40^3 images if followed.
        let mut below = manifest;
        for _ in 0..2 {
            let nested = serde_json::json!({"schemaVersion": 2, "manifests": vec![below.clone(); 40]}).to_string();
            let hex = sha256_hex(nested.as_bytes());
            std::fs::write(dir.path().join("blobs/sha256").join(&hex), &nested).unwrap();
            below = serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": format!("sha256:{hex}"), "size": nested.len()});
        }
        std::fs::write(dir.path().join("index.json"), serde_json::json!({"manifests": vec![below; 40]}).to_string())
            .unwrap();
        assert_eq!(message(dir.path()), "it lists more than 1024 images");
    }
}
