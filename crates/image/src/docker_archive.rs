//! Writing an image out: as a docker-archive (what `docker load`, `podman
//! load` and skopeo read), to a file or any stream, or into an OCI image
//! layout directory. Layers are made from the store as they are written
//! (`produce`), each checked against its known digest: by its size when
//! the digest is this store's own record (the digest cache), by hashing it
//! otherwise.
//!
//! A docker-archive is written front to back in one pass: the layers in
//! order as `NNN/layer.tar`, then the config (named by its digest, which
//! the layers' digests decide), then `manifest.json`. Every member's size
//! is known before it is written, so the archive's size is too, and a
//! caller can hash the archive from the bytes as they go out
//! ([`mini_store::nar::FileHasher`]) instead of reading it back.
//!
//! An OCI layout gets only the blobs it lacks; its `index.json` keeps the
//! other tags it holds.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use mini_store::encoding::hex;
use mini_store::store_path::StorePath;
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::compress::Compressor;
use crate::error::{io_err, ImageError, Result};
use crate::layer_cache::{temporary, Digest, Key};
use crate::oci::{self, Descriptor};
use crate::produce::{self, Made, Piece, Source};
use crate::tarball;

/// One layer of an image to write.
#[derive(Clone)]
pub struct Layer {
    pub source: Source,
    /// Its tar's digest and size, when known before it is made (from the
    /// digest cache, or a stream image's description); checked when made.
    pub known: Option<Digest>,
    /// Whether `known` is this store's own record (the digest cache), so
    /// the layer is only counted when made, not hashed again; a digest read
    /// from anywhere else is checked by hashing.
    pub recorded: bool,
    /// What it holds.
    pub holds: Holds,
}

/// What a layer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holds {
    /// Store paths, under `/mini/store` (with `single` layering, the
    /// customisation entries too).
    Paths(Vec<StorePath>),
    /// A Debian root's tree (`fromDebian`), at `/`.
    DebianRoot(StorePath),
    /// The customisation layer: links, users, extra files.
    Customisation,
}

impl Holds {
    /// Its key in the digest cache (none for the customisation layer,
    /// which is made anew for every image).
    pub fn cache_key(&self) -> Option<Key<'_>> {
        match self {
            Holds::Paths(paths) => Some(Key::Paths(paths)),
            Holds::DebianRoot(root) => Some(Key::DebianRoot(root)),
            Holds::Customisation => None,
        }
    }

    /// What it holds, as the image's history says (`inspect` reads a
    /// Debian root's path back from it).
    pub fn comment(&self) -> String {
        match self {
            Holds::Paths(paths) => paths.iter().map(StorePath::to_string).collect::<Vec<_>>().join(" "),
            Holds::DebianRoot(root) => format!("{DEBIAN_ROOT_COMMENT}{root}"),
            Holds::Customisation => "customisation layer".to_string(),
        }
    }
}

/// How a Debian root layer's history comment starts; the root's store
/// path follows.
pub const DEBIAN_ROOT_COMMENT: &str = "debian root ";

impl Layer {
    /// What `produce` makes of this layer: counted against a digest this
    /// store recorded, hashed otherwise.
    fn job(&self) -> produce::Job<'_> {
        produce::Job { source: &self.source, recorded: self.known.filter(|_| self.recorded) }
    }
}

/// An image to write: its layers, and its config given their diff_ids.
pub struct Image<'a> {
    pub layers: &'a [Layer],
    pub config: &'a (dyn Fn(&[[u8; 32]]) -> String + Sync),
    /// `name:tag`, in the archive's manifest and the OCI index.
    pub repo_tag: String,
    /// The OCI reference name.
    pub tag: String,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A layer's member name in a docker-archive.
fn member_name(index: usize, compressor: Compressor) -> String {
    format!("{:03}/layer.{}", index + 1, compressor.extension())
}

fn padded(size: u64) -> u64 {
    size.div_ceil(512) * 512
}

