//! `builtin:image`: the builder of image derivations, run in process by
//! `mini-build` through its `BuiltinBuilder` trait. It reads the image
//! settings (`spec`), takes the runtime closure of everything the
//! derivation refers to, splits it into layers (`layers`), takes each
//! store-path layer from the cache (`cache`), makes the customisation layer
//! (the `contents` links, `/tmp`, users, extra files), and writes the image
//! (`archive`).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::BufWriter;
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mini_build::builtins::{BuiltinBuilder, BuiltinJob};
use mini_store::store::Store;
use mini_store::store_path::StorePath;
use rayon::prelude::*;

use crate::archive::{self, Image};
use crate::cache::{self, hex, Layer, LayerCache};
use crate::confined::{self, Node, Resolution, StoreView};
use crate::error::{io_err, ImageError, Result};
use crate::layers;
use crate::oci;
use crate::spec::{ExtraContents, Format, ImageSpec, Layering};
use crate::tarball::{Custom, HashingWriter, LayerWriter, Owner};

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
    let roots = image_roots(job)?;
    let references: BTreeMap<StorePath, BTreeSet<StorePath>> =
        store.closure(&roots)?.into_iter().map(|info| (info.path, info.references)).collect();
    // Every path of the closure is named in the layers' entries, which is
    // all a scan of the image would find: no need to read it again.
    job.references.insert("out".into(), references.keys().cloned().collect());
    let closure: BTreeSet<StorePath> = references.keys().cloned().collect();
    let custom = customisation(&spec, store, &closure)?;
    let scratch = store.staging_dir()?;
    let built = pack_layers(&spec, store, &roots, &references, &custom, &scratch);
    let result = built.and_then(|layers| {
        for (i, layer) in layers.iter().enumerate() {
            let holds: Vec<String> = layer.paths.iter().map(|p| p.name().to_string()).collect();
            let what = if holds.is_empty() { "customisation".to_string() } else { holds.join(" ") };
            let _ = writeln!(job.log, "layer {}/{}: sha256:{} {what}", i + 1, layers.len(), hex(&layer.diff_id));
        }
        let tag = spec.tag.clone().unwrap_or_else(|| out_path.hash_part());
        let comments: Vec<String> = layers
            .iter()
            .map(|l| {
                if l.paths.is_empty() {
                    "customisation layer".to_string()
                } else {
                    l.paths.iter().map(StorePath::to_string).collect::<Vec<_>>().join(" ")
                }
            })
            .collect();
        let diff_ids: Vec<[u8; 32]> = layers.iter().map(|l| l.diff_id).collect();
        let image = Image {
            config: oci::config(&spec, &diff_ids, &comments),
            layers: &layers,
            compressor: spec.compressor,
            repo_tag: format!("{}:{tag}", spec.name),
            tag,
        };
        match spec.format {
            Format::Docker => archive::write_docker_archive(&image, &out),
            Format::Oci => archive::write_oci_layout(&image, &out),
            Format::Stream => Err(bad("format", "streamed images are not written yet")),
        }
    });
    mini_store::store::discard_tree(&scratch);
    result
}

/// Everything the image derivation refers to: its input sources and the
/// outputs it uses of its input derivations. Store paths named in
/// `contents`, `config` or `extraFiles` are among them through their
/// string context.
fn image_roots(job: &BuiltinJob<'_>) -> Result<Vec<StorePath>> {
    let mut roots: BTreeSet<StorePath> = job.drv.input_srcs.clone();
    for (input, outputs) in &job.drv.input_drvs {
        let drv = mini_build::dag::read_derivation(job.store, input).map_err(|e| bad("inputs", e.to_string()))?;
        for name in outputs {
            if let Some(path) = drv.outputs.get(name).and_then(|o| o.path.clone()) {
                roots.insert(path);
            }
        }
    }
    Ok(roots.into_iter().collect())
}

/// The store-path layers (from the cache) and the customisation layer, or
/// for `single` layering one layer with everything.
fn pack_layers(
    spec: &ImageSpec,
    store: &Store,
    roots: &[StorePath],
    references: &BTreeMap<StorePath, BTreeSet<StorePath>>,
    custom: &BTreeMap<Vec<u8>, Custom>,
    scratch: &Path,
) -> Result<Vec<Layer>> {
    let store_dir = store.root().join("store");
    if spec.layering == Layering::Single {
        let all: Vec<StorePath> = references.keys().cloned().collect();
        let store_fd = confined::open_store_dir(&store_dir).map_err(io_err("reading", &store_dir))?;
        let layer = write_layer(scratch, spec, |w| {
            let (before, after): (BTreeMap<_, _>, BTreeMap<_, _>) = custom
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .partition(|(k, _)| k.as_slice() < b"mini".as_slice());
            w.custom(&before)?;
            w.store_dirs()?;
            for path in &all {
                let base = path.base_name();
                let archive_path = format!("mini/store/{base}");
                w.tree(store_fd.as_fd(), OsStr::new(&base), &store_dir.join(&base), archive_path.as_bytes())?;
            }
            w.custom(&after)
        })?;
        return Ok(vec![Layer { paths: all, ..layer }]);
    }
    let plan = layers::plan(roots, references, spec.max_layers);
    let cache = LayerCache::open(store)?;
    let mut packed: Vec<Layer> =
        plan.par_iter().map(|paths| cache.layer(paths, spec.compressor)).collect::<Result<_>>()?;
    packed.push(write_layer(scratch, spec, |w| w.custom(custom))?);
    Ok(packed)
}

