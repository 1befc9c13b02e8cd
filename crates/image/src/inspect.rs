//! Reading images back, for `mini image inspect`: what an image is made of
//! (tags, config, each layer's store paths, or the Debian root a layer
//! holds at `/` as the image's history names it) and how much of it other
//! images can share. Accepts what mini writes and what other tools write: a
//! docker-archive (`docker save`, skopeo; possibly gzip or zstd
//! compressed) or an OCI image layout directory.
//!
//! Everything is verified while it is read: blobs against their digests,
//! uncompressed layers against the config's diff_ids. Input is hostile
//! until proven otherwise: archives are streamed (layers are never held in
//! memory), every document read whole is capped, and anything malformed is
//! [`ImageError::NotAnImage`], never a panic. Rendering (`render`) is pure.
//!
//! The same reading serves `mini push`: [`locate`] (`located`) finds one
//! image's config and layer bytes without scanning the layers, so the
//! registry crate never reads an image any other way.
//!
//! The provenance labels read back (revision, source, locked inputs) are
//! `mini_store::provenance`'s names, the ones flake writes. An image never
//! names the `.drv` that built it (that would make it depend on itself), so
//! the caller, which knows the derivation, supplies it.

mod diff;
mod docker;
mod layer;
mod located;
mod oci;
mod render;
mod tar_stream;
#[cfg(test)]
pub(crate) mod testing;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use sha2::Digest;

use mini_store::store_path::StorePath;

use crate::docker_archive::DEBIAN_ROOT_COMMENT;
use crate::error::{io_err, ImageError, Result};
use crate::oci::{INPUT_LABEL_PREFIX, REVISION_LABEL, SOURCE_LABEL};
use layer::LayerScan;

pub use diff::{compare, render_diff_json, render_diff_text, ImageDiff, LayerDiff, Presence};
pub use located::{locate, LocatedImage, LocatedLayer};
pub use render::{human as human_size, render_json, render_text};

/// The largest JSON document (manifest, index, config) read into memory.
const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;
/// How many images (and image indexes) one input may list.
const MAX_IMAGES: usize = 1024;
/// How many layers all of one input's images may list together.
const MAX_LAYERS: usize = 16 * 1024;
/// How many bytes of layer contents (names) one input's summaries may hold.
const MAX_LISTED: u64 = 64 * 1024 * 1024;

/// The config settings a summary shows, in the order it shows them.
pub const CONFIG_KEYS: [&str; 8] =
    ["Cmd", "Entrypoint", "Env", "WorkingDir", "User", "ExposedPorts", "Labels", "Volumes"];

/// What an image is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSummary {
    /// Where it was read from, as the caller names it.
    pub source: String,
    /// `docker-archive` or `oci-layout`.
    pub format: &'static str,
    /// `name:tag`s (docker-archive `RepoTags`, OCI `ref.name` annotations).
    pub tags: Vec<String>,
    pub architecture: Option<String>,
    pub os: Option<String>,
    pub created: Option<String>,
    /// The settings of [`CONFIG_KEYS`] the config has (null and "" left out).
    pub config: BTreeMap<String, Value>,
    /// `sha256:<hex>` of the config document.
    pub config_digest: String,
    /// Bytes of the config document.
    pub config_size: u64,
    /// Bottom layer first.
    pub layers: Vec<LayerSummary>,
    /// The `.drv` that built it, when the caller knows (an image in the
    /// store, or built from an installable); never read from the image.
    pub derivation: Option<String>,
}

/// Where an image came from, as far as it (and the caller) can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub revision: Option<String>,
    pub source: Option<String>,
    /// Locked inputs by name: `URL [rev=SHA] narHash=blake3:…`.
    pub inputs: BTreeMap<String, String>,
    pub derivation: Option<String>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSummary {
    /// `sha256:<hex>` of the blob as stored.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar, as the config lists it.
    pub diff_id: String,
    /// Bytes of the blob as stored.
    pub size: u64,
    pub media_type: String,
    /// The store paths it holds (`/mini/store/<hash>-<name>`), sorted.
    pub store_paths: Vec<String>,
    /// The Debian root whose tree it holds at `/` (`fromDebian`), as the
    /// image's history names it.
    pub debian_root: Option<String>,
    /// Top-level entries outside the store, sorted (`mini` itself only if
    /// it holds more than the store directory).
    pub other_entries: Vec<String>,
    /// Entries left out of the two lists because a layer had too many names.
    pub unlisted_entries: u64,
}