/// A member header with mini's fixed metadata.
fn member_header(name: &str, size: u64) -> io::Result<tar::Header> {
    let mut header = tarball::header(tar::EntryType::Regular, 0o444, size, None)?;
    header.set_path(name)?;
    header.set_cksum();
    Ok(header)
}

fn mismatch(index: usize, layer: &Layer, made: &Made) -> ImageError {
    let known = layer.known.map(|k| format!("sha256:{} ({} bytes)", hex(&k.sha256), k.size)).unwrap_or_default();
    let why = match &layer.holds {
        Holds::Customisation => "the customisation layer's recorded tar was altered".to_string(),
        holds => format!(
            "either a store path it holds ({}) changed (`mini store verify` finds out, `--repair` mends it), or the digest recorded for it (a streamed image's description) was altered",
            holds.comment()
        ),
    };
    ImageError::Io {
        action: "making",
        path: format!("layer {}", index + 1).into(),
        source: io::Error::other(format!(
            "it came out as sha256:{} ({} bytes), not the {known} recorded for it: {why}",
            hex(&made.tar.sha256),
            made.tar.size,
        )),
    }
}

/// Checks a made layer against what was known of it.
pub(crate) fn check(index: usize, layer: &Layer, made: &Made) -> Result<()> {
    match layer.known {
        Some(known) if known != made.tar => Err(mismatch(index, layer, made)),
        _ => Ok(()),
    }
}

/// The layers' tar sizes: known ones as they are, the others measured
/// (several at once).
pub fn layer_sizes(layers: &[Layer]) -> Result<Vec<u64>> {
    layers.par_iter().map(|l| l.known.map(|k| Ok(k.size)).unwrap_or_else(|| l.source.size())).collect()
}

/// A docker-archive about to be written: every member's size is known.
pub struct DockerArchive<'a> {
    image: &'a Image<'a>,
    sizes: Vec<u64>,
    /// Layers left out of the archive (a daemon already has them); the
    /// manifest still lists them.
    omit: BTreeSet<usize>,
    config_len: u64,
    manifest_len: u64,
}

impl<'a> DockerArchive<'a> {
    pub fn plan(image: &'a Image<'a>, sizes: Vec<u64>, omit: BTreeSet<usize>) -> DockerArchive<'a> {
        // The documents' lengths do not depend on the digests in them.
        let config_len = (image.config)(&vec![[0; 32]; image.layers.len()]).len() as u64;
        let manifest_len = manifest(image, &[0; 32], Compressor::None).len() as u64;
        DockerArchive { image, sizes, omit, config_len, manifest_len }
    }

    /// The archive's size in bytes.
    pub fn size(&self) -> u64 {
        let layers: u64 =
            self.sizes.iter().enumerate().filter(|(i, _)| !self.omit.contains(i)).map(|(_, s)| 512 + padded(*s)).sum();
        layers + 512 + padded(self.config_len) + 512 + padded(self.manifest_len) + 1024
    }

    /// Writes the archive into `out`; returns each layer as made (`None`
    /// for omitted layers, whose digests are the known ones).
    pub fn write(&self, out: &mut dyn Write) -> Result<Vec<Option<Made>>> {
        let layers = self.image.layers;
        let included: Vec<usize> = (0..layers.len()).filter(|i| !self.omit.contains(i)).collect();
        let jobs: Vec<produce::Job> = included
            .iter()
            .map(|i| {
                let layer = &layers[*i];
                layer.job()
            })
            .collect();
        let mut diff_ids: Vec<[u8; 32]> =
            layers.iter().map(|l| l.known.map(|k| k.sha256).unwrap_or_default()).collect();
        let mut made_all: Vec<Option<Made>> = vec![None; layers.len()];
        let failed = |e: io::Error| ImageError::Io { action: "writing", path: "the docker-archive".into(), source: e };
        produce::in_order(&jobs, Compressor::None, |piece| {
            match piece {
                Piece::Start(n) => {
                    let i = included[n];
                    out.write_all(
                        member_header(&member_name(i, Compressor::None), self.sizes[i]).map_err(failed)?.as_bytes(),
                    )
                }
                Piece::Bytes(bytes) => out.write_all(bytes),
                Piece::End(n, made) => {
                    let i = included[n];
                    check(i, &layers[i], &made)?;
                    if made.tar.size != self.sizes[i] {
                        return Err(mismatch(i, &layers[i], &made));
                    }
                    diff_ids[i] = made.tar.sha256;
                    made_all[i] = Some(made);
                    out.write_all(&[0; 512][..(padded(made.tar.size) - made.tar.size) as usize])
                }
            }
            .map_err(failed)
        })?;
        let config = (self.image.config)(&diff_ids);
        write_documents(out, self.image, &config, Compressor::None).map_err(failed)?;
        Ok(made_all)
    }
}