/// Writes one uncached layer into `scratch` and compresses it as asked.
fn write_layer(
    scratch: &Path,
    spec: &ImageSpec,
    fill: impl FnOnce(&mut LayerWriter<HashingWriter<BufWriter<File>>>) -> Result<()>,
) -> Result<Layer> {
    let tar = scratch.join("layer.tar");
    let file = File::create(&tar).map_err(io_err("creating", &tar))?;
    let mut writer = LayerWriter::new(HashingWriter::new(BufWriter::with_capacity(1 << 20, file)));
    fill(&mut writer)?;
    let (buffered, diff_id, size) = writer.finish().map_err(io_err("writing", &tar))?.finish();
    buffered.into_inner().map_err(|e| io_err("writing", &tar)(e.into_error()))?;
    let (blob, blob_digest, blob_size) = match spec.compressor {
        cache::Compressor::None => (tar, diff_id, size),
        compressor => {
            let blob = scratch.join(format!("layer.{}", compressor.extension()));
            let (digest, size) = cache::compress_file(&tar, &blob, compressor)?;
            (blob, digest, size)
        }
    };
    Ok(Layer { diff_id, blob, blob_digest, blob_size, paths: Vec::new() })
}

/// The last layer's entries: links to the `contents`' files at `/`, `/tmp`,
/// the users and their homes, and the extra files. Entries are bytes, as
/// file names are. The store is read only through `closure`
/// (see `confined`): a link in `contents` that leaves it becomes a link in
/// the image, and a `contents` path or an extra file's source that leaves
/// it is an error.
fn customisation(spec: &ImageSpec, store: &Store, closure: &BTreeSet<StorePath>) -> Result<BTreeMap<Vec<u8>, Custom>> {
    let store_dir = store.root().join("store");
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
                    if !matches!(entries.get(&top), Some(Custom::Dir { .. })) {
                        entries.insert(top.clone(), dir(0o755));
                    }
                    let children = confined::sorted_names(&source)
                        .map_err(io_err("reading", Path::new(OsStr::from_bytes(&logical))))?;
                    for child in children {
                        let target = [&logical, b"/".as_slice(), child.as_bytes()].concat();
                        entries
                            .entry([&top, b"/".as_slice(), child.as_bytes()].concat())
                            .or_insert(Custom::Symlink { target });
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
    if !spec.users.is_empty() {
        let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
        let mut group = String::from("root:x:0:\n");
        let mut gids = BTreeSet::from([0]);
        for user in &spec.users {
            passwd.push_str(&format!("{}:x:{}:{}::{}:/bin/sh\n", user.name, user.uid, user.gid, user.home));
            if gids.insert(user.gid) {
                group.push_str(&format!("{}:x:{}:\n", user.name, user.gid));
            }
            let owner = Owner { uid: user.uid, gid: user.gid, name: user.name.clone() };
            insert(&mut entries, user.home.trim_start_matches('/'), Custom::Dir { mode: 0o755, owner: Some(owner) });
        }
        insert(&mut entries, "etc/passwd", Custom::File { mode: 0o644, contents: passwd.into_bytes() });
        insert(&mut entries, "etc/group", Custom::File { mode: 0o644, contents: group.into_bytes() });
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
        insert(&mut entries, &extra.path, entry);
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

/// Inserts `entry` at `path`, making every parent a directory.
fn insert(entries: &mut BTreeMap<Vec<u8>, Custom>, path: &str, entry: Custom) {
    let mut parent: Vec<u8> = Vec::new();
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        if !parent.is_empty() {
            parent.push(b'/');
        }
        parent.extend_from_slice(part.as_bytes());
        if !matches!(entries.get(&parent), Some(Custom::Dir { .. })) {
            entries.insert(parent.clone(), Custom::Dir { mode: 0o755, owner: None });
        }
    }
    entries.insert(path.as_bytes().to_vec(), entry);
}
