//! `mini fetch` (as `nix-prefetch-url`): downloads a URL, or a wheel with
//! the host's pip, adds it to the store as a flat SHA-256 fixed output and
//! prints the SRI hash to paste into a recipe. The downloads are the fetch
//! builtins' own (`mini_build::builtin_builders::fetch_url`,
//! `mini_build::pypi::download`), so the file is the one a build fetches,
//! at the path that build would give it.

use std::path::Path;
use std::process::ExitCode;

use crate::{failure, Outcome};

use clap::Args;
use mini_build::pypi::{Pip, Request};
use mini_store::derivation::HashMode;
use mini_store::store::{discard_tree, Store};

#[derive(Args)]
pub struct FetchArgs {
    /// A URL (http://, https://, or file:// below the directories
    /// "allowedFileUrls" or MINI_ALLOWED_FILE_URLS allow), or
    /// pypi:NAME==VERSION for a wheel downloaded with the host's pip.
    source: String,
    /// The name of the store path (default: the URL's last component, as
    /// fetchurl's; for pypi: the file's name, as fetchPypi's).
    #[arg(long)]
    name: Option<String>,
    /// pypi only: the wheel's platform tag, or a dotted set of them (as
    /// fetchPypi's `platform`; with python tag py3 and abi none). Without
    /// it, pip picks the wheel for this machine.
    #[arg(long, value_name = "TAG")]
    platform: Option<String>,
}

pub fn fetch(store_root: &Path, args: FetchArgs) -> Outcome {
    let store = Store::open(store_root)?;
    let staging = store.staging_dir()?;
    let fetched = fetch_into(&store, &staging, args);
    discard_tree(&staging);
    fetched
}

/// Downloads into `staging`, adds the file and prints what a recipe needs.
fn fetch_into(store: &Store, staging: &Path, args: FetchArgs) -> Outcome {
    // Progress, like a build's log, goes to stderr: stdout is the hash alone.
    let mut log = std::io::stderr();
    let (file, default_name) = match args.source.strip_prefix("pypi:") {
        Some(spec) => {
            let request = Request::from_spec(spec, args.platform).map_err(failure)?;
            let file = mini_build::pypi::download(&Pip::from_env(), &request, &staging.join("pip"), &mut log)
                .map_err(|e| e.to_string())?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (file, name)
        }
        None => {
            if args.platform.is_some() {
                return Err(failure("--platform is for pypi:NAME==VERSION downloads only"));
            }
            let file_dirs = mini_cache::config::Config::load()?.allowed_file_dirs()?;
            let file = staging.join("download");
            mini_build::builtin_builders::fetch_url(&args.source, &file_dirs, &file, &mut log)
                .map_err(|e| e.to_string())?;
            // As fetchurl's `baseNameOf url`.
            let name = args.source.rsplit('/').next().unwrap_or_default().to_string();
            (file, name)
        }
    };
    let name = args.name.unwrap_or(default_name);
    let added = store
        .add_fixed(&file, &name, HashMode::Flat, mini_store::fixed::Sha256::default())
        .map_err(|e| format!("{e}; give the store name with --name"))?;
    eprintln!("path: {}", added.path);
    eprintln!("file: {name}");
    println!("{}", mini_store::encoding::sri(&added.hash.algo, &added.hash.digest));
    Ok(ExitCode::SUCCESS)
}
