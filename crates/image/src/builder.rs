//! `builtin:image`: the builder of image derivations, run in process by
//! `mini-build` through its `BuiltinBuilder` trait. It reads the image
//! settings (`spec`), takes the runtime closure of everything the
//! derivation refers to, splits it into layers (`layers`), takes each
//! store-path layer's digest from the digest cache (`layer_cache`), makes the customisation layer
//! (the `contents` links, `/tmp`, users, extra files), and writes the image
//! (`docker_archive`). With `fromDebian`, the Debian root's tree is the
//! bottom layer (`debian_root`), and the root is left out of the closure
//! unless the rest of the image refers to it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::BufWriter;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mini_build::builtin_builders::{BuiltinBuilder, BuiltinJob};
use mini_store::store::Store;
use mini_store::store_path::StorePath;
use rayon::prelude::*;

use crate::compress::Compressor;
use crate::confined::{self, Node, Resolution, StoreView};
use crate::debian_root::DebianRoot;
use crate::docker_archive::{self, DockerArchive, Holds, Image, Layer};
use crate::error::{io_err, ImageError, Result};
use crate::layer_cache::{DigestCache, Key, Record};
use crate::layers;
use crate::oci;
use crate::produce::{self, Fill, Made, Source};
use crate::spec::{ExtraContents, Format, ImageSpec, Layering};
use crate::stream;
use crate::tarball::{self, Custom, LayerWriter, Owner};
use mini_store::encoding::hex;
use mini_store::nar::FileHasher;

/// Where `sbom = true` (or `"cyclonedx"`) puts the image's SBOM, beside
/// the packages' own as apko lays them out; and `sbom = "spdx"`.
pub const SBOM_CYCLONEDX: &str = "var/lib/db/sbom/image.cdx.json";
pub const SBOM_SPDX: &str = "var/lib/db/sbom/image.spdx.json";

/// The image builder; derivations name it `builtin:image`.
pub struct ImageBuilder;

impl BuiltinBuilder for ImageBuilder {
    fn name(&self) -> &'static str {
        "image"
    }

    fn build(&self, job: &mut BuiltinJob<'_>) -> mini_build::Result<()> {
        build_image(job).map_err(|e| job.error(e.to_string()))
    }
}

fn bad(name: &str, message: impl Into<String>) -> ImageError {
    ImageError::BadSpec { name: name.into(), message: message.into() }
}

