//! `streamLayeredImage`'s output: an image described, not written. The
//! output directory holds
//!
//! - `image.json`: the name and tag, and each layer bottom first with its
//!   diff_id, its size, and the store paths it holds (`paths`), or the
//!   Debian root whose tree it holds at `/` (`debianRoot`), or, for the
//!   customisation layer, the file holding its tar (`file`);
//! - `config.json`: the image config, byte for byte as it goes into the
//!   image (its digest is the image ID);
//! - `customisation.tar`: the customisation layer (small: links, users,
//!   extra files).
//!
//! Nothing image-sized is in the store: `mini image stream` and `mini
//! image copy` make the layer tars from the store paths when they are
//! needed (`produce`), and check each against its diff_id here: by
//! hashing it, unless this store's digest cache records that very digest
//! for the layer's paths (then only its size is checked, as the image
//! builder does). The description may come from anywhere (any builder, a
//! binary cache, a copy), so reading it checks every name: layers hold valid store paths of this store, and the
//! customisation layer is the one file of that name in the directory,
//! never reached through a link.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mini_store::encoding::hex;
use mini_store::store::Store;
use mini_store::store_path::StorePath;
use serde_json::{json, Value};

use crate::confined;
use crate::debian_root;
use crate::docker_archive::{Holds, Layer};
use crate::error::{io_err, ImageError, Result};
use crate::inspect::{LocatedImage, LocatedLayer};
use crate::layer_cache::{parse_hex, Digest, DigestCache};
use crate::produce::{self, Source};

pub const DESCRIPTION: &str = "image.json";
pub const CONFIG: &str = "config.json";
pub const CUSTOMISATION: &str = "customisation.tar";
/// The `image.json` format's name and version.
const FORMAT: &str = "mini-stream-image/1";
/// The largest config or description read (documents are small).
const MAX_DOCUMENT: u64 = 16 << 20;
/// The largest customisation layer read into memory.
const MAX_CUSTOMISATION: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedLayer {
    pub tar: Digest,
    /// What it holds; the customisation layer's tar is the file
    /// [`CUSTOMISATION`] in the directory.
    pub contents: Holds,
}

/// `image.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub repo_tag: String,
    pub tag: String,
    pub layers: Vec<DescribedLayer>,
}

impl Description {
    pub fn to_json(&self) -> String {
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| {
                let mut v = json!({ "diffId": format!("sha256:{}", hex(&l.tar.sha256)), "size": l.tar.size });
                match &l.contents {
                    Holds::Paths(paths) => {
                        v["paths"] = json!(paths.iter().map(StorePath::to_string).collect::<Vec<_>>())
                    }
                    Holds::DebianRoot(root) => v["debianRoot"] = json!(root.to_string()),
                    Holds::Customisation => v["file"] = json!(CUSTOMISATION),
                }
                v
            })
            .collect();
        json!({ "format": FORMAT, "repoTag": self.repo_tag, "tag": self.tag, "config": CONFIG, "layers": layers })
            .to_string()
    }

    pub fn parse(text: &[u8]) -> std::result::Result<Description, String> {
        let value: Value = serde_json::from_slice(text).map_err(|e| format!("{DESCRIPTION} is not JSON: {e}"))?;
        if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(format!("{DESCRIPTION} is not a {FORMAT} description"));
        }
        let string = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("{DESCRIPTION} has no '{key}'"))
        };
        let mut layers = Vec::new();
        let listed = value.get("layers").and_then(Value::as_array).ok_or("no 'layers'")?;
        if listed.is_empty() || listed.len() > MAX_LAYERS {
            return Err(format!("{DESCRIPTION} lists {} layers: an image has 1 to {MAX_LAYERS}", listed.len()));
        }
        for (i, layer) in listed.iter().enumerate() {
            let bad = |what: &str| format!("layer {} of {DESCRIPTION}: {what}", i + 1);
            let sha256 = layer
                .get("diffId")
                .and_then(Value::as_str)
                .and_then(|d| d.strip_prefix("sha256:"))
                .and_then(parse_hex)
                .ok_or_else(|| bad("no 'diffId' sha256:<hex>"))?;
            let size = layer.get("size").and_then(Value::as_u64).ok_or_else(|| bad("no 'size'"))?;
            let store_path = |p: &Value| {
                p.as_str().and_then(|p| StorePath::parse(p).ok()).ok_or_else(|| bad("a path is not a store path"))
            };
            let contents = match (
                layer.get("paths").and_then(Value::as_array),
                layer.get("debianRoot"),
                layer.get("file").and_then(Value::as_str),
            ) {
                (Some(paths), None, None) => {
                    Holds::Paths(paths.iter().map(store_path).collect::<std::result::Result<_, _>>()?)
                }
                (None, Some(root), None) => Holds::DebianRoot(store_path(root)?),
                (None, None, Some(CUSTOMISATION)) => Holds::Customisation,
                _ => return Err(bad(&format!("needs 'paths', 'debianRoot' or \"file\": \"{CUSTOMISATION}\""))),
            };
            layers.push(DescribedLayer { tar: Digest { sha256, size }, contents });
        }
        let customisations = layers.iter().filter(|l| l.contents == Holds::Customisation).count();
        if customisations > 1 {
            return Err(format!("{DESCRIPTION} names {CUSTOMISATION} for {customisations} layers; an image has one"));
        }
        let (repo_tag, tag) = (string("repoTag")?, string("tag")?);
        if !is_tag(&tag) || !repo_tag.rsplit_once(':').is_some_and(|(name, t)| is_name(name) && t == tag) {
            return Err(format!(
                "{DESCRIPTION} names the image '{repo_tag}' with tag '{tag}': not NAME:TAG as Docker names images"
            ));
        }
        Ok(Description { repo_tag, tag, layers })
    }
}

