//! The image to push, read from a docker-archive file or an OCI layout
//! directory: its config document as it is, and for each layer its diff_id
//! and where its bytes are. Layers are never read into memory here; a
//! layer is opened (and decompressed, if it is stored compressed) only
//! when it has to be compressed for the registry.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::io_err;
use crate::{RegistryError, Result};

/// The largest JSON document (manifest, index, config) read into memory.
const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;

/// An image ready to push.
#[derive(Debug)]
pub struct Image {
    /// The config document's bytes, pushed unchanged.
    pub config: Vec<u8>,
    /// Bottom layer first.
    pub layers: Vec<Layer>,
}

/// One layer: its diff_id and where its bytes are.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    file: PathBuf,
    offset: u64,
    size: u64,
}

impl Layer {
    /// The layer's uncompressed tar stream.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        let mut file = File::open(&self.file).map_err(io_err("open", &self.file))?;
        file.seek(SeekFrom::Start(self.offset)).map_err(io_err("read", &self.file))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file.take(self.size));
        let magic = reader.fill_buf().map_err(io_err("read", &self.file))?;
        Ok(if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::bufread::MultiGzDecoder::new(reader))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(zstd::Decoder::with_buffer(reader).map_err(io_err("read", &self.file))?)
        } else {
            Box::new(reader)
        })
    }
}

/// Reads the image at `path`: an OCI layout directory or a docker-archive.
/// An input holding several images must be an OCI layout whose index
/// lists exactly one, or an archive whose manifest does.
pub fn read(path: &Path) -> Result<Image> {
    let meta = std::fs::metadata(path).map_err(io_err("read", path))?;
    let bad = |message: String| RegistryError::NotAnImage { path: path.to_path_buf(), message };
    if meta.is_dir() {
        read_oci(path).map_err(bad)
    } else {
        read_archive(path)?.map_err(bad)
    }
}

fn parse_json(bytes: &[u8], what: &str) -> std::result::Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what} is not JSON: {e}"))
}

fn read_small(path: &Path, what: &str) -> std::result::Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(format!("{what} is larger than {MAX_DOCUMENT} bytes"));
    }
    Ok(bytes)
}

/// The `sha256:<hex>` diff_ids a config lists.
fn diff_ids(config: &[u8]) -> std::result::Result<Vec<String>, String> {
    let doc = parse_json(config, "the config")?;
    let ids = doc.pointer("/rootfs/diff_ids").and_then(Value::as_array).ok_or("the config has no rootfs.diff_ids")?;
    ids.iter()
        .map(|id| {
            id.as_str()
                .filter(|s| s.strip_prefix("sha256:").is_some_and(is_hex64))
                .map(str::to_string)
                .ok_or_else(|| format!("the config's diff_id {id} is not a sha256:<hex> digest"))
        })
        .collect()
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn the_only<'a>(list: Option<&'a Vec<Value>>, what: &str) -> std::result::Result<&'a Value, String> {
    match list.map(Vec::as_slice) {
        Some([one]) => Ok(one),
        Some([]) | None => Err(format!("{what} lists no image")),
        Some(_) => Err(format!("{what} lists several images; mini pushes one at a time")),
    }
}

fn read_oci(dir: &Path) -> std::result::Result<Image, String> {
    let blob = |digest: Option<&str>| -> std::result::Result<PathBuf, String> {
        let hex = digest.and_then(|d| d.strip_prefix("sha256:")).filter(|h| is_hex64(h));
        hex.map(|h| dir.join("blobs/sha256").join(h)).ok_or_else(|| "a descriptor has no sha256 digest".to_string())
    };
    let index = parse_json(&read_small(&dir.join("index.json"), "index.json")?, "index.json")?;
    let entry = the_only(index.get("manifests").and_then(Value::as_array), "index.json")?;
    let manifest_path = blob(entry.get("digest").and_then(Value::as_str))?;
    let manifest = parse_json(&read_small(&manifest_path, "the manifest")?, "the manifest")?;
    let config_path = blob(manifest.pointer("/config/digest").and_then(Value::as_str))?;
    let config = read_small(&config_path, "the config")?;
    let ids = diff_ids(&config)?;
    let descriptors = manifest.get("layers").and_then(Value::as_array).ok_or("the manifest has no layers list")?;
    if descriptors.len() != ids.len() {
        return Err(format!("the manifest lists {} layers, the config {} diff_ids", descriptors.len(), ids.len()));
    }
    let layers = descriptors
        .iter()
        .zip(ids)
        .map(|(d, diff_id)| {
            let file = blob(d.get("digest").and_then(Value::as_str))?;
            let size = std::fs::metadata(&file).map_err(|e| format!("cannot read a layer: {e}"))?.len();
            Ok(Layer { diff_id, file, offset: 0, size })
        })
        .collect::<std::result::Result<_, String>>()?;
    Ok(Image { config, layers })
}

