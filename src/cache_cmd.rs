//! `mini key` and `mini copy`, and where `mini build` finds its binary
//! caches: signing keys and uploads come from `mini-cache`; this module
//! parses arguments and reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{failure, Outcome};

use clap::{Args, Subcommand};
use mini_build::BuildOptions;
use mini_cache::key::SecretKey;
use mini_cache::remote::Remote;
use mini_flake::Target;
use mini_store::store::Store;
use mini_store::store_path::StorePath;

use crate::build_cmd;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Write a new ed25519 key pair: NAME.secret (for `mini copy --secret-key`)
    /// and NAME.public (for `--trusted-public-keys`).
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The key's name, which signatures carry (e.g. cache.example.org-1).
    name: String,
    /// The directory to write the two files to.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

#[derive(Args)]
pub struct CopyArgs {
    /// The binary cache: file:///DIR or http(s)://HOST/PATH (written with PUT).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Sign each path with this key (a file holding NAME:BASE64).
    #[arg(long, value_name = "FILE")]
    secret_key: Option<PathBuf>,
    /// Show the builders' output while building what is missing.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
    /// What to copy (with its runtime closure): DIR#ATTR, DIR, or a store path.
    #[arg(required = true, value_name = "INSTALLABLE")]
    installables: Vec<String>,
}

pub fn key(command: KeyCommand) -> Outcome {
    let KeyCommand::Generate(args) = command;
    let key = SecretKey::generate(&args.name)?;
    let (secret, public) = mini_cache::key_files::write_key_pair(&key, &args.out)?;
    println!("{}", secret.display());
    println!("{}", public.display());
    Ok(ExitCode::SUCCESS)
}

pub fn copy(store_root: &Path, args: CopyArgs) -> Outcome {
    let key = match &args.secret_key {
        Some(file) => match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| SecretKey::parse(&t).map_err(|e| e.to_string()))
        {
            Ok(k) => Some(k),
            Err(e) => return Err(failure(format!("cannot read the secret key {}: {e}", file.display()))),
        },
        None => None,
    };
    let remote = Remote::parse(&args.to)?;
    let store = Store::open(store_root)?;
    let targets =
        build_cmd::realise(&store, &args.installables, BuildOptions::default(), false, args.print_build_logs)?;
    let roots: Vec<StorePath> = targets
        .iter()
        .flat_map(|t| match t {
            Target::Derivation { outputs, .. } => outputs.values().cloned().collect(),
            Target::Opaque(path) => vec![path.clone()],
        })
        .collect();
    let mut on_copy = |path: &StorePath| eprintln!("copying '{path}' to {}", args.to);
    let report = mini_cache::copy::copy_closure(&store, &remote, key.as_ref(), &roots, &mut on_copy)?;
    eprintln!("copied {} path(s); {} were already there", report.copied.len(), report.present.len());
    Ok(ExitCode::SUCCESS)
}
