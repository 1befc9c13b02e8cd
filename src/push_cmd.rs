//! `mini push`: sends an image to a registry. Image files and OCI layout
//! directories are pushed as they are, and streamed images
//! (`streamLayeredImage`) with their layers made from the store as they
//! are compressed; installables are built first
//! (through `build_cmd::realise`) and their output pushed. The pushing is
//! `mini_registry`'s. With `--sbom`, the SBOM of the image's closure
//! (`sbom_cmd`) is made before anything is sent, then attached to the
//! pushed manifest as an OCI artifact (`mini_registry::referrer`).

use std::path::Path;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use mini_image::compress::Compressor;
use mini_registry::push::{self, Options};
use mini_registry::reference::Reference;
use mini_registry::referrer::{self, Artifact, Subject};
use mini_store::store::Store;

use crate::sbom_cmd::{self, SbomFormat};
use crate::{failure, image_cmd, Outcome};

#[derive(Args)]
pub struct PushArgs {
    /// A docker-archive file, an OCI layout directory, a streamed image
    /// (streamLayeredImage's result), or an installable that builds one
    /// (DIR#ATTR, DIR, a .drv store path, a link such as ./result).
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to push: docker://HOST[:PORT]/REPO[:TAG] (the tag defaults to latest).
    #[arg(value_name = "DESTINATION")]
    destination: String,
    /// Talk plain HTTP to the registry instead of HTTPS.
    #[arg(long)]
    insecure: bool,
    /// How layers are compressed for the registry.
    #[arg(long, default_value = "gzip", value_parser = layer_compression())]
    compression: Compressor,
    /// Show the builders' output while building an installable.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
    /// Attach the SBOM of the image's closure to the pushed image (CycloneDX
    /// unless --sbom=spdx), as an artifact referring to its manifest and
    /// under the tag sha256-<manifest hex>.sbom. The image must come from
    /// the store: an installable, a store path or a link such as ./result.
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "cyclonedx")]
    sbom: Option<SbomFormat>,
}

/// `--compression`: the compressors a registry layer may use.
fn layer_compression() -> impl TypedValueParser<Value = Compressor> {
    PossibleValuesParser::new(["gzip", "zstd"]).map(|name| Compressor::parse(&name).unwrap_or(Compressor::Gzip))
}

pub fn push(store_root: &Path, args: PushArgs) -> Outcome {
    let reference = Reference::parse(&args.destination)?;
    let found = image_cmd::realise_image(store_root, &args.image, args.print_build_logs)?;
    let image = found.location;
    let streamed = mini_image::stream::is_stream_image(&image);
    // One handle: the build's, else opened if the SBOM or a streamed
    // image needs the store.
    let (store, built) = match found.built {
        Some((store, one)) => (Some(store), Some(one)),
        None if args.sbom.is_some() || streamed => (Some(Store::open(store_root)?), None),
        None => (None, None),
    };
    // The SBOM's document and format, made before anything is sent.
    let mut sbom: Option<(String, SbomFormat)> = None;
    if let (Some(format), Some(store)) = (args.sbom, &store) {
        let root = match built {
            Some(one) => one,
            None => sbom_cmd::stored_image(store_root, &args.image).map_err(failure)?,
        };
        let document = sbom_cmd::document(store, std::slice::from_ref(&root), format, root.name());
        sbom = Some((document.map_err(failure)?, format));
    }
    let options = Options { compression: args.compression, insecure: args.insecure };
    let report = match &store {
        // A streamed image: its layers are made from the store as they go.
        Some(store) if streamed => {
            let stream = mini_image::stream::open(&image, store)?;
            push::push_image(store_root, &stream.located(), &reference, options)?
        }
        _ => push::push(store_root, &image, &reference, options)?,
    };
    for blob in &report.blobs {
        println!("{} {} {}", blob.outcome.as_str(), blob.digest, blob.size);
    }
    println!("manifest {} {}", report.manifest_digest, report.manifest_size);
    println!("pushed {reference}: {} bytes sent", report.bytes_sent());
    match sbom {
        Some((text, format)) => attach_sbom(&reference, options.insecure, &report, &text, format),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Attaches the SBOM `text` to the manifest `report` pushed, and says so.
fn attach_sbom(
    reference: &Reference,
    insecure: bool,
    report: &push::Report,
    text: &str,
    format: SbomFormat,
) -> Outcome {
    let subject = Subject { digest: &report.manifest_digest, size: report.manifest_size };
    let artifact = Artifact {
        media_type: format.format().media_type(),
        file_name: format.file_name(),
        tag_suffix: "sbom",
        bytes: text.as_bytes(),
    };
    let attached = referrer::attach(reference, insecure, subject, artifact)
        .map_err(|e| failure(format!("the image was pushed, but its SBOM was not attached: {e}")))?;
    for blob in &attached.blobs {
        println!("{} {} {}", blob.outcome.as_str(), blob.digest, blob.size);
    }
    println!(
        "sbom {} ({}) attached to {} as {}:{}",
        attached.manifest_digest, artifact.media_type, report.manifest_digest, reference.repo, attached.tag
    );
    Ok(ExitCode::SUCCESS)
}
