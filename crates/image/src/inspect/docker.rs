//! Reading a docker-archive: a tar holding `manifest.json`, config
//! documents and layer blobs, found by the names the manifest gives
//! (mini's `<hex>.tar[.gz|.zst]`, `docker save`'s `<id>/layer.tar`, newer
//! Docker's `blobs/sha256/<hex>`, symlinks between them included).
//!
//! A tar is sequential and the manifest may come last, so the archive is
//! read twice: once to index member names (seeking over data when the file
//! is a plain tar) and read the manifest, once to read the configs and scan
//! the layers in archive order. A `docker save | gzip` file is accepted
//! too, by decompressing each time.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use mini_store::hash_io::read_full;
use serde_json::Value;

use super::layer::{scan_layer, LayerScan};
use super::located::{the_only, LocatedImage, LocatedLayer};
use super::tar_stream::{Kind, Seekable, Source, Streamed, TarReader};
use super::{
    is_sha256_hex, not_an_image, parse_config, parse_json, read_document, sha256_of, summarize, Budget, Config,
    ImageSummary, ReadLayer, MAX_DOCUMENT,
};
use crate::compress::Compressor;
use crate::error::{io_err, Result};

/// How many links a member name is followed through.
const MAX_LINKS: usize = 8;
/// How many bytes of member names the index may hold.
const MAX_INDEX: u64 = 64 * 1024 * 1024;
const NO_MANIFEST: &str = "it holds no manifest.json (not a docker archive)";

/// One image of `manifest.json`.
#[derive(Debug, PartialEq, Eq)]
struct ManifestImage {
    config: String,
    tags: Vec<String>,
    layers: Vec<String>,
}

/// A member of the archive, by normalised name.
struct Member {
    ordinal: u64,
    kind: Kind,
    link: String,
    /// Where its data starts in the (uncompressed) archive, and its size.
    offset: u64,
    size: u64,
}

/// Every member, by normalised name.
type Members = HashMap<String, Member>;

/// What the second pass reads a member for.
#[derive(PartialEq, Eq)]
enum Role {
    Config,
    Layer,
}

/// What the second pass found in a member.
enum Read2 {
    Config(Vec<u8>),
    Layer(LayerScan),
}

pub(super) fn read(path: &Path) -> Result<Vec<ImageSummary>> {
    let bad = |message: String| not_an_image(path, message);
    let compression = outer_compression(path)?;
    let (members, manifest) = index(path, open(path, compression)?)?;
    let manifest = manifest.ok_or_else(|| bad(NO_MANIFEST.into()))?;
    let images = parse_manifest(&manifest).map_err(bad)?;

    let mut roles: HashMap<u64, Role> = HashMap::new();
    let mut resolved: Vec<(u64, Vec<u64>)> = Vec::new();
    for image in &images {
        let config = resolve(&members, &image.config).map_err(|e| bad(format!("the config {e}")))?.ordinal;
        assign(&mut roles, config, Role::Config, &image.config).map_err(bad)?;
        let mut layers = Vec::new();
        for (i, name) in image.layers.iter().enumerate() {
            let layer = resolve(&members, name).map_err(|e| bad(format!("layer {} {e}", i + 1)))?.ordinal;
            assign(&mut roles, layer, Role::Layer, name).map_err(bad)?;
            layers.push(layer);
        }
        resolved.push((config, layers));
    }
    let found = second_pass(path, compression, &roles)?;

    let mut summaries = Vec::new();
    let mut budget = Budget::default();
    for (image, (config_at, layer_ats)) in images.into_iter().zip(resolved) {
        budget.image().map_err(bad)?;
        let Some(Read2::Config(config_bytes)) = found.get(&config_at) else {
            return Err(bad("the archive changed while it was being read".into()));
        };
        let config = checked_config(&image.config, config_bytes).map_err(bad)?;
        let mut layers = Vec::new();
        for (i, (name, at)) in image.layers.iter().zip(&layer_ats).enumerate() {
            let Some(Read2::Layer(scan)) = found.get(at) else {
                return Err(bad("the archive changed while it was being read".into()));
            };
            if let Some(hex) = hex_name(name) {
                if scan.digest != hex {
                    return Err(bad(format!(
                        "layer {} ('{name}') hashes to sha256:{}, not to its name",
                        i + 1,
                        scan.digest
                    )));
                }
            }
            let media_type = scan.compression.media_type().to_string();
            layers.push(ReadLayer { name: format!("'{name}'"), scan: scan.clone(), media_type });
        }
        let source = path.display().to_string();
        summaries.push(summarize(&mut budget, &source, "docker-archive", image.tags, config, layers).map_err(bad)?);
    }
    Ok(summaries)
}

