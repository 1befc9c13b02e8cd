//! The image to push, read from a docker-archive file or an OCI layout
//! directory: its config document as it is, and for each layer its diff_id
//! and where its bytes are. Layers are never read into memory here; a
//! layer is opened (and decompressed, if it is stored compressed) only
//! when it has to be compressed for the registry.
//!
//! An image may come from an untrusted build, so nothing in it is reached
//! through a link: an OCI layout's files are opened under its directory's
//! handle with `O_NOFOLLOW` (a blob that is a link, to a host file say, is
//! an error), and every file is opened once and read by position, never
//! opened again by name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};

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

/// Makes a layer's uncompressed tar on demand.
pub type Producer = Arc<dyn Fn() -> io::Result<Box<dyn Read + Send>> + Send + Sync>;

/// One layer: its diff_id and where its bytes are.
#[derive(Clone)]
pub struct Layer {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Where the bytes are, for messages.
    file: PathBuf,
    bytes: Bytes,
}

#[derive(Clone)]
enum Bytes {
    /// A stretch of a file, opened once.
    Slice { handle: Arc<File>, offset: u64, size: u64 },
    /// Made when read (a streamed image's layer, from the store).
    Produced(Producer),
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer").field("diff_id", &self.diff_id).field("file", &self.file).finish()
    }
}

impl Layer {
    /// A layer whose uncompressed tar `produce` makes when it is read;
    /// `what` names it in messages. Whatever it makes is checked against
    /// `diff_id` before it is sent.
    pub fn produced(diff_id: String, what: PathBuf, produce: Producer) -> Layer {
        Layer { diff_id, file: what, bytes: Bytes::Produced(produce) }
    }

    /// The layer's uncompressed tar stream.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        let (handle, offset, size) = match &self.bytes {
            Bytes::Slice { handle, offset, size } => (handle.clone(), *offset, *size),
            Bytes::Produced(produce) => return produce().map_err(io_err("make", &self.file)),
        };
        let bytes = Slice { file: handle, offset, end: offset + size };
        let mut reader = BufReader::with_capacity(256 * 1024, bytes);
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

/// A range of a shared file, read by position.
struct Slice {
    file: Arc<File>,
    offset: u64,
    end: u64,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
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

/// Opens the regular file `name` in `dir`, refusing a link.
fn open_in(dir: impl AsFd, name: &str, what: &str) -> std::result::Result<File, String> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::LOOP) => {
            return Err(format!(
                "{what} is a symbolic link; an OCI layout holds plain files and mini does not follow links in one"
            ))
        }
        Err(e) => return Err(format!("cannot read {what}: {}", io::Error::from(e))),
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => Ok(file),
        Ok(_) => Err(format!("{what} is not a regular file")),
        Err(e) => Err(format!("cannot read {what}: {e}")),
    }
}

/// Opens the directory `name` in `dir`, refusing a link.
fn open_dir_in(dir: impl AsFd, name: &str) -> std::result::Result<OwnedFd, String> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
            format!("{name} is not a directory (mini does not follow links in an OCI layout)")
        }
        e => format!("cannot read {name}: {}", io::Error::from(e)),
    })
}

