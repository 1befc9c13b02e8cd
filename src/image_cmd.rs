//! `mini image inspect`: what images are made of. Image files and OCI
//! layout directories are read as they are; installables are built first
//! (through `build_cmd::realise`) and their outputs read. The reading and
//! the rendering are `mini_image::inspect`'s.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mini_build::BuildOptions;
use mini_flake::{Installable, Target};
use mini_image::copy::{self, Destination};
use mini_image::inspect::{self, ImageSummary};
use mini_image::stream;
use mini_image::ImageError;
use mini_store::store::Store;
use mini_store::store_path::StorePath;

use crate::{build_cmd, failure, Failure, Outcome};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Show images' tags, config and layers (the store paths in each), their
    /// sizes, and the layers several images share.
    Inspect(InspectArgs),
    /// Write a streamed image (dockerTools.streamLayeredImage's output) to
    /// standard output as a docker-archive: `mini image stream ./result |
    /// docker load`. The layers are made from the store as they go.
    Stream(StreamArgs),
    /// Copy a streamed image to a docker-archive (FILE or -), an OCI layout,
    /// the Docker daemon, or a registry; only the layers the destination
    /// lacks are made.
    Copy(CopyArgs),
}

#[derive(Args)]
pub struct StreamArgs {
    /// A streamed image: an installable that builds one (DIR#ATTR, a .drv
    /// store path), its store path, or a link such as ./result.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Show the builders' output while building an installable.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
}

#[derive(Args)]
pub struct CopyArgs {
    /// A streamed image, as for `mini image stream`.
    #[arg(value_name = "SOURCE")]
    image: String,
    /// docker-archive:FILE[:NAME:TAG] (FILE `-`: standard output),
    /// oci:DIR[:TAG], docker-daemon:NAME[:TAG] (the daemon at DOCKER_HOST or
    /// /var/run/docker.sock), or docker://HOST[:PORT]/REPO[:TAG].
    #[arg(value_name = "DESTINATION")]
    destination: String,
    /// For docker://: talk plain HTTP to the registry instead of HTTPS.
    #[arg(long)]
    insecure: bool,
    /// Show the builders' output while building an installable.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// A docker-archive file, an OCI layout directory, or an installable that
    /// builds one (DIR#ATTR, DIR, git+file:…, a .drv store path, a link such
    /// as ./result).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
    /// Print everything as one JSON document.
    #[arg(long)]
    json: bool,
    /// Compare two images, A B: which of B's layers A already has, and how
    /// many bytes a registry holding A still needs for B.
    #[arg(long)]
    diff: bool,
    /// Show the builders' output while building installables.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
}

pub fn image(store_root: &Path, command: ImageCommand) -> Outcome {
    match command {
        ImageCommand::Inspect(args) => inspect(store_root, args),
        ImageCommand::Stream(args) => {
            copy_to(store_root, &args.image, "docker-archive:-", false, args.print_build_logs)
        }
        ImageCommand::Copy(args) => {
            copy_to(store_root, &args.image, &args.destination, args.insecure, args.print_build_logs)
        }
    }
}

/// Where an argument's image is to be read from.
enum Where {
    /// A file or directory on disk, read as it is.
    OnDisk(PathBuf),
    /// The outputs of the n-th installable.
    Built(usize),
}

/// Where to read the image at `path` (a user's path, or a built output's
/// physical path): links are followed as usual until they reach the store
/// at `store_root`, and from there only while they stay in it, so an
/// output that is a link to a host file or directory is refused, never
/// read (nor pushed).
pub(crate) fn image_location(store_root: &Path, path: &Path) -> Result<PathBuf, String> {
    mini_image::confined::resolve_user_path(path, &Store::store_dir_of(store_root))
        .map_err(|e| format!("reading '{}': {e}", path.display()))
}

/// The derivation that built a store path, as the store recorded it.
fn deriver_of(store: &Store, path: &StorePath) -> Option<String> {
    store.query(path).ok().flatten()?.deriver.map(|d| d.to_string())
}

/// The deriver of an image on disk that is (or links into) a store path
/// of the store at `store_root`; `None` for anything else. The store is
/// opened into `store` the first time one is needed.
fn stored_deriver(store_root: &Path, store: &mut Option<Store>, path: &Path) -> Option<String> {
    if !Store::store_dir_of(store_root).is_dir() {
        return None;
    }
    let Ok(Installable::StorePath(stored)) = mini_flake::parse(&path.to_string_lossy(), store_root) else {
        return None;
    };
    if store.is_none() {
        *store = Store::open(store_root).ok();
    }
    deriver_of(store.as_ref()?, &stored)
}