/// The most layers a description may list (Docker's limit is 127; a
/// description is untrusted, so the bound keeps reading it small).
const MAX_LAYERS: usize = 1000;

/// A tag as the image builder writes one: no spaces, control characters
/// or slashes (its syntax is the recipe's `tag`; clients check the rest).
fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == ':')
}

/// An image name as the builder writes one (`imageName`): no spaces or
/// control characters.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A streamed image read back: its description, its config, and its
/// layers ready to be made.
pub struct StreamImage {
    pub description: Description,
    pub config: String,
    pub layers: Vec<Layer>,
}

impl StreamImage {
    /// The image as a registry push reads it: each layer made from the
    /// store when it is read.
    pub fn located(&self) -> LocatedImage {
        let layers = self
            .layers
            .iter()
            .zip(&self.description.layers)
            .map(|(layer, described)| {
                let diff_id = format!("sha256:{}", hex(&described.tar.sha256));
                let what = PathBuf::from(format!("the layer {diff_id}"));
                LocatedLayer::made(diff_id, what, layer.source.clone())
            })
            .collect();
        LocatedImage { config: self.config.clone().into_bytes(), layers }
    }
}

/// Whether `dir` holds a stream image's description.
pub fn is_stream_image(dir: &Path) -> bool {
    dir.join(DESCRIPTION).is_file()
}

/// Reads the stream image in the directory `dir` (a store path's physical
/// location, or a copy), whose layers hold paths of `store`.
pub fn open(dir: &Path, store: &Store) -> Result<StreamImage> {
    let bad = |message: String| ImageError::NotAnImage { path: dir.to_path_buf(), message };
    let handle = confined::open_dir(rustix::fs::CWD, dir.as_os_str()).map_err(io_err("reading", dir))?;
    let read = |name: &str, limit: u64| -> Result<Vec<u8>> {
        let path = dir.join(name);
        let file: File = confined::open_file(handle.as_fd(), OsStr::new(name)).map_err(io_err("reading", &path))?;
        let mut bytes = Vec::new();
        file.take(limit + 1).read_to_end(&mut bytes).map_err(io_err("reading", &path))?;
        if bytes.len() as u64 > limit {
            return Err(bad(format!("{name} is larger than {limit} bytes")));
        }
        Ok(bytes)
    };
    let description = Description::parse(&read(DESCRIPTION, MAX_DOCUMENT)?).map_err(bad)?;
    let config = String::from_utf8(read(CONFIG, MAX_DOCUMENT)?).map_err(|_| bad(format!("{CONFIG} is not UTF-8")))?;
    check_config(&config, &description).map_err(bad)?;
    let store_dir = store.store_dir();
    // A layer whose digest this store's own digest cache records for the
    // same paths is counted, not hashed again, when made (as the image
    // builder does); any other claim in the description (which any
    // builder, cache or copy could have written) is checked by hashing.
    let cache = DigestCache::open(store)?;
    let mut layers = Vec::new();
    for layer in &description.layers {
        let valid = |path: &StorePath| match store.is_valid(path) {
            true => Ok(()),
            false => Err(bad(format!("a layer holds {path}, which is not valid in this store"))),
        };
        let source = match &layer.contents {
            Holds::Paths(paths) => {
                paths.iter().try_for_each(valid)?;
                produce::store_layer(&store_dir, paths)
            }
            Holds::DebianRoot(root) => {
                valid(root)?;
                debian_root::root_layer(&store_dir, root)
            }
            Holds::Customisation => Source::Bytes(Arc::new(read(CUSTOMISATION, MAX_CUSTOMISATION)?)),
        };
        let recorded = layer.contents.cache_key().is_some_and(|key| cache.get(key).tar == Some(layer.tar));
        layers.push(Layer { source, known: Some(layer.tar), recorded, holds: layer.contents.clone() });
    }
    Ok(StreamImage { description, config, layers })
}