fn read_small(file: File, what: &str) -> std::result::Result<Vec<u8>, String> {
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
    let root = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("cannot read it: {}", io::Error::from(e)))?;
    let blobs = open_dir_in(&root, "blobs").and_then(|b| open_dir_in(b, "sha256"));
    let blob = |digest: Option<&str>, what: &str| -> std::result::Result<(String, File), String> {
        let hex = digest.and_then(|d| d.strip_prefix("sha256:")).filter(|h| is_hex64(h));
        let hex = hex.ok_or_else(|| "a descriptor has no sha256 digest".to_string())?;
        let blobs = blobs.as_ref().map_err(Clone::clone)?;
        Ok((hex.to_string(), open_in(blobs, hex, &format!("{what} (blobs/sha256/{hex})"))?))
    };
    let index = parse_json(&read_small(open_in(&root, "index.json", "index.json")?, "index.json")?, "index.json")?;
    let entry = the_only(index.get("manifests").and_then(Value::as_array), "index.json")?;
    let (_, manifest) = blob(entry.get("digest").and_then(Value::as_str), "the manifest")?;
    let manifest = parse_json(&read_small(manifest, "the manifest")?, "the manifest")?;
    let (_, config) = blob(manifest.pointer("/config/digest").and_then(Value::as_str), "the config")?;
    let config = read_small(config, "the config")?;
    let ids = diff_ids(&config)?;
    let descriptors = manifest.get("layers").and_then(Value::as_array).ok_or("the manifest has no layers list")?;
    if descriptors.len() != ids.len() {
        return Err(format!("the manifest lists {} layers, the config {} diff_ids", descriptors.len(), ids.len()));
    }
    let layers = descriptors
        .iter()
        .zip(ids)
        .map(|(d, diff_id)| {
            let (hex, file) = blob(d.get("digest").and_then(Value::as_str), "a layer")?;
            let size = file.metadata().map_err(|e| format!("cannot read a layer: {e}"))?.len();
            let path = dir.join("blobs/sha256").join(hex);
            Ok(Layer { diff_id, file: path, bytes: Bytes::Slice { handle: Arc::new(file), offset: 0, size } })
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
    let file = Arc::new(File::open(path).map_err(io_err("read", path))?);
    let mut members: HashMap<String, Member> = HashMap::new();
    let mut archive = tar::Archive::new(BufReader::new(file.as_ref()));
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
    Ok(assemble_archive(path, &file, &members, &manifest))
}

fn assemble_archive(
    path: &Path,
    file: &Arc<File>,
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
    file.read_exact_at(&mut config, offset).map_err(|e| e.to_string())?;
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
            Ok(Layer { diff_id, file: path.to_path_buf(), bytes: Bytes::Slice { handle: file.clone(), offset, size } })
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
    fn oci_layouts_are_read_without_following_links() {
        let dir = std::env::temp_dir().join(format!("mini-registry-source-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let blobs = dir.join("layout/blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let (config, manifest, layer) = ("c".repeat(64), "d".repeat(64), "e".repeat(64));
        let diff_id = format!("sha256:{}", "a".repeat(64));
        std::fs::write(blobs.join(&config), format!(r#"{{"rootfs":{{"diff_ids":["{diff_id}"]}}}}"#)).unwrap();
        let manifest_doc =
            format!(r#"{{"config":{{"digest":"sha256:{config}"}},"layers":[{{"digest":"sha256:{layer}"}}]}}"#);
        std::fs::write(blobs.join(&manifest), manifest_doc).unwrap();
        let index = format!(r#"{{"manifests":[{{"digest":"sha256:{manifest}"}}]}}"#);
        std::fs::write(dir.join("layout/index.json"), &index).unwrap();
        std::fs::write(dir.join("secret"), "host secret").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), blobs.join(&layer)).unwrap();
        let message = |path: &Path| match read(path) {
            Err(RegistryError::NotAnImage { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        assert!(message(&dir.join("layout")).contains("is a symbolic link"), "{}", message(&dir.join("layout")));
        std::fs::remove_file(blobs.join(&layer)).unwrap();
        std::fs::write(blobs.join(&layer), "layer").unwrap();
        let image = read(&dir.join("layout")).unwrap();
        let mut bytes = Vec::new();
        image.layers[0].open().unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!((image.layers[0].diff_id.as_str(), bytes.as_slice()), (diff_id.as_str(), b"layer".as_slice()));
        std::fs::remove_file(dir.join("layout/index.json")).unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), dir.join("layout/index.json")).unwrap();
        assert!(message(&dir.join("layout")).starts_with("index.json is a symbolic link"));
        std::fs::remove_dir_all(&dir).unwrap();
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
