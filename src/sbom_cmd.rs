//! `mini sbom`: the software bill of materials of an installable's runtime
//! closure, as CycloneDX 1.5 or SPDX 2.3 JSON. The installable is built
//! first (through `build_cmd::realise`), so the document describes what is
//! really in the store; the gathering and writing are `mini_sbom`'s.
//! `mini push --sbom` attaches the same document to the pushed image.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use mini_build::BuildOptions;
use mini_flake::{Installable, Target};
use mini_sbom::Format;
use mini_store::store::Store;
use mini_store::store_path::StorePath;

use crate::{build_cmd, failure, Outcome};

#[derive(Args)]
pub struct SbomArgs {
    /// What to describe: DIR#ATTR, DIR, a .drv store path (built first), or
    /// a store path or a link to one such as ./result.
    #[arg(value_name = "INSTALLABLE")]
    installable: String,
    /// The document's format.
    #[arg(long, value_enum, default_value_t = SbomFormat::Cyclonedx)]
    format: SbomFormat,
    /// Write the document to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Show the builders' output while building.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
}

/// An SBOM format on the command line.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SbomFormat {
    /// CycloneDX 1.5 JSON.
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
}

impl SbomFormat {
    pub fn format(self) -> Format {
        match self {
            SbomFormat::Cyclonedx => Format::CycloneDx,
            SbomFormat::Spdx => Format::Spdx,
        }
    }

    /// The file name an attached document gets.
    pub fn file_name(self) -> &'static str {
        match self {
            SbomFormat::Cyclonedx => "sbom.cdx.json",
            SbomFormat::Spdx => "sbom.spdx.json",
        }
    }
}

pub fn sbom(store_root: &Path, args: SbomArgs) -> Outcome {
    let installables = [args.installable.clone()];
    let store = Store::open(store_root)?;
    let targets = build_cmd::realise(&store, &installables, BuildOptions::default(), false, args.print_build_logs)?;
    let (roots, name) = roots_of(targets);
    let text = document(&store, &roots, args.format, &name).map_err(failure)?;
    match &args.output {
        Some(file) => {
            // Written beside and renamed: a failed write leaves no document
            // that looks whole.
            let mut tmp = file.as_os_str().to_owned();
            tmp.push(format!(".tmp-{}", std::process::id()));
            let tmp = std::path::PathBuf::from(tmp);
            let written = std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, file));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(failure(format!("writing '{}': {e}", file.display())));
            }
        }
        None => {
            // A closed stdout (`| head`) is not worth a panic.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The SBOM of the closure of `roots`, named `name`, or why there is none.
pub(crate) fn document(store: &Store, roots: &[StorePath], format: SbomFormat, name: &str) -> Result<String, String> {
    mini_sbom::document(store, roots, format.format(), name).map_err(|e| e.to_string())
}

/// The store paths realised targets stand for, and the document's name:
/// the derivation's name (or the path's), the same however the
/// installable was written, so the same closure gives the same document.
pub(crate) fn roots_of(targets: Vec<Target>) -> (Vec<StorePath>, String) {
    let mut roots = Vec::new();
    let mut names = Vec::new();
    for target in targets {
        match target {
            Target::Derivation { drv_path, outputs } => {
                names.push(drv_path.name().trim_end_matches(".drv").to_string());
                roots.extend(outputs.into_values());
            }
            Target::Opaque(path) => {
                names.push(path.name().to_string());
                roots.push(path);
            }
        }
    }
    (roots, names.join(" "))
}

/// The store path an image on disk (a store path, or a link such as
/// `./result`) is, for `mini push --sbom`: an image that is not in the
/// store has no closure to describe.
pub(crate) fn stored_image(store_root: &Path, image: &str) -> Result<StorePath, String> {
    match mini_flake::parse(image, store_root) {
        Ok(Installable::StorePath(path)) => Ok(path),
        _ => Err(format!(
            "--sbom describes an image's closure in the store, and '{image}' is not in the store: \
             push an installable (DIR#ATTR), a store path or a link to one such as ./result"
        )),
    }
}