fn inspect(store_root: &Path, args: InspectArgs) -> Outcome {
    if args.diff && args.images.len() != 2 {
        eprintln!(
            "error: --diff compares exactly two images, A B; {} given: {}",
            args.images.len(),
            args.images.join(" ")
        );
        return Ok(ExitCode::from(2));
    }
    let mut installables = Vec::new();
    let places: Vec<(&String, Where)> = args
        .images
        .iter()
        .map(|arg| {
            if mini_flake::names_installable_rather_than_image(arg) {
                installables.push(arg.clone());
                (arg, Where::Built(installables.len() - 1))
            } else {
                (arg, Where::OnDisk(PathBuf::from(arg)))
            }
        })
        .collect();
    let mut outputs: Vec<Vec<(String, PathBuf, Option<String>)>> = Vec::new();
    // Opened once, if an installable or a stored image needs it.
    let mut opened: Option<Store> = None;
    if !installables.is_empty() {
        let store = opened.insert(Store::open(store_root)?);
        let options = BuildOptions::default();
        let targets = build_cmd::realise(store, &installables, options, false, args.print_build_logs)?;
        for target in targets {
            let (paths, drv): (Vec<_>, _) = match target {
                Target::Derivation { outputs, drv_path } => (outputs.into_values().collect(), Some(drv_path)),
                Target::Opaque(path) => (vec![path], None),
            };
            let deriver = |p| drv.as_ref().map(ToString::to_string).or_else(|| deriver_of(store, p));
            outputs.push(paths.iter().map(|p| (p.to_string(), store.physical_path(p), deriver(p))).collect());
        }
    }

    let mut summaries: Vec<ImageSummary> = Vec::new();
    for (arg, place) in places {
        let sources: Vec<(String, PathBuf, Option<String>)> = match place {
            Where::OnDisk(path) => {
                let deriver = stored_deriver(store_root, &mut opened, &path);
                vec![(arg.clone(), path, deriver)]
            }
            Where::Built(i) => outputs.get(i).cloned().unwrap_or_default(),
        };
        for (label, path, derivation) in sources {
            let path = image_location(store_root, &path).map_err(failure)?;
            let images = inspect::inspect(&path).map_err(|e| match e {
                // Built images are named by their store path, not where the store keeps it.
                ImageError::NotAnImage { message, .. } => {
                    ImageError::NotAnImage { path: PathBuf::from(&label), message }
                }
                other => other,
            })?;
            summaries.extend(images.into_iter().map(|mut image| {
                image.source.clone_from(&label);
                image.derivation.clone_from(&derivation);
                image
            }));
        }
    }
    let text = if args.diff {
        let [a, b] = summaries.as_slice() else {
            let (first, second) = (&args.images[0], &args.images[1]);
            eprintln!(
                "error: --diff compares exactly two images, but {first} and {second} hold {} together",
                summaries.len()
            );
            eprintln!("hint: name one image each: an OCI layout or archive with several images cannot be compared");
            return Ok(ExitCode::from(2));
        };
        let diff = inspect::compare(a, b);
        if args.json {
            format!("{}\n", inspect::render_diff_json(&diff))
        } else {
            inspect::render_diff_text(&diff)
        }
    } else if args.json {
        format!("{}\n", inspect::render_json(&summaries))
    } else {
        inspect::render_text(&summaries)
    };
    // A closed stdout (`| head`) is not worth a panic.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush());
    Ok(ExitCode::SUCCESS)
}

/// An image named on the command line.
pub(crate) struct Found {
    /// Where to read it (see [`image_location`]).
    pub location: PathBuf,
    /// The store and the output, when the image was an installable's.
    pub built: Option<(Store, StorePath)>,
}

/// The one image `arg` names, built first if it is an installable.
pub(crate) fn realise_image(store_root: &Path, arg: &str, print_build_logs: bool) -> Result<Found, Failure> {
    let (path, built) = if mini_flake::names_installable_rather_than_image(arg) {
        let installables = [arg.to_string()];
        let store = Store::open(store_root)?;
        let targets = build_cmd::realise(&store, &installables, BuildOptions::default(), false, print_build_logs)?;
        let paths: Vec<StorePath> = targets
            .into_iter()
            .flat_map(|target| match target {
                Target::Derivation { outputs, .. } => outputs.into_values().collect(),
                Target::Opaque(path) => vec![path],
            })
            .collect();
        match <[StorePath; 1]>::try_from(paths) {
            Ok([one]) => (store.physical_path(&one), Some((store, one))),
            Err(paths) => {
                return Err(failure(format!("'{arg}' has {} outputs; name one image at a time", paths.len())));
            }
        }
    } else {
        (PathBuf::from(arg), None)
    };
    let location = image_location(store_root, &path).map_err(failure)?;
    Ok(Found { location, built })
}

/// Reads the streamed image at `location`.
fn open_stream(store: &Store, arg: &str, location: &Path) -> Result<stream::StreamImage, Failure> {
    if !stream::is_stream_image(location) {
        return Err(failure(format!(
            "'{arg}' is not a streamed image (dockerTools.streamLayeredImage's output); an image file or OCI layout is used as it is: `docker load < {arg}`, `skopeo copy docker-archive:{arg} …`, `mini push {arg} docker://…`"
        )));
    }
    Ok(stream::open(location, store)?)
}

/// `mini image copy` (and `stream`, to `docker-archive:-`).
fn copy_to(store_root: &Path, arg: &str, destination: &str, insecure: bool, print_build_logs: bool) -> Outcome {
    let destination = Destination::parse(destination)?;
    if matches!(destination, Destination::DockerArchive { file: None, .. }) && std::io::stdout().is_terminal() {
        return Err(failure("standard output is a terminal: pipe the image into `docker load`, or give a file"));
    }
    let found = realise_image(store_root, arg, print_build_logs)?;
    let store = match found.built {
        Some((store, _)) => store,
        None => Store::open(store_root)?,
    };
    let image = open_stream(&store, arg, &found.location)?;
    if let Destination::Registry(reference) = &destination {
        let reference = mini_registry::reference::Reference::parse(&format!("docker://{reference}"))?;
        let options = mini_registry::push::Options { compression: mini_image::compress::Compressor::Gzip, insecure };
        let report = mini_registry::push::push_image(store_root, &image.located(), &reference, options)?;
        for blob in &report.blobs {
            eprintln!("{} {} {}", blob.outcome.as_str(), blob.digest, blob.size);
        }
        eprintln!("copied to docker://{reference}: {} bytes sent", report.bytes_sent());
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let copied = copy::copy(&image, &destination, &mut out)?;
    let said = if copied.message.is_empty() { String::new() } else { format!(": {}", copied.message) };
    eprintln!("{} layers written, {} already there{said}", copied.written, copied.skipped);
    Ok(ExitCode::SUCCESS)
}