fn build_image(job: &mut BuiltinJob<'_>) -> Result<()> {
    let spec = ImageSpec::from_env(&job.drv.env)?;
    let out_path = job.drv.outputs.get("out").and_then(|o| o.path.clone()).ok_or_else(|| bad("outputs", "no 'out'"))?;
    let out = job.outputs.get("out").ok_or_else(|| bad("outputs", "no 'out'"))?.clone();
    let store = job.store;
    let inputs = image_roots(job)?;
    let debian = match &spec.from_debian {
        Some(root) => Some(debian_root(&job.drv.env, root, &inputs, store)?),
        None => None,
    };
    // The root is in the image as its bottom layer; under /mini/store only
    // if the rest of the image refers to it.
    let roots: Vec<StorePath> = match &debian {
        Some((root, false)) => inputs.iter().filter(|p| **p != root.path).cloned().collect(),
        _ => inputs.clone(),
    };
    let debian = debian.map(|(root, _)| root);
    let infos = store.closure(&roots)?;
    let sizes: BTreeMap<StorePath, u64> = infos.iter().map(|i| (i.path.clone(), i.nar_size)).collect();
    let references: BTreeMap<StorePath, BTreeSet<StorePath>> =
        infos.into_iter().map(|info| (info.path, info.references)).collect();
    // Every path of the closure is named in the layers' entries, which is
    // all a scan of the image would find: no need to read it again.
    // The Debian root is named in the image's history.
    let named = references.keys().cloned().chain(debian.as_ref().map(|r| r.path.clone()));
    job.references.insert("out".into(), named.collect());
    let closure: BTreeSet<StorePath> = references.keys().cloned().collect();
    let mut custom = customisation(&spec, store, &closure, debian.as_ref())?;
    if let Some(format) = spec.sbom {
        // Of every input: the Debian root is in the image too.
        let document =
            mini_sbom::recipe_document(store, &inputs, format, &spec.name).map_err(|e| bad("sbom", e.to_string()))?;
        let name = match format {
            mini_sbom::Format::CycloneDx => SBOM_CYCLONEDX,
            mini_sbom::Format::Spdx => SBOM_SPDX,
        };
        insert(
            &mut custom,
            &routed(debian.as_ref(), name),
            Custom::File { mode: 0o444, contents: document.into_bytes() },
        );
    }
    let cache = DigestCache::open(store)?;
    let planned = Planned { roots: &roots, references: &references, sizes: &sizes, debian: debian.as_ref() };
    let (layers, notes) = plan_layers(&spec, store, planned, custom, &cache)?;
    for note in &notes {
        let _ = writeln!(job.log, "note: {note}");
    }
    let comments: Vec<String> = layers.iter().map(|l| l.holds.comment()).collect();
    let config = |diff_ids: &[[u8; 32]]| oci::config(&spec, diff_ids, &comments);
    let tag = spec.tag.clone().unwrap_or_else(|| out_path.hash_part());
    let image = Image { layers: &layers, config: &config, repo_tag: format!("{}:{tag}", spec.name), tag };
    let made: Vec<Made> = match spec.format {
        Format::Docker if spec.compressor == Compressor::None => {
            let sizes = docker_archive::layer_sizes(&layers)?;
            let plan = DockerArchive::plan(&image, sizes, BTreeSet::new());
            let file = File::create(&out).map_err(io_err("creating", &out))?;
            let early = EarlySync::start(&file);
            let mut writer = HashedFile {
                out: BufWriter::with_capacity(1 << 20, file),
                hasher: FileHasher::new(false, plan.size()),
                early,
            };
            let made = plan.write(&mut writer)?;
            writer.out.into_inner().map_err(|e| io_err("writing", &out)(e.into_error()))?;
            writer.early.finish();
            let hashed = writer.hasher.finish().ok_or_else(|| {
                io_err("writing", &out)(std::io::Error::other("the archive came out another size than planned"))
            })?;
            job.archive_hashes.insert("out".into(), hashed);
            made.into_iter().flatten().collect()
        }
        Format::Docker => {
            let scratch = store.staging_dir()?;
            let result = make_blob_files(&layers, spec.compressor, &scratch).and_then(|blobs| {
                docker_archive::write_docker_archive_files(&image, &blobs, spec.compressor, &out)?;
                Ok(blobs.into_iter().map(|(_, made)| made).collect())
            });
            mini_store::store::discard_tree(&scratch);
            result?
        }
        Format::Oci => {
            let known: Vec<_> = layers
                .iter()
                .map(|l| cached(&cache, l, &spec).and_then(|r| r.compressed.get(spec.compressor.name()).copied()))
                .collect();
            docker_archive::write_oci_layout(&image, &out, spec.compressor, &known)?.made
        }
        Format::Stream => write_stream(&image, &layers, &out)?,
    };
    for (i, (layer, made)) in layers.iter().zip(&made).enumerate() {
        let what = match &layer.holds {
            Holds::Paths(paths) => paths.iter().map(|p| p.name().to_string()).collect::<Vec<_>>().join(" "),
            Holds::DebianRoot(root) => format!("debian root {}", root.name()),
            Holds::Customisation => "customisation".to_string(),
        };
        let _ = writeln!(job.log, "layer {}/{}: sha256:{} {what}", i + 1, layers.len(), hex(&made.tar.sha256));
        if let Some(key) = cache_key(layer, &spec) {
            let blob = (spec.compressor != Compressor::None).then_some((spec.compressor, made.blob));
            if layer.known != Some(made.tar) || blob.is_some() {
                cache.put(key, made.tar, blob)?;
            }
        }
    }
    Ok(())
}