impl ImageSummary {
    /// Its provenance labels and derivation, if it has any.
    pub fn provenance(&self) -> Option<Provenance> {
        let labels = self.config.get("Labels").and_then(Value::as_object);
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str).map(str::to_string);
        let inputs = labels
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.strip_prefix(INPUT_LABEL_PREFIX)?.to_string(), value.as_str()?)))
            .map(|(name, value)| (name, value.to_string()))
            .collect();
        let provenance = Provenance {
            revision: label(REVISION_LABEL),
            source: label(SOURCE_LABEL),
            inputs,
            derivation: self.derivation.clone(),
        };
        (provenance != Provenance::default()).then_some(provenance)
    }

    /// Bytes of all layers as stored.
    pub fn total_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// Bytes of the layers holding store paths (or a Debian root): the
    /// ones other images built from the same store paths share.
    pub fn store_path_size(&self) -> u64 {
        self.layers.iter().filter(|l| !l.store_paths.is_empty() || l.debian_root.is_some()).map(|l| l.size).sum()
    }

    /// What a person calls this image: its first tag, else its source.
    pub fn label(&self) -> &str {
        self.tags.first().map_or(&self.source, |t| t)
    }
}

/// Reads every image in `path`, a docker-archive file or an OCI layout
/// directory; `source` is set to `path` as given.
pub fn inspect(path: &Path) -> Result<Vec<ImageSummary>> {
    let meta = std::fs::metadata(path).map_err(io_err("reading", path))?;
    if meta.is_dir() {
        oci::read(path)
    } else if meta.len() == 0 {
        Err(not_an_image(path, "the file is empty"))
    } else {
        docker::read(path)
    }
}

/// The error for bad input. Messages quote names from the input, so
/// control characters are escaped: a hostile name cannot drive the terminal.
fn not_an_image(path: &Path, message: impl Into<String>) -> ImageError {
    let message = escape_controls(&message.into()).into_owned();
    ImageError::NotAnImage { path: path.to_path_buf(), message }
}

/// The message of an [`ImageError::NotAnImage`]; a panic on anything else.
#[cfg(test)]
fn not_an_image_message<T: std::fmt::Debug>(result: Result<T>) -> String {
    match result {
        Err(ImageError::NotAnImage { message, .. }) => message,
        other => panic!("expected NotAnImage, got {other:?}"),
    }
}

/// Text from an image with control characters escaped (`\u{1b}`).
fn escape_controls(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// Reads a document of at most [`MAX_DOCUMENT`] bytes.
fn read_document(mut r: impl Read, what: &str) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    (&mut r).take(MAX_DOCUMENT + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(format!("{what} is larger than {MAX_DOCUMENT} bytes"));
    }
    Ok(bytes)
}

fn parse_json(bytes: &[u8], what: &str) -> std::result::Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what} is not JSON: {e}"))
}

/// The hex part of `sha256:<64 lower-case hex>`, the only digests images
/// may use; anything else is not a name to look a file up by.
fn digest_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|hex| is_sha256_hex(hex))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn sha256_of(bytes: &[u8]) -> String {
    mini_store::encoding::hex(&sha2::Sha256::digest(bytes))
}

/// What the summary needs from a config document.
#[derive(Debug)]
struct Config {
    /// `sha256:<hex>` and size of the document.
    digest: String,
    size: u64,
    architecture: Option<String>,
    os: Option<String>,
    created: Option<String>,
    settings: BTreeMap<String, Value>,
    /// Hex parts of `rootfs.diff_ids`.
    diff_ids: Vec<String>,
    /// The Debian root each layer holds, by the layer's history comment.
    debian_roots: Vec<Option<String>>,
}