/// The config and `manifest.json` members, and the end of the archive.
fn write_documents(out: &mut dyn Write, image: &Image, config: &str, compressor: Compressor) -> io::Result<()> {
    let config_digest = sha256(config.as_bytes());
    let manifest = manifest(image, &config_digest, compressor);
    for (name, bytes) in
        [(format!("{}.json", hex(&config_digest)), config.as_bytes()), ("manifest.json".into(), manifest.as_bytes())]
    {
        out.write_all(member_header(&name, bytes.len() as u64)?.as_bytes())?;
        out.write_all(bytes)?;
        out.write_all(&[0; 512][..(padded(bytes.len() as u64) - bytes.len() as u64) as usize])?;
    }
    // A tar ends with two empty blocks.
    out.write_all(&[0; 1024])?;
    out.flush()
}

fn manifest(image: &Image, config_digest: &[u8; 32], compressor: Compressor) -> String {
    let layer_files: Vec<String> = (0..image.layers.len()).map(|i| member_name(i, compressor)).collect();
    oci::docker_manifest(&format!("{}.json", hex(config_digest)), &image.repo_tag, &layer_files)
}

/// Writes a docker-archive at `out` of layers already made into blob
/// files (compressed layers: their sizes are known only once made). The
/// blobs are copied file to file, by the kernel where it can.
pub fn write_docker_archive_files(
    image: &Image,
    blobs: &[(std::path::PathBuf, Made)],
    compressor: Compressor,
    out: &Path,
) -> Result<()> {
    let file = File::create(out).map_err(io_err("creating", out))?;
    let mut file = file;
    for (i, (path, made)) in blobs.iter().enumerate() {
        let mut blob = File::open(path).map_err(io_err("reading", path))?;
        let mut write = |file: &mut File| -> io::Result<()> {
            file.write_all(member_header(&member_name(i, compressor), made.blob.size)?.as_bytes())?;
            let copied = io::copy(&mut blob, file)?;
            if copied != made.blob.size {
                return Err(io::Error::other(format!("{} changed while it was copied", path.display())));
            }
            file.write_all(&[0; 512][..(padded(made.blob.size) - made.blob.size) as usize])
        };
        write(&mut file).map_err(io_err("writing", out))?;
    }
    let diff_ids: Vec<[u8; 32]> = blobs.iter().map(|(_, m)| m.tar.sha256).collect();
    let config = (image.config)(&diff_ids);
    let mut buffered = BufWriter::new(file);
    write_documents(&mut buffered, image, &config, compressor).map_err(io_err("writing", out))
}