/// Records what member `at` is read for; one member cannot be both.
fn assign(roles: &mut HashMap<u64, Role>, at: u64, role: Role, name: &str) -> std::result::Result<(), String> {
    match roles.get(&at) {
        Some(existing) if *existing != role => Err(format!("'{name}' is listed both as a config and as a layer")),
        _ => {
            roles.insert(at, role);
            Ok(())
        }
    }
}

/// Whether the archive itself is compressed, from its first bytes.
fn outer_compression(path: &Path) -> Result<Compressor> {
    let mut file = File::open(path).map_err(io_err("reading", path))?;
    let mut magic = [0u8; 4];
    let got = read_full(&mut file, &mut magic).map_err(io_err("reading", path))?;
    Ok(Compressor::detect(&magic[..got]))
}

/// The archive's tar stream, seekable when it is not compressed.
fn open(path: &Path, compression: Compressor) -> Result<Box<dyn Source>> {
    let file = BufReader::with_capacity(64 * 1024, File::open(path).map_err(io_err("reading", path))?);
    Ok(match compression {
        Compressor::None => Box::new(Seekable::new(file).map_err(io_err("reading", path))?),
        Compressor::Gzip => Box::new(Streamed(MultiGzDecoder::new(file))),
        Compressor::Zstd => Box::new(Streamed(zstd::Decoder::with_buffer(file).map_err(io_err("reading", path))?)),
    })
}

/// The first pass over the tar stream `source`: every member by name, and
/// the manifest's bytes.
fn index(path: &Path, source: impl Source) -> Result<(Members, Option<Vec<u8>>)> {
    let bad = |message: String| not_an_image(path, message);
    let mut tar = TarReader::new(source);
    let mut members = HashMap::new();
    let mut manifest = None;
    let (mut ordinal, mut indexed) = (0, 0);
    while let Some(entry) = tar.next_entry().map_err(bad)? {
        indexed += (entry.path.len() + entry.link.len()) as u64;
        if indexed > MAX_INDEX {
            return Err(bad(format!("its members' names take more than {MAX_INDEX} bytes")));
        }
        let name = normalize(&String::from_utf8_lossy(&entry.path));
        let (offset, size) = (tar.data_offset(), entry.size);
        if name == "manifest.json" && entry.kind == Kind::File {
            manifest = Some(read_document(tar.data(), "manifest.json").map_err(bad)?);
        }
        let link = String::from_utf8_lossy(&entry.link).into_owned();
        // As in tar, a later member of the same name replaces an earlier one.
        members.insert(name, Member { ordinal, kind: entry.kind, link, offset, size });
        ordinal += 1;
    }
    Ok((members, manifest))
}

/// The second pass: reads each config and scans each layer once.
fn second_pass(path: &Path, compression: Compressor, roles: &HashMap<u64, Role>) -> Result<HashMap<u64, Read2>> {
    let bad = |message: String| not_an_image(path, message);
    let mut tar = TarReader::new(open(path, compression)?);
    let mut found = HashMap::new();
    let mut ordinal = 0;
    while found.len() < roles.len() {
        let Some(entry) = tar.next_entry().map_err(bad)? else { break };
        let name = String::from_utf8_lossy(&entry.path).into_owned();
        match roles.get(&ordinal) {
            Some(Role::Config) => {
                let bytes = read_document(tar.data(), &format!("the config '{name}'")).map_err(bad)?;
                found.insert(ordinal, Read2::Config(bytes));
            }
            Some(Role::Layer) => {
                let scan = scan_layer(tar.data()).map_err(|e| bad(format!("the layer '{name}': {e}")))?;
                found.insert(ordinal, Read2::Layer(scan));
            }
            None => {}
        }
        ordinal += 1;
    }
    Ok(found)
}