/// The Debian root each layer holds, as the history says: its entries
/// that are not `empty_layer`s are the layers, in order, and a comment
/// `debian root <store path>` names the root. Anything else says nothing.
fn debian_roots(history: Option<&Value>) -> Vec<Option<String>> {
    let entries = history.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .filter(|entry| entry.get("empty_layer").and_then(Value::as_bool) != Some(true))
        .map(|entry| {
            let comment = entry.get("comment").and_then(Value::as_str)?;
            let root = comment.strip_prefix(DEBIAN_ROOT_COMMENT)?;
            StorePath::parse(root).ok().map(|_| root.to_string())
        })
        .collect()
}

fn parse_config(bytes: &[u8]) -> std::result::Result<Config, String> {
    let doc = parse_json(bytes, "the config")?;
    let Value::Object(doc) = doc else { return Err("the config is not a JSON object".into()) };
    let text = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_string);
    let settings = match doc.get("config") {
        Some(Value::Object(c)) => CONFIG_KEYS
            .iter()
            .filter_map(|&k| {
                c.get(k).filter(|v| !v.is_null() && v.as_str() != Some("")).map(|v| (k.to_string(), v.clone()))
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let Some(ids) = doc.get("rootfs").and_then(|r| r.get("diff_ids")).and_then(Value::as_array) else {
        return Err("the config has no rootfs.diff_ids list".into());
    };
    let diff_ids = ids
        .iter()
        .map(|id| {
            id.as_str()
                .and_then(digest_hex)
                .map(str::to_string)
                .ok_or_else(|| format!("the config's diff_id {id} is not a sha256:<hex> digest"))
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok(Config {
        digest: format!("sha256:{}", sha256_of(bytes)),
        size: bytes.len() as u64,
        architecture: text("architecture"),
        os: text("os"),
        created: text("created"),
        settings,
        diff_ids,
        debian_roots: debian_roots(doc.get("history")),
    })
}

/// What one input has made the summaries hold so far: documents can list
/// the same blob any number of times, so the caps are on the whole input.
#[derive(Default)]
struct Budget {
    images: usize,
    layers: usize,
    listed: u64,
}

impl Budget {
    fn image(&mut self) -> std::result::Result<(), String> {
        self.images += 1;
        if self.images > MAX_IMAGES {
            return Err(format!("it lists more than {MAX_IMAGES} images"));
        }
        Ok(())
    }

    fn layer(&mut self, scan: &LayerScan) -> std::result::Result<(), String> {
        self.layers += 1;
        self.listed += scan.store_paths.iter().chain(&scan.other_entries).map(|n| n.len() as u64).sum::<u64>();
        if self.layers > MAX_LAYERS {
            return Err(format!("its images list more than {MAX_LAYERS} layers"));
        }
        if self.listed > MAX_LISTED {
            return Err(format!("its layers hold more than {MAX_LISTED} bytes of names"));
        }
        Ok(())
    }
}

/// A layer as read, with how to name it in messages.
struct ReadLayer {
    name: String,
    scan: LayerScan,
    media_type: String,
}

/// Puts an image together, checking its layers against the config.
fn summarize(
    budget: &mut Budget,
    source: &str,
    format: &'static str,
    tags: Vec<String>,
    config: Config,
    layers: Vec<ReadLayer>,
) -> std::result::Result<ImageSummary, String> {
    if layers.len() != config.diff_ids.len() {
        return Err(format!(
            "it has {} layer(s) but its config lists {} diff_id(s)",
            layers.len(),
            config.diff_ids.len()
        ));
    }
    let mut out = Vec::with_capacity(layers.len());
    for (i, (layer, diff_id)) in layers.into_iter().zip(&config.diff_ids).enumerate() {
        budget.layer(&layer.scan)?;
        if &layer.scan.diff_id != diff_id {
            return Err(format!(
                "layer {} ({}) uncompresses to sha256:{}, but the config's diff_id is sha256:{diff_id}",
                i + 1,
                layer.name,
                layer.scan.diff_id
            ));
        }
        out.push(LayerSummary {
            digest: format!("sha256:{}", layer.scan.digest),
            diff_id: format!("sha256:{diff_id}"),
            size: layer.scan.size,
            media_type: layer.media_type,
            store_paths: layer.scan.store_paths.into_iter().collect(),
            debian_root: config.debian_roots.get(i).cloned().flatten(),
            other_entries: layer.scan.other_entries.into_iter().collect(),
            unlisted_entries: layer.scan.unlisted,
        });
    }
    Ok(ImageSummary {
        source: source.to_string(),
        format,
        tags,
        architecture: config.architecture,
        os: config.os,
        created: config.created,
        config: config.settings,
        config_digest: config.digest,
        config_size: config.size,
        layers: out,
        derivation: None,
    })
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn message(path: &Path) -> String {
        not_an_image_message(inspect(path))
    }

    #[test]
    fn docker_archives_and_oci_layouts_read_alike() {
        let dir = TempDir::new("same");
        let image = sample_image();
        for gzipped in [false, true] {
            let (docker, oci) = both_formats(&dir, &image, gzipped);
            let [from_docker] = inspect(&docker).unwrap().try_into().unwrap();
            let [from_oci] = inspect(&oci).unwrap().try_into().unwrap();
            assert_eq!(from_docker.format, "docker-archive");
            assert_eq!(from_oci.format, "oci-layout");
            assert_eq!(from_docker.tags, ["busybox:latest"]);
            assert_eq!(from_oci.tags, ["busybox:latest"]);
            assert_eq!(from_docker.layers, from_oci.layers);
            assert_eq!(from_docker.config, from_oci.config);
            let layers = &from_docker.layers;
            assert_eq!(layers.len(), 2);
            assert_eq!(layers[0].store_paths, [format!("/mini/store/{BUSYBOX}")]);
            assert_eq!(layers[1].other_entries, ["bin", "tmp"]);
            assert_eq!(layers[0].diff_id, format!("sha256:{}", sha256_hex(&image.layers[0])));
            let expected_type = if gzipped {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            assert_eq!(layers[0].media_type, expected_type);
            assert_eq!(from_docker.architecture.as_deref(), Some("amd64"));
            assert_eq!(from_docker.created.as_deref(), Some("1970-01-01T00:00:01Z"));
            assert_eq!(from_docker.config["Cmd"], serde_json::json!(["/bin/sh"]));
            assert!(!from_docker.config.contains_key("WorkingDir"), "empty settings are left out");
        }
    }

    #[test]
    fn config_documents_must_have_diff_ids() {
        assert!(parse_config(b"[]").unwrap_err().contains("not a JSON object"));
        assert!(parse_config(b"{}").unwrap_err().contains("no rootfs.diff_ids"));
        let bad = br#"{"rootfs":{"type":"layers","diff_ids":["md5:00"]}}"#;
        assert!(parse_config(bad).unwrap_err().contains("\"md5:00\" is not a sha256:<hex> digest"));
    }

    #[test]
    fn the_history_names_a_debian_root_layer() {
        let root = format!("/mini/store/{}-debian-root", "0123456789abcdfghijklmnpqrsvwxyz");
        let history = serde_json::json!([
            { "comment": "an empty one", "empty_layer": true },
            { "comment": format!("debian root {root}") },
            { "comment": "debian root /etc" },
            { "comment": "customisation layer" },
        ]);
        assert_eq!(debian_roots(Some(&history)), [Some(root), None, None]);
        assert!(debian_roots(None).is_empty());
    }

    #[test]
    fn an_empty_file_or_random_bytes_are_not_images() {
        let dir = TempDir::new("random");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(message(&empty), "the file is empty");
        let random = dir.path().join("random");
        std::fs::write(&random, (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
        assert!(message(&random).contains("not a tar archive"));
        assert!(matches!(inspect(&dir.path().join("missing")), Err(ImageError::Io { .. })));
    }

    #[test]
    fn messages_escape_control_characters() {
        let e = not_an_image(Path::new("x"), "'a\u{1b}[2J' is \"missing\"\n");
        assert_eq!(e.to_string(), "'x' is not an image: 'a\\u{1b}[2J' is \"missing\"\\n");
    }

    #[test]
    fn digests_must_be_plain_sha256() {
        let hex = "a".repeat(64);
        assert_eq!(digest_hex(&format!("sha256:{hex}")), Some(&hex[..]));
        assert_eq!(digest_hex(&format!("sha256:{}", "A".repeat(64))), None);
        assert_eq!(digest_hex("sha256:../../etc/passwd"), None);
        assert_eq!(digest_hex(&format!("sha512:{hex}")), None);
    }
}