/// Writes `image` as an OCI layout at `dir` (made if missing), its layers
/// compressed by `compressor`. Blobs the layout already holds are not
/// made again (when their digest is known beforehand); the index keeps the
/// layout's other tags.
pub fn write_oci_layout(
    image: &Image,
    dir: &Path,
    compressor: Compressor,
    known_blobs: &[Option<Digest>],
) -> Result<OciWritten> {
    // The layout's other tags, read first: a bad index fails before any
    // blob is made.
    let index_path = dir.join("index.json");
    let others = other_manifests(&index_path, &image.tag)?;
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
    let have = |digest: &Digest| {
        fs::symlink_metadata(blobs.join(hex(&digest.sha256))).is_ok_and(|m| m.is_file() && m.len() == digest.size)
    };
    let made: Vec<(Made, bool)> = image
        .layers
        .par_iter()
        .enumerate()
        .map(|(i, layer)| {
            let blob_known =
                if compressor == Compressor::None { layer.known } else { known_blobs.get(i).copied().flatten() };
            if let (Some(tar), Some(blob)) = (layer.known, blob_known) {
                if have(&blob) {
                    return Ok((Made { tar, blob }, false));
                }
            }
            let target = blobs.join(format!("layer-{i}"));
            let tmp = temporary(&target);
            let file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
            let job = layer.job();
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let result = job.make(compressor, &mut out).and_then(|made| {
                out.flush().map_err(io_err("writing", &tmp))?;
                check(i, layer, &made)?;
                let name = blobs.join(hex(&made.blob.sha256));
                fs::rename(&tmp, &name).map_err(io_err("writing", &name))?;
                Ok((made, true))
            });
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result
        })
        .collect::<Result<_>>()?;
    let diff_ids: Vec<[u8; 32]> = made.iter().map(|(m, _)| m.tar.sha256).collect();
    let config = (image.config)(&diff_ids);
    let write = |path: &Path, bytes: &[u8]| -> Result<()> {
        let tmp = temporary(path);
        fs::write(&tmp, bytes).map_err(io_err("writing", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("writing", path))
    };
    let config_desc = Descriptor {
        media_type: oci::CONFIG_MEDIA_TYPE.into(),
        digest: sha256(config.as_bytes()),
        size: config.len() as u64,
    };
    write(&blobs.join(hex(&config_desc.digest)), config.as_bytes())?;
    let layers: Vec<Descriptor> = made
        .iter()
        .map(|(m, _)| Descriptor {
            media_type: compressor.media_type().into(),
            digest: m.blob.sha256,
            size: m.blob.size,
        })
        .collect();
    let manifest = oci::oci_manifest(&config_desc, &layers);
    let manifest_desc = Descriptor {
        media_type: oci::MANIFEST_MEDIA_TYPE.into(),
        digest: sha256(manifest.as_bytes()),
        size: manifest.len() as u64,
    };
    write(&blobs.join(hex(&manifest_desc.digest)), manifest.as_bytes())?;
    write(&index_path, oci::oci_index(&manifest_desc, &image.tag, &image.repo_tag, &others).as_bytes())?;
    write(&dir.join("oci-layout"), oci::oci_layout().as_bytes())?;
    let written = made.iter().filter(|(_, wrote)| *wrote).count();
    Ok(OciWritten { manifest: manifest_desc, made: made.into_iter().map(|(m, _)| m).collect(), written })
}

/// What [`write_oci_layout`] did.
pub struct OciWritten {
    pub manifest: Descriptor,
    /// Each layer's digests, bottom first.
    pub made: Vec<Made>,
    /// How many layer blobs were made (the others were there).
    pub written: usize,
}

/// The largest `index.json` read.
const MAX_INDEX: u64 = 16 << 20;

/// The manifests of an existing `index.json` tagged other than `tag`.
fn other_manifests(index: &Path, tag: &str) -> Result<Vec<Value>> {
    let not_an_index = |message: &str| ImageError::NotAnImage { path: index.to_path_buf(), message: message.into() };
    if fs::symlink_metadata(index).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Ok(Vec::new());
    }
    // Opened under the layout's handle, never through a link.
    let dir = index.parent().unwrap_or(Path::new("."));
    let handle = crate::confined::open_dir(rustix::fs::CWD, dir.as_os_str()).map_err(io_err("reading", dir))?;
    let file =
        crate::confined::open_file(&handle, std::ffi::OsStr::new("index.json")).map_err(io_err("reading", index))?;
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(file, MAX_INDEX + 1), &mut text).map_err(io_err("reading", index))?;
    if text.len() as u64 > MAX_INDEX {
        return Err(not_an_index("index.json is larger than 16 MiB"));
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| ImageError::NotAnImage {
        path: index.to_path_buf(),
        message: format!("index.json is not JSON: {e}"),
    })?;
    Ok(value
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| {
            m.pointer(&format!("/annotations/{}", oci::REF_NAME.replace('/', "~1"))).and_then(Value::as_str)
                != Some(tag)
        })
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn layer(bytes: &[u8]) -> Layer {
        Layer {
            source: Source::Bytes(Arc::new(bytes.to_vec())),
            known: None,
            recorded: false,
            holds: Holds::Customisation,
        }
    }

    fn config(diff_ids: &[[u8; 32]]) -> String {
        serde_json::json!({ "rootfs": { "diff_ids": diff_ids.iter().map(oci::digest).collect::<Vec<_>>() } })
            .to_string()
    }

    #[test]
    fn a_docker_archive_is_as_long_as_planned_and_reads_back() {
        let layers = [layer(&[1; 3000]), layer(&[2; 512]), layer(b"")];
        let image = Image { layers: &layers, config: &config, repo_tag: "x:y".into(), tag: "y".into() };
        let archive = DockerArchive::plan(&image, layer_sizes(&layers).unwrap(), BTreeSet::new());
        let mut out = Vec::new();
        archive.write(&mut out).unwrap();
        assert_eq!(out.len() as u64, archive.size());
        let mut tar = tar::Archive::new(&out[..]);
        let names: Vec<String> =
            tar.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names[..3], ["001/layer.tar", "002/layer.tar", "003/layer.tar"]);
        assert_eq!(names[4], "manifest.json");
        // Left out: the manifest still lists every layer; the size follows.
        let archive = DockerArchive::plan(&image, layer_sizes(&layers).unwrap(), BTreeSet::from([0]));
        let mut out = Vec::new();
        archive.write(&mut out).unwrap();
        assert_eq!(out.len() as u64, archive.size());
        assert!(!out.windows(3000).any(|w| w == [1; 3000]));
    }

    #[test]
    fn a_layer_that_is_not_what_was_known_is_an_error() {
        let mut bad = layer(b"changed");
        bad.known = Some(Digest { sha256: [9; 32], size: 7 });
        let layers = [bad];
        let image = Image { layers: &layers, config: &config, repo_tag: "x:y".into(), tag: "y".into() };
        let archive = DockerArchive::plan(&image, vec![7], BTreeSet::new());
        let e = archive.write(&mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("not the sha256:0909") && e.contains("recorded for it"), "{e}");
    }

    #[test]
    fn an_oci_index_that_is_a_link_is_never_followed() {
        let dir = std::env::temp_dir().join(format!("mini-oci-index-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let host = dir.join("host-index.json");
        fs::write(&host, r#"{"manifests":[{"annotations":{"org.opencontainers.image.ref.name":"other"}}]}"#).unwrap();
        std::os::unix::fs::symlink(&host, dir.join("index.json")).unwrap();
        assert!(other_manifests(&dir.join("index.json"), "v1").is_err());
        fs::remove_file(dir.join("index.json")).unwrap();
        fs::copy(&host, dir.join("index.json")).unwrap();
        assert_eq!(other_manifests(&dir.join("index.json"), "v1").unwrap().len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_layer_this_store_recorded_is_counted_not_hashed() {
        // The digest cache's own record is trusted for the digest (the
        // layer is not hashed again), but the size is still checked.
        let mut recorded = layer(b"seven b");
        recorded.known = Some(Digest { sha256: [9; 32], size: 7 });
        recorded.recorded = true;
        let layers = [recorded.clone()];
        let image = Image { layers: &layers, config: &config, repo_tag: "x:y".into(), tag: "y".into() };
        let made = DockerArchive::plan(&image, vec![7], BTreeSet::new()).write(&mut Vec::new()).unwrap();
        assert_eq!(made[0].unwrap().tar.sha256, [9; 32]);
        recorded.known = Some(Digest { sha256: [9; 32], size: 8 });
        let layers = [recorded];
        let image = Image { layers: &layers, config: &config, repo_tag: "x:y".into(), tag: "y".into() };
        assert!(DockerArchive::plan(&image, vec![8], BTreeSet::new()).write(&mut Vec::new()).is_err());
    }
}