/// The config `bytes` of the member `name`, checked against the digest
/// its name claims, if it claims one.
fn checked_config(name: &str, bytes: &[u8]) -> std::result::Result<Config, String> {
    if let Some(hex) = hex_name(name) {
        let actual = sha256_of(bytes);
        if actual != hex {
            return Err(format!("the config '{name}' hashes to sha256:{actual}, not to its name"));
        }
    }
    parse_config(bytes).map_err(|e| format!("{e} ('{name}')"))
}

/// Locates the one image of a plain docker-archive (see `located`): the
/// file is opened once, indexed, and its config and layers found by the
/// same name resolution as [`read`]'s.
pub(super) fn locate(path: &Path) -> Result<LocatedImage> {
    let bad = |message: String| not_an_image(path, message);
    let file = Arc::new(File::open(path).map_err(io_err("reading", path))?);
    let mut magic = [0u8; 4];
    let got = read_full(&mut file.as_ref(), &mut magic).map_err(io_err("reading", path))?;
    let compression = Compressor::detect(&magic[..got]);
    if compression != Compressor::None {
        return Err(bad(format!("the archive is {} compressed; decompress it first", compression.name())));
    }
    let tar = Seekable::new(BufReader::with_capacity(64 * 1024, file.as_ref())).map_err(io_err("reading", path))?;
    let (members, manifest) = index(path, tar)?;
    let manifest = manifest.ok_or_else(|| bad(NO_MANIFEST.into()))?;
    let image = the_only(parse_manifest(&manifest).map_err(bad)?, "manifest.json").map_err(bad)?;
    let config_member = resolve(&members, &image.config).map_err(|e| bad(format!("the config {e}")))?;
    if config_member.size > MAX_DOCUMENT {
        return Err(bad(format!("the config '{}' is larger than {MAX_DOCUMENT} bytes", image.config)));
    }
    let mut config = vec![0; config_member.size as usize];
    file.read_exact_at(&mut config, config_member.offset).map_err(io_err("reading", path))?;
    let diff_ids = checked_config(&image.config, &config).map_err(bad)?.diff_ids;
    if image.layers.len() != diff_ids.len() {
        return Err(bad(format!(
            "it has {} layer(s) but its config lists {} diff_id(s)",
            image.layers.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (i, (name, diff_id)) in image.layers.iter().zip(diff_ids).enumerate() {
        let member = resolve(&members, name).map_err(|e| bad(format!("layer {} {e}", i + 1)))?;
        let diff_id = format!("sha256:{diff_id}");
        layers.push(LocatedLayer::slice(diff_id, path.to_path_buf(), file.clone(), member.offset, member.size));
    }
    Ok(LocatedImage { config, layers })
}

/// `./a//b/` → `a/b`.
fn normalize(name: &str) -> String {
    name.split('/').filter(|p| !p.is_empty() && *p != ".").collect::<Vec<_>>().join("/")
}

/// The member a manifest name leads to, through symlinks and hard links;
/// an error saying what is wrong with it otherwise.
fn resolve<'m>(members: &'m Members, name: &str) -> std::result::Result<&'m Member, String> {
    let mut current = normalize(name);
    for _ in 0..MAX_LINKS {
        let Some(member) = members.get(&current) else {
            return Err(format!("'{name}' is listed in manifest.json but missing from the archive"));
        };
        current = match member.kind {
            Kind::File => return Ok(member),
            Kind::HardLink => normalize(&member.link),
            Kind::Symlink => {
                let dir = current.rsplit_once('/').map_or("", |(dir, _)| dir);
                join_relative(dir, &member.link)
                    .ok_or_else(|| format!("'{name}' is a link out of the archive ('{}')", member.link))?
            }
            Kind::Directory | Kind::Other => return Err(format!("'{name}' is not a file in the archive")),
        };
    }
    Err(format!("'{name}' is a chain of more than {MAX_LINKS} links"))
}

/// `dir` joined with a relative link target, `..` resolved inside the archive.
fn join_relative(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The hex digest a blob's name claims, for names that are one:
/// `<hex>.tar`, `<hex>.tar.gz`, `<hex>.json`, `blobs/sha256/<hex>`.
fn hex_name(name: &str) -> Option<&str> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = base.split('.').next().unwrap_or(base);
    is_sha256_hex(stem).then_some(stem)
}

fn parse_manifest(bytes: &[u8]) -> std::result::Result<Vec<ManifestImage>, String> {
    let doc = parse_json(bytes, "manifest.json")?;
    let Value::Array(items) = doc else { return Err("manifest.json is not a list of images".into()) };
    if items.is_empty() {
        return Err("manifest.json lists no images".into());
    }
    let strings = |v: Option<&Value>, i: usize, key: &str| -> std::result::Result<Vec<String>, String> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("manifest.json: image {i}'s \"{key}\" is not a list of strings")),
            Some(_) => Err(format!("manifest.json: image {i}'s \"{key}\" is not a list of strings")),
        }
    };
    let mut images = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let i = i + 1;
        let Value::Object(item) = item else { return Err(format!("manifest.json: image {i} is not an object")) };
        let config = item
            .get("Config")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("manifest.json: image {i} has no \"Config\" file name"))?
            .to_string();
        if !item.contains_key("Layers") {
            return Err(format!("manifest.json: image {i} has no \"Layers\" list"));
        }
        let layers = strings(item.get("Layers"), i, "Layers")?;
        let tags = strings(item.get("RepoTags"), i, "RepoTags")?;
        images.push(ManifestImage { config, tags, layers });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ImageError;
    use crate::inspect::testing::*;

    fn inspect_bytes(dir: &TempDir, name: &str, bytes: &[u8]) -> Result<Vec<ImageSummary>> {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        read(&path)
    }

    fn message(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
        match inspect_bytes(dir, name, bytes) {
            Err(ImageError::NotAnImage { message, .. }) => message,
            other => panic!("expected NotAnImage, got {other:?}"),
        }
    }

    #[test]
    fn reads_docker_save_layout_with_linked_layers_and_a_compressed_archive() {
        let dir = TempDir::new("docker-save");
        let image = sample_image();
        // `docker save`: `<id>/layer.tar`, the manifest first, a repeated
        // layer stored once and linked.
        let mut layers = image.layers.clone();
        layers.push(image.layers[0].clone());
        let config = config_for(&layers, "/bin/sh");
        let config_name = format!("{}.json", sha256_hex(&config));
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": null,
            "Layers": ["aaa/layer.tar", "./bbb/layer.tar", "ccc/layer.tar"],
        }])
        .to_string();
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in
            [("manifest.json", manifest.as_bytes()), ("aaa/layer.tar", &layers[0]), ("bbb/layer.tar", &layers[1])]
        {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "ccc/layer.tar", "../aaa/layer.tar").unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(config.len() as u64);
        b.append_data(&mut h, &config_name, &config[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let [summary] = inspect_bytes(&dir, "save.tar", &bytes).unwrap().try_into().unwrap();
        assert!(summary.tags.is_empty());
        assert_eq!(summary.layers.len(), 3);
        assert_eq!(summary.layers[0], summary.layers[2]);
        let [again] = inspect_bytes(&dir, "save.tar.gz", &gzip(&bytes)).unwrap().try_into().unwrap();
        assert_eq!(again.layers, summary.layers);
        let [again] = inspect_bytes(&dir, "save.tar.zst", &zstd_compress(&bytes)).unwrap().try_into().unwrap();
        assert_eq!(again.layers, summary.layers);
    }

    #[test]
    fn manifests_must_be_lists_of_images() {
        let dir = TempDir::new("docker-manifest");
        let no_manifest = tar_of(&[("a.tar", b"")]);
        assert_eq!(message(&dir, "a", &no_manifest), "it holds no manifest.json (not a docker archive)");
        let cases: [(&[u8], &str); 7] = [
            (b"{not json", "manifest.json is not JSON"),
            (br#"{"Config": "c.json"}"#, "manifest.json is not a list of images"),
            (b"[]", "manifest.json lists no images"),
            (b"[1]", "image 1 is not an object"),
            (br#"[{"Layers": []}]"#, "image 1 has no \"Config\" file name"),
            (br#"[{"Config": "c.json", "Layers": [1]}]"#, "image 1's \"Layers\" is not a list of strings"),
            (br#"[{"Config": "c.json"}]"#, "image 1 has no \"Layers\" list"),
        ];
        for (manifest, expected) in cases {
            let m = message(&dir, "m", &tar_of(&[("manifest.json", manifest)]));
            assert!(m.contains(expected), "{m:?} should say {expected:?}");
        }
    }

    #[test]
    fn missing_members_and_wrong_digests_are_named() {
        let dir = TempDir::new("docker-digests");
        let image = sample_image();
        let good = docker_archive(&image, false);
        let layer_name = format!("{}.tar", sha256_hex(&image.layers[1]));
        let config_name = format!("{}.json", sha256_hex(&image.config));
        let manifest = |layers: &[&str]| {
            serde_json::json!([{"Config": config_name, "RepoTags": ["x:y"], "Layers": layers}]).to_string().into_bytes()
        };

        let m = message(
            &dir,
            "missing",
            &tar_of(&[(&config_name, &image.config), ("manifest.json", &manifest(&["nope.tar"]))]),
        );
        assert_eq!(m, "layer 1 'nope.tar' is listed in manifest.json but missing from the archive");

        let m = message(&dir, "no-config", &tar_of(&[("manifest.json", &manifest(&[]))]));
        assert!(m.starts_with("the config '") && m.contains("missing from the archive"), "{m}");

        // A layer whose name is not its hash.
        let misnamed = format!("{}.tar", "0".repeat(64));
        let m = message(
            &dir,
            "misnamed",
            &tar_of(&[
                (&misnamed, &image.layers[0]),
                (&config_name, &image.config),
                ("manifest.json", &manifest(&[&misnamed])),
            ]),
        );
        assert!(m.starts_with(&format!("layer 1 ('{misnamed}') hashes to sha256:")), "{m}");

        // Layers in the wrong order: diff_ids do not match.
        let first = format!("{}.tar", sha256_hex(&image.layers[0]));
        let m = message(
            &dir,
            "swapped",
            &tar_of(&[
                (&first, &image.layers[0]),
                (&layer_name, &image.layers[1]),
                (&config_name, &image.config),
                ("manifest.json", &manifest(&[&layer_name, &first])),
            ]),
        );
        assert!(m.starts_with(&format!("layer 1 ('{layer_name}') uncompresses to sha256:")), "{m}");

        // Fewer layers than diff_ids.
        let m = message(
            &dir,
            "short",
            &tar_of(&[
                (&first, &image.layers[0]),
                (&config_name, &image.config),
                ("manifest.json", &manifest(&[&first])),
            ]),
        );
        assert_eq!(m, "it has 1 layer(s) but its config lists 2 diff_id(s)");

        // A config whose name is not its hash.
        let mut edited = image.config.clone();
        edited.push(b' ');
        let m = message(&dir, "config", &tar_of(&[(&config_name, &edited), ("manifest.json", &manifest(&[]))]));
        assert!(m.starts_with(&format!("the config '{config_name}' hashes to")), "{m}");

        // Cut in the middle of the first layer.
        let m = message(&dir, "cut", &good[..1024 + image.layers[0].len() / 2]);
        assert!(m.contains("truncated"), "{m}");
        assert!(read(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn links_resolve_inside_the_archive_only() {
        assert_eq!(join_relative("a/b", "../c/layer.tar").as_deref(), Some("a/c/layer.tar"));
        assert_eq!(join_relative("", "../x"), None);
        assert_eq!(join_relative("a", "/etc/passwd"), None);
        assert_eq!(normalize("./a//b/"), "a/b");
        let hex = "ab".repeat(32);
        assert_eq!(hex_name(&format!("{hex}.tar.zst")), Some(&hex[..]));
        assert_eq!(hex_name(&format!("blobs/sha256/{hex}")), Some(&hex[..]));
        assert_eq!(hex_name(&format!("{hex}/layer.tar")), None);
    }
}