/// The digest cache's key for `layer`: store-path and Debian root layers
/// are recorded, but not `single` layering's one layer of store paths,
/// which also holds the customisation entries (its digest is not the
/// digest of its paths' layer).
fn cache_key<'a>(layer: &'a Layer, spec: &ImageSpec) -> Option<Key<'a>> {
    match &layer.holds {
        Holds::Paths(_) if spec.layering == Layering::Single => None,
        holds => holds.cache_key(),
    }
}

/// What the digest cache knows of `layer`, if it keeps such layers.
fn cached(cache: &DigestCache, layer: &Layer, spec: &ImageSpec) -> Option<Record> {
    cache_key(layer, spec).map(|key| cache.get(key))
}

/// The Debian root `root` (`fromDebian`), checked: an input of the image
/// (through its string context), and a directory with `usr/` and the dpkg
/// database. With it, whether the rest of the image names it too
/// (`contents`, `config`, `extraFiles`): then it is also a root of the
/// image's closure, under `/mini/store` as any other.
fn debian_root(
    env: &BTreeMap<String, String>,
    root: &StorePath,
    inputs: &[StorePath],
    store: &Store,
) -> Result<(DebianRoot, bool)> {
    if !inputs.contains(root) {
        return Err(bad(
            "fromDebian",
            format!("{root} is not an input of the image: pass the derivation (pkgs.debian.root …) or \"${{root}}\", not a string without its context"),
        ));
    }
    let named = ["contents", "config", "extraFiles"]
        .iter()
        .any(|name| env.get(*name).is_some_and(|value| value.contains(&root.to_string())));
    Ok((DebianRoot::open(&store.store_dir(), root.clone())?, named))
}

/// A file being written, hashed as its archive from the bytes as they go.
struct HashedFile {
    out: BufWriter<File>,
    hasher: FileHasher,
    early: EarlySync,
}

impl std::io::Write for HashedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.early.wrote(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Starts the writeback of a large output while it is still being
/// written: every [`EarlySync::EVERY`] bytes, a thread of its own flushes
/// what the file holds so far (`fdatasync`), so the disk works while the
/// layers are made, and the store's sync when it registers the output has
/// little left to wait for. Only an optimisation: that final sync is what
/// makes the output durable.
struct EarlySync {
    tell: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    since: u64,
}

impl EarlySync {
    const EVERY: u64 = 64 << 20;

    fn start(file: &File) -> EarlySync {
        let Ok(file) = file.try_clone() else { return EarlySync { tell: None, thread: None, since: 0 } };
        let (tell, told) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while told.recv().is_ok() {
                while told.try_recv().is_ok() {}
                let _ = file.sync_data();
            }
        });
        EarlySync { tell: Some(tell), thread: Some(thread), since: 0 }
    }

    fn wrote(&mut self, bytes: u64) {
        self.since += bytes;
        if self.since >= Self::EVERY {
            self.since = 0;
            if let Some(tell) = &self.tell {
                let _ = tell.send(());
            }
        }
    }

    /// Waits for the flushing thread (also on every error path: it holds
    /// a handle on the output).
    fn finish(self) {}
}