/// Where a member of the archive is: its data, or a link to another member.
enum Member {
    Data { offset: u64, size: u64 },
    Link(String),
}

fn read_archive(path: &Path) -> Result<std::result::Result<Image, String>> {
    let file = File::open(path).map_err(io_err("read", path))?;
    let mut members: HashMap<String, Member> = HashMap::new();
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut manifest = None;
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return Ok(Err(format!("not a tar archive: {e}"))),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Ok(Err(format!("not a tar archive: {e}"))),
        };
        let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
            let target = if kind.is_symlink() { join_relative(&name, &target) } else { normalize(&target) };
            members.insert(name, Member::Link(target));
        } else if kind.is_file() {
            if name == "manifest.json" {
                let mut bytes = Vec::new();
                (&mut entry).take(MAX_DOCUMENT).read_to_end(&mut bytes).map_err(io_err("read", path))?;
                manifest = Some(bytes);
            }
            members.insert(name, Member::Data { offset: entry.raw_file_position(), size: entry.size() });
        }
    }
    let Some(manifest) = manifest else { return Ok(Err("it has no manifest.json".into())) };
    Ok(assemble_archive(path, &members, &manifest))
}

fn assemble_archive(
    path: &Path,
    members: &HashMap<String, Member>,
    manifest: &[u8],
) -> std::result::Result<Image, String> {
    let manifest = parse_json(manifest, "manifest.json")?;
    let image = the_only(manifest.as_array(), "manifest.json")?;
    let locate = |name: Option<&str>| -> std::result::Result<(u64, u64), String> {
        let mut name = normalize(name.ok_or("manifest.json names no file")?);
        for _ in 0..16 {
            match members.get(&name) {
                Some(Member::Data { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(target)) => name = target.clone(),
                None => return Err(format!("manifest.json names '{name}', which the archive does not hold")),
            }
        }
        Err(format!("'{name}' is a chain of links"))
    };
    let (offset, size) = locate(image.get("Config").and_then(Value::as_str))?;
    if size > MAX_DOCUMENT {
        return Err("the config is too large".into());
    }
    let mut config = vec![0; size as usize];
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(offset)).and_then(|_| file.read_exact(&mut config)).map_err(|e| e.to_string())?;
    let ids = diff_ids(&config)?;
    let names = image.get("Layers").and_then(Value::as_array).ok_or("manifest.json has no Layers list")?;
    if names.len() != ids.len() {
        return Err(format!("manifest.json lists {} layers, the config {} diff_ids", names.len(), ids.len()));
    }
    let layers = names
        .iter()
        .zip(ids)
        .map(|(name, diff_id)| {
            let (offset, size) = locate(name.as_str())?;
            Ok(Layer { diff_id, file: path.to_path_buf(), offset, size })
        })
        .collect::<std::result::Result<_, String>>()?;
    Ok(Image { config, layers })
}

fn normalize(name: &str) -> String {
    name.split('/').filter(|p| !p.is_empty() && *p != ".").collect::<Vec<_>>().join("/")
}

/// A symlink target resolved against the directory of the link `name`.
fn join_relative(name: &str, target: &str) -> String {
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_against_their_directory() {
        assert_eq!(join_relative("abc/layer.tar", "../def/layer.tar"), "def/layer.tar");
        assert_eq!(normalize("./blobs//sha256/x"), "blobs/sha256/x");
    }

    #[test]
    fn configs_must_list_sha256_diff_ids() {
        let hex = "a".repeat(64);
        let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{hex}"]}}}}"#);
        assert_eq!(diff_ids(config.as_bytes()).unwrap(), [format!("sha256:{hex}")]);
        assert!(diff_ids(br#"{"rootfs":{"diff_ids":["md5:00"]}}"#).is_err());
        assert!(diff_ids(b"{}").is_err());
    }
}
