//! `mini push`: sends an image to a registry. Image files and OCI layout
//! directories are pushed as they are; installables are built first
//! (through `build_cmd::realise`) and their output pushed. The pushing is
//! `mini_registry`'s.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use mini_build::BuildOptions;
use mini_flake::Target;
use mini_registry::blobs::Compression;
use mini_registry::push::{self, Options};
use mini_registry::reference::Reference;

use crate::{build_cmd, image_cmd};

#[derive(Args)]
pub struct PushArgs {
    /// A docker-archive file, an OCI layout directory, or an installable that
    /// builds one (DIR#ATTR, DIR, a .drv store path, a link such as ./result).
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to push: docker://HOST[:PORT]/REPO[:TAG] (the tag defaults to latest).
    #[arg(value_name = "DESTINATION")]
    destination: String,
    /// Talk plain HTTP to the registry instead of HTTPS.
    #[arg(long)]
    insecure: bool,
    /// How layers are compressed for the registry.
    #[arg(long, value_enum, default_value_t = LayerCompression::Gzip)]
    compression: LayerCompression,
    /// Show the builders' output while building an installable.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayerCompression {
    Gzip,
    Zstd,
}

pub fn push(store_root: &Path, args: PushArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::FAILURE
    };
    let reference = match Reference::parse(&args.destination) {
        Ok(reference) => reference,
        Err(e) => return fail(e.to_string()),
    };
    let image: PathBuf = if image_cmd::is_installable(&args.image) {
        let installables = [args.image.clone()];
        let (store, targets) = match build_cmd::realise(
            store_root,
            &installables,
            BuildOptions::default(),
            false,
            args.print_build_logs,
        ) {
            Ok(done) => done,
            Err(code) => return code,
        };
        let paths: Vec<_> = targets
            .into_iter()
            .flat_map(|target| match target {
                Target::Derivation { outputs, .. } => outputs.into_values().collect(),
                Target::Opaque(path) => vec![path],
            })
            .collect();
        match paths.as_slice() {
            [one] => store.physical_path(one),
            _ => return fail(format!("'{}' has {} outputs; push one image at a time", args.image, paths.len())),
        }
    } else {
        PathBuf::from(&args.image)
    };
    let image = match image_cmd::image_location(store_root, &image) {
        Ok(image) => image,
        Err(e) => return fail(e),
    };
    let compression = match args.compression {
        LayerCompression::Gzip => Compression::Gzip,
        LayerCompression::Zstd => Compression::Zstd,
    };
    let options = Options { compression, insecure: args.insecure };
    match push::push(store_root, &image, &reference, options) {
        Ok(report) => {
            for blob in &report.blobs {
                println!("{} {} {}", blob.outcome.as_str(), blob.digest, blob.size);
            }
            println!("manifest {} {}", report.manifest_digest, report.manifest_size);
            println!("pushed {reference}: {} bytes sent", report.bytes_sent());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}