/// The config's `rootfs.diff_ids` must be the described layers', in order:
/// an image whose config names other layers than it holds is refused.
fn check_config(config: &str, description: &Description) -> std::result::Result<(), String> {
    let value: Value = serde_json::from_str(config).map_err(|e| format!("{CONFIG} is not JSON: {e}"))?;
    let named: Vec<&str> = value
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .ok_or(format!("{CONFIG} has no rootfs.diff_ids"))?
        .iter()
        .map(|d| d.as_str().unwrap_or(""))
        .collect();
    let described: Vec<String> = description.layers.iter().map(|l| format!("sha256:{}", hex(&l.tar.sha256))).collect();
    if named != described {
        return Err(format!(
            "{CONFIG} names the layers {named:?}, but {DESCRIPTION} describes {described:?}: the two files disagree"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_store::store_path::PathKind;
    use sha2::{Digest as _, Sha256 as Sha256Digest};

    #[test]
    fn files_of_a_description_that_are_links_are_never_followed() {
        // A description (from any builder, or a copy) whose customisation
        // layer, or config, is a link to a host file: refused, and the host
        // file's bytes are never read into an image.
        let root = std::env::temp_dir().join(format!("mini-stream-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = Store::open(&root.join("store")).unwrap();
        let secret = root.join("secret");
        std::fs::write(&secret, "host secret").unwrap();
        let dir = root.join("image");
        std::fs::create_dir_all(&dir).unwrap();
        let tar = Digest { sha256: Sha256Digest::digest(b"host secret").into(), size: 11 };
        let description = Description {
            repo_tag: "x:1".into(),
            tag: "1".into(),
            layers: vec![DescribedLayer { tar, contents: Holds::Customisation }],
        };
        std::fs::write(dir.join(DESCRIPTION), description.to_json()).unwrap();
        let config = json!({ "rootfs": { "diff_ids": [format!("sha256:{}", hex(&tar.sha256))] } }).to_string();
        std::fs::write(dir.join(CONFIG), &config).unwrap();
        std::os::unix::fs::symlink(&secret, dir.join(CUSTOMISATION)).unwrap();
        assert!(open(&dir, &store).is_err(), "a linked customisation layer is refused");
        std::fs::remove_file(dir.join(CUSTOMISATION)).unwrap();
        std::fs::write(dir.join(CUSTOMISATION), "host secret").unwrap();
        std::fs::remove_file(dir.join(CONFIG)).unwrap();
        let linked_config = root.join("config");
        std::fs::write(&linked_config, &config).unwrap();
        std::os::unix::fs::symlink(&linked_config, dir.join(CONFIG)).unwrap();
        assert!(open(&dir, &store).is_err(), "a linked config is refused");
        std::fs::remove_file(dir.join(CONFIG)).unwrap();
        std::fs::write(dir.join(CONFIG), &config).unwrap();
        assert!(open(&dir, &store).is_ok(), "the same files, not links, are read");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn descriptions_round_trip_and_bad_ones_are_refused() {
        let digest = blake3::hash(b"x");
        let path = StorePath::compute(&PathKind::Source { references: &[] }, "sha256", digest.as_bytes(), "x").unwrap();
        let d = Description {
            repo_tag: "hello:v1".into(),
            tag: "v1".into(),
            layers: vec![
                DescribedLayer {
                    tar: Digest { sha256: [3; 32], size: 4096 },
                    contents: Holds::DebianRoot(path.clone()),
                },
                DescribedLayer { tar: Digest { sha256: [1; 32], size: 2048 }, contents: Holds::Paths(vec![path]) },
                DescribedLayer { tar: Digest { sha256: [2; 32], size: 1024 }, contents: Holds::Customisation },
            ],
        };
        assert_eq!(Description::parse(d.to_json().as_bytes()).unwrap(), d);
        for bad in [
            d.to_json().replace("mini-stream-image/1", "other"),
            d.to_json().replace(CUSTOMISATION, "../../etc/passwd"),
            d.to_json().replace("/mini/store/", "/etc/"),
            d.to_json().replace("sha256:01", "sha256:zz"),
            d.to_json().replace("hello:v1", "Hello World:v1"),
            d.to_json().replace("\"tag\":\"v1\"", "\"tag\":\"v2\""),
            d.to_json().replace(r#""paths":["#, r#""file":"customisation.tar","x":["#),
            d.to_json().replace(r#""paths":["#, r#""debianRoot":"/mini/store/x","paths":["#),
            d.to_json().replace(r#""debianRoot":"/mini/store/"#, r#""debianRoot":"/etc/"#),
        ] {
            assert!(Description::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