impl Drop for EarlySync {
    fn drop(&mut self) {
        self.tell = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Makes each layer into a compressed blob file in `scratch`, several at once.
fn make_blob_files(layers: &[Layer], compressor: Compressor, scratch: &Path) -> Result<Vec<(PathBuf, Made)>> {
    layers
        .par_iter()
        .enumerate()
        .map(|(i, layer)| {
            let path = scratch.join(format!("layer-{i}.{}", compressor.extension()));
            let file = File::create(&path).map_err(io_err("creating", &path))?;
            let made = layer.source.write(compressor, BufWriter::with_capacity(1 << 20, file))?;
            docker_archive::check(i, layer, &made)?;
            Ok((path, made))
        })
        .collect()
}

/// `streamLayeredImage`'s output: the description, the config and the
/// customisation layer (see `stream`); each store layer is made only to
/// learn its digest, unless the cache knows it.
fn write_stream(image: &Image, layers: &[Layer], out: &Path) -> Result<Vec<Made>> {
    let made: Vec<Made> = layers
        .par_iter()
        .map(|layer| match layer.known {
            Some(tar) => Ok(Made { tar, blob: tar }),
            None => layer.source.write(Compressor::None, std::io::sink()),
        })
        .collect::<Result<_>>()?;
    std::fs::create_dir(out).map_err(io_err("creating", out))?;
    let diff_ids: Vec<[u8; 32]> = made.iter().map(|m| m.tar.sha256).collect();
    let mut described = Vec::new();
    for (layer, made) in layers.iter().zip(&made) {
        if layer.holds == Holds::Customisation {
            let Source::Bytes(bytes) = &layer.source else {
                return Err(bad("layering", "a streamed image's customisation layer is made in memory"));
            };
            let path = out.join(stream::CUSTOMISATION);
            std::fs::write(&path, bytes.as_slice()).map_err(io_err("writing", &path))?;
        }
        described.push(stream::DescribedLayer { tar: made.tar, contents: layer.holds.clone() });
    }
    let description =
        stream::Description { repo_tag: image.repo_tag.clone(), tag: image.tag.clone(), layers: described };
    for (name, text) in [(stream::CONFIG, (image.config)(&diff_ids)), (stream::DESCRIPTION, description.to_json())] {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(io_err("writing", &path))?;
    }
    Ok(made)
}

/// Everything the image derivation refers to: its input sources and the
/// outputs it uses of its input derivations. Store paths named in
/// `contents`, `config` or `extraFiles` are among them through their
/// string context.
fn image_roots(job: &BuiltinJob<'_>) -> Result<Vec<StorePath>> {
    let mut roots: BTreeSet<StorePath> = job.drv.input_srcs.clone();
    for (input, outputs) in &job.drv.input_drvs {
        let drv = job.store.read_derivation(input).map_err(|e| bad("inputs", e.to_string()))?;
        for name in outputs {
            if let Some(path) = drv.outputs.get(name).and_then(|o| o.path.clone()) {
                roots.insert(path);
            }
        }
    }
    Ok(roots.into_iter().collect())
}

/// What the layers are planned from: the closure (its roots, references
/// and NAR sizes) and the Debian root, if any.
struct Planned<'a> {
    roots: &'a [StorePath],
    references: &'a BTreeMap<StorePath, BTreeSet<StorePath>>,
    sizes: &'a BTreeMap<StorePath, u64>,
    debian: Option<&'a DebianRoot>,
}

/// The image's layers, bottom first, and what the plan has to say: the
/// Debian root's layer if any, the store-path layers (their digests from
/// the cache where it knows them) and the customisation layer; or, for
/// `single` layering, the Debian root's layer if any and one layer with
/// everything else.
fn plan_layers(
    spec: &ImageSpec,
    store: &Store,
    planned: Planned<'_>,
    custom: BTreeMap<Vec<u8>, Custom>,
    cache: &DigestCache,
) -> Result<(Vec<Layer>, Vec<String>)> {
    let store_dir = store.store_dir();
    let mut layers: Vec<Layer> = Vec::new();
    if let Some(root) = planned.debian {
        let holds = Holds::DebianRoot(root.path.clone());
        let known = holds.cache_key().and_then(|key| cache.get(key).tar);
        layers.push(Layer { source: root.layer(&store_dir), known, recorded: true, holds });
    }
    if spec.layering == Layering::Single {
        let all: Vec<StorePath> = planned.references.keys().cloned().collect();
        let names: Vec<String> = all.iter().map(StorePath::base_name).collect();
        let (before, after): (BTreeMap<_, _>, BTreeMap<_, _>) =
            custom.into_iter().partition(|(k, _)| k.as_slice() < b"mini".as_slice());
        let fill: Fill = Arc::new(move |w| {
            w.custom(&before)?;
            tarball::fill_store_layer(w, &store_dir, &names)?;
            w.custom(&after)
        });
        layers.push(Layer { source: Source::Tar(fill), known: None, recorded: false, holds: Holds::Paths(all) });
        return Ok((layers, Vec::new()));
    }
    // The Debian root's layer counts toward maxLayers.
    let max_layers = spec.max_layers - layers.len();
    let settings = layers::Settings { max_layers, min_layer_size: spec.min_layer_size };
    let plan = layers::plan_layers(planned.roots, planned.references, planned.sizes, settings);
    layers.extend(plan.layers.into_iter().map(|paths| {
        let known = cache.get(Key::Paths(&paths)).tar;
        Layer { source: produce::store_layer(&store_dir, &paths), known, recorded: true, holds: Holds::Paths(paths) }
    }));
    let mut writer = LayerWriter::new(Vec::new());
    writer.custom(&custom)?;
    let bytes = writer.finish().map_err(io_err("archiving", Path::new("the customisation layer")))?;
    layers.push(Layer {
        source: Source::Bytes(Arc::new(bytes)),
        known: None,
        recorded: false,
        holds: Holds::Customisation,
    });
    Ok((layers, plan.notes))
}

/// The last layer's entries: links to the `contents`' files at `/`, `/tmp`,
/// the users and their homes, and the extra files. Entries are bytes, as
/// file names are. The store is read only through `closure`
/// (see `confined`): a link in `contents` that leaves it becomes a link in
/// the image, and a `contents` path or an extra file's source that leaves
/// it is an error.
///
/// On a Debian root, paths below its usr-merge links go through them
/// (`bin/sh` is written as `usr/bin/sh`, see [`DebianRoot::route`]), so the
/// root's `bin -> usr/bin` stays a link; the users' `/etc/passwd` and
/// `/etc/group` are written even with no users (the root has none: no
/// maintainer script ran). An entry the root has too replaces the root's.
fn customisation(
    spec: &ImageSpec,
    store: &Store,
    closure: &BTreeSet<StorePath>,
    debian: Option<&DebianRoot>,
) -> Result<BTreeMap<Vec<u8>, Custom>> {
    let store_dir = store.store_dir();
    let members = closure.iter().map(|p| OsString::from(p.base_name())).collect();
    let view = StoreView::open(&store_dir, Some(members)).map_err(io_err("reading", &store_dir))?;
    let mut entries: BTreeMap<Vec<u8>, Custom> = BTreeMap::new();
    let dir = |mode| Custom::Dir { mode, owner: None };
    for content in &spec.contents {
        StorePath::parse(content).map_err(|e| bad("contents", e.to_string()))?;
        let top_dir = match view.resolve(OsStr::new(content)).map_err(io_err("reading", Path::new(content)))? {
            Resolution::Found { node: Node::Dir(fd), .. } => fd,
            Resolution::Found { .. } => {
                return Err(bad(
                    "contents",
                    format!("{content} is not a directory: contents are trees whose bin/, etc/, … are linked into /; add a single file with extraFiles"),
                ))
            }
            Resolution::Leaves { link, target } => return Err(bad("contents", leaves(content, &link, &target))),
            Resolution::NotInClosure => return Err(bad("contents", not_in_closure(content))),
        };
        for top in confined::sorted_names(&top_dir).map_err(io_err("reading", Path::new(content)))? {
            let top = top.into_vec();
            let logical = [content.as_bytes(), b"/", &top].concat();
            match view.resolve(OsStr::from_bytes(&logical)) {
                Ok(Resolution::Found { node: Node::Dir(source), .. }) => {
                    let linked = debian.is_some_and(|root| root.is_link(&top));
                    if !linked && !matches!(entries.get(&top), Some(Custom::Dir { .. })) {
                        entries.insert(top.clone(), dir(0o755));
                    }
                    let children = confined::sorted_names(&source)
                        .map_err(io_err("reading", Path::new(OsStr::from_bytes(&logical))))?;
                    for child in children {
                        let target = [&logical, b"/".as_slice(), child.as_bytes()].concat();
                        let at = routed(debian, [&top, b"/".as_slice(), child.as_bytes()].concat());
                        add_parents(&mut entries, &at);
                        entries.entry(at).or_insert(Custom::Symlink { target });
                    }
                }
                // A file, or a link leaving the closure (or leading nowhere):
                // linked to, never read.
                _ => {
                    entries.entry(top).or_insert(Custom::Symlink { target: logical });
                }
            }
        }
    }
    entries.insert(b"tmp".to_vec(), dir(0o1777));
    if !spec.users.is_empty() || debian.is_some() {
        let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
        let mut group = String::from("root:x:0:\n");
        let mut gids = BTreeSet::from([0]);
        for user in &spec.users {
            passwd.push_str(&format!("{}:x:{}:{}::{}:/bin/sh\n", user.name, user.uid, user.gid, user.home));
            if gids.insert(user.gid) {
                group.push_str(&format!("{}:x:{}:\n", user.name, user.gid));
            }
            let owner = Owner { uid: user.uid, gid: user.gid, name: user.name.clone() };
            let home = routed(debian, user.home.trim_start_matches('/'));
            insert(&mut entries, &home, Custom::Dir { mode: 0o755, owner: Some(owner) });
        }
        insert(&mut entries, b"etc/passwd", Custom::File { mode: 0o644, contents: passwd.into_bytes() });
        insert(&mut entries, b"etc/group", Custom::File { mode: 0o644, contents: group.into_bytes() });
    }
    for extra in &spec.extra_files {
        let entry = match &extra.contents {
            ExtraContents::Text(text) => {
                Custom::File { mode: extra.mode.unwrap_or(0o644), contents: text.clone().into_bytes() }
            }
            ExtraContents::Source(source) => {
                // A store path, or a file inside one.
                StorePath::parse_prefix(source).map_err(|e| bad("extraFiles", e.to_string()))?;
                let named = |message: String| bad("extraFiles", format!("'{}': {message}", extra.path));
                match view.resolve(OsStr::new(source)).map_err(io_err("reading", Path::new(source)))? {
                    Resolution::Found { node: Node::File(file), logical } => {
                        let meta = file.metadata().map_err(io_err("reading", Path::new(&logical)))?;
                        let executable = meta.permissions().mode() & 0o111 != 0;
                        Custom::StoreFile {
                            mode: extra.mode.unwrap_or(if executable { 0o755 } else { 0o644 }),
                            file: Arc::new(file),
                            source: PathBuf::from(logical),
                        }
                    }
                    Resolution::Found { .. } => return Err(named(format!("{source} is not a file"))),
                    Resolution::Leaves { link, target } => return Err(named(leaves(source, &link, &target))),
                    Resolution::NotInClosure => return Err(named(not_in_closure(source))),
                }
            }
        };
        insert(&mut entries, &routed(debian, &extra.path), entry);
    }
    Ok(entries)
}

/// Why `what` cannot be read: `link` on the way points out of the closure.
fn leaves(what: &str, link: &OsStr, target: &OsStr) -> String {
    format!(
        "{what} leads out of the image's closure: {} is a link to '{}'; an image copies only files of its store paths, and links leaving them are never followed",
        Path::new(link).display(),
        Path::new(target).display()
    )
}

fn not_in_closure(what: &str) -> String {
    format!("{what} is not in the image's closure: refer to store paths through their string context (\"${{pkg}}\")")
}

/// `path` through the Debian root's usr-merge links, if there is a root.
fn routed(debian: Option<&DebianRoot>, path: impl AsRef<[u8]>) -> Vec<u8> {
    let path = path.as_ref();
    debian.map_or_else(|| path.to_vec(), |root| root.route(path))
}

/// Inserts `entry` at `path`, making every parent a directory.
fn insert(entries: &mut BTreeMap<Vec<u8>, Custom>, path: &[u8], entry: Custom) {
    add_parents(entries, path);
    entries.insert(path.to_vec(), entry);
}

/// Makes every parent of `path` a directory (0755) unless it is one.
fn add_parents(entries: &mut BTreeMap<Vec<u8>, Custom>, path: &[u8]) {
    for (i, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
        let parent = &path[..i];
        if !matches!(entries.get(parent), Some(Custom::Dir { .. })) {
            entries.insert(parent.to_vec(), Custom::Dir { mode: 0o755, owner: None });
        }
    }
}

#[cfg(test)]
mod tests;
