//! `mini store add|add-fixed|verify`, `mini path-info` and `mini derivation show`:
//! thin wrappers over `mini_store::store::Store` that format what it
//! reports. The last two also take flake installables, through `mini_flake`.
//! `verify --repair` rebuilds through `mini_build::repair`, downloading
//! from the binary caches `mini build` uses.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{failure, Failure, Outcome};

use clap::{Args, Subcommand};
use mini_build::repair::{RepairReport, Repaired};
use mini_build::{BuildOptions, Builder, Substituter};
use mini_flake::{Installable, Target};
use mini_store::derivation::HashMode;
use mini_store::store::{Problem, Store};
use mini_store::store_path::StorePath;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Copy a file or directory into the store and print its store path.
    Add {
        path: PathBuf,
        /// The name part of the store path (default: the file name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Add a file as the output of a fixed-output derivation with its
    /// SHA-256 (flat, as `fetchurl` and `fetchPypi` hash it; --recursive:
    /// a tree, hashed as an archive) and print that store path, so a build
    /// that fetches it finds it there and downloads nothing.
    AddFixed {
        /// The file (with --recursive, also a directory) to add.
        path: PathBuf,
        /// The name part of the store path: the fetch's `name` (default:
        /// the file name, which fetchurl and fetchPypi use too).
        #[arg(long)]
        name: Option<String>,
        /// Add a directory (or an executable file) hashed as a tree
        /// (outputHashMode = "recursive", as fetchzip's output).
        #[arg(long)]
        recursive: bool,
    },
    /// Check every valid path: present, everything it refers to valid, and
    /// with --check-contents unmodified.
    Verify {
        /// Also hash every path's files and compare with the recorded hash.
        #[arg(long)]
        check_contents: bool,
        /// Put back what is missing or modified (contents are checked):
        /// build it again from its derivation, or download it from a binary
        /// cache; a `.drv` nothing can put back is removed, for evaluation
        /// to write again. Fails if anything is left broken.
        #[arg(long)]
        repair: bool,
        /// Binary caches to repair from (as `mini build --substituters`),
        /// tried before those of the config file.
        #[arg(long, value_name = "URL", value_delimiter = ' ', requires = "repair")]
        substituters: Vec<String>,
        /// Keys (NAME:BASE64) whose signatures make a cache's paths acceptable.
        #[arg(long, value_name = "KEY", value_delimiter = ' ', requires = "repair")]
        trusted_public_keys: Vec<String>,
        /// Print the problems (after any repair) as JSON
        /// (`[{"problem": "missing", "path": …}]`).
        #[arg(long)]
        json: bool,
    },
    /// Make LINK a symlink to a store path that also keeps it from GC.
    AddRoot { link: PathBuf, path: String },
}

#[derive(Subcommand)]
pub enum DerivationCommand {
    /// Print derivations (and, with -r, every derivation they depend on) as JSON.
    Show {
        /// Also show the input derivations, recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// `.drv` store paths, or installables (DIR#ATTR, DIR) whose
        /// derivations are evaluated and written to the store.
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

#[derive(Args)]
pub struct WhyDependsArgs {
    /// The path that depends: a store path, a link such as `result`, or an installable.
    from: String,
    /// The path depended on, given the same ways.
    to: String,
    /// Print the chain as JSON: each link with the files (and offsets) where the next one's hash appears.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct GcArgs {
    /// Only report what would be deleted.
    #[arg(long)]
    dry_run: bool,
    /// Print what was deleted as JSON (`{"deleted": […], "bytesFreed": N, "layerBytesFreed": N}`).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct PathInfoArgs {
    /// Show the closure: the paths and everything they refer to.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Show the closure size (the path and all it refers to).
    #[arg(short = 'S', long = "closure-size")]
    closure_size: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Store paths (or paths inside them), or installables (DIR#ATTR, DIR),
    /// which show their derivation's outputs.
    #[arg(required = true)]
    paths: Vec<String>,
}

pub fn store(root: &Path, command: StoreCommand) -> Outcome {
    let store = Store::open(root)?;
    match command {
        StoreCommand::Add { path, name } => {
            let name =
                name.unwrap_or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            let (p, copied) = store.add_path_reporting(&path, &name)?;
            if copied {
                eprintln!("copying '{}' to '{p}'", path.display());
            }
            println!("{p}");
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::AddFixed { path, name, recursive } => add_fixed(&store, &path, name, recursive),
        StoreCommand::Verify { check_contents, repair, substituters, trusted_public_keys, json } => {
            if repair {
                repair_store(&store, substituters, trusted_public_keys)?;
            }
            verify(&store, check_contents || repair, json)
        }
        StoreCommand::AddRoot { link, path } => {
            let (path, _) = StorePath::parse_prefix(&path)?;
            // Held until the root is made, so a GC cannot take it before.
            if !store.hold(&path)? {
                return Err(failure(format!("path '{path}' is not valid in the store at {}", root.display())));
            }
            store.add_root(&link, &path)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `mini store add-fixed`: prints the store path; says on stderr whether it
/// was copied, and the hash a recipe declares for it.
fn add_fixed(store: &Store, path: &Path, name: Option<String>, recursive: bool) -> Outcome {
    let Some(name) = name.or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned())) else {
        return Err(failure(format!("'{}' has no file name: give the store name with --name", path.display())));
    };
    let mode = if recursive { HashMode::Recursive } else { HashMode::Flat };
    let added = store.add_fixed(path, &name, mode, mini_store::fixed::Sha256::default())?;
    let hash = mini_store::encoding::sri(&added.hash.algo, &added.hash.digest);
    if added.copied {
        eprintln!("copying '{}' to '{}' ({hash})", path.display(), added.path);
    } else {
        eprintln!("'{}' is already in the store ({hash})", added.path);
    }
    println!("{}", added.path);
    Ok(ExitCode::SUCCESS)
}

/// Reports the store's problems; fails if there are any.
fn verify(store: &Store, check_contents: bool, json: bool) -> Outcome {
    let problems = store.verify(check_contents)?;
    if json {
        let list: Vec<serde_json::Value> = problems.iter().map(Problem::to_json).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    Err(failure(format!(
        "{} problem(s) in the store; `mini store verify --repair` puts back what it can",
        problems.len()
    )))
}

/// `verify --repair`: puts back what is broken and says what it did; the
/// verification that follows decides the exit status.
fn repair_store(store: &Store, urls: Vec<String>, keys: Vec<String>) -> Result<(), Failure> {
    let problems = store.verify(true)?;
    if problems.is_empty() {
        return Ok(());
    }
    let caches = mini_cache::config::Config::load()?.binary_caches(urls, keys)?;
    let substituter = caches.as_ref().map(|c| c as &dyn Substituter);
    let progress = crate::progress::Progress::new(false);
    let mut builder = Builder::new(store, BuildOptions::default(), &progress)
        .with_builtin(Box::new(mini_image::builder::ImageBuilder))
        .with_builtin(mini_debian::fetchdeb(mini_debian::apt::Apt::host()))
        .with_builtin(mini_debian::debroot());
    if let Some(substituter) = substituter {
        builder = builder.with_substituter(substituter);
    }
    let report = mini_build::repair::repair(store, &builder, substituter, &problems);
    progress.finish();
    let RepairReport { repaired, unrepaired } = report?;
    for done in &repaired {
        match done {
            Repaired::Rebuilt { path, drv } => eprintln!("repaired {path}: built again from {drv}"),
            Repaired::Substituted(path) => eprintln!("repaired {path}: downloaded again from a binary cache"),
            Repaired::Removed(path) => {
                eprintln!("removed {path}: nothing can put it back as it was; evaluating again writes it back")
            }
        }
    }
    for (what, why) in &unrepaired {
        eprintln!("could not repair {what}: {why}");
    }
    Ok(())
}

pub fn gc(root: &Path, args: GcArgs) -> Outcome {
    let store = Store::open(root)?;
    // Cached image layers of deleted paths go with them, as do remembered
    // git revisions whose store copies were deleted.
    let collected = mini_image::layer_cache::collect_garbage(&store, args.dry_run)?;
    if !args.dry_run {
        mini_flake::prune_revision_cache(&store);
    }
    let (report, layer_bytes) = (collected.store, collected.layer_bytes);
    if args.json {
        let deleted: Vec<String> = report.deleted.iter().map(|p| p.to_string()).collect();
        let json = serde_json::json!({
            "dryRun": args.dry_run,
            "deleted": deleted,
            "bytesFreed": report.bytes_freed,
            "layerBytesFreed": layer_bytes,
        });
        println!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    let (verb, summary) = if args.dry_run { ("would delete", "would be") } else { ("deleted", "were") };
    for path in &report.deleted {
        println!("{verb} {path}");
    }
    println!("{} store paths {summary} deleted, {} bytes {summary} freed", report.deleted.len(), report.bytes_freed);
    if layer_bytes > 0 {
        println!("{layer_bytes} bytes of cached image layers and push blobs freed");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn path_info(root: &Path, args: PathInfoArgs) -> Outcome {
    let store = Store::open(root)?;
    let targets = mini_flake::resolve(&store, &args.paths)?;
    let mut roots = Vec::new();
    for (text, target) in args.paths.iter().zip(targets) {
        match target {
            Target::Derivation { outputs, .. } if !names_store_path(text, root) => {
                for path in outputs.into_values() {
                    if !store.is_valid(&path) {
                        return Err(failure(format!("'{text}' ({path}) is not built yet; run `mini build {text}`")));
                    }
                    roots.push(path);
                }
            }
            // A store path shows itself, even a `.drv`.
            Target::Derivation { drv_path: path, .. } | Target::Opaque(path) if store.is_valid(&path) => {
                roots.push(path)
            }
            Target::Derivation { drv_path: path, .. } | Target::Opaque(path) => {
                return Err(failure(format!("path '{path}' is not valid in the store at {}", root.display())))
            }
        }
    }
    let shown = if args.recursive { store.closure(&roots) } else { store.infos(&roots) };
    let shown = shown?;
    let mut json_items = Vec::new();
    for info in &shown {
        let closure_size = if args.closure_size {
            Some(store.closure(std::slice::from_ref(&info.path))?.iter().map(|i| i.nar_size).sum::<u64>())
        } else {
            None
        };
        if args.json {
            json_items.push(info.to_json(closure_size));
        } else {
            match closure_size {
                Some(size) => println!("{}\t{}\t{}", info.path, info.nar_size, size),
                None => println!("{}", info.path),
            }
        }
    }
    if args.json {
        println!("[{}]", json_items.join(","));
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether an installable is a store path (rather than a flake attribute).
fn names_store_path(text: &str, root: &Path) -> bool {
    matches!(mini_flake::parse(text, root), Ok(Installable::StorePath(_)))
}

/// `mini why-depends A B`: the chain of references from A to B, and for each
/// step where in the files the next path's hash appears.
/// A store path given as itself (or a path inside it), a link into the
/// store such as `result`, or an installable (its `out` output).
fn store_path_of(store: &Store, text: &str) -> Result<StorePath, String> {
    if let Ok((path, _)) = StorePath::parse_prefix(text) {
        return Ok(path);
    }
    match mini_flake::resolve(store, &[text.to_string()]).map_err(|e| e.to_string())?.into_iter().next() {
        Some(Target::Opaque(path)) => Ok(path),
        Some(Target::Derivation { outputs, .. }) => outputs
            .get("out")
            .or_else(|| outputs.values().next())
            .cloned()
            .ok_or_else(|| format!("'{text}' has no outputs")),
        None => Err(format!("'{text}' names nothing")),
    }
}

pub fn why_depends(root: &Path, args: WhyDependsArgs) -> Outcome {
    let store = Store::open(root)?;
    let mut ends = Vec::new();
    for p in [&args.from, &args.to] {
        match store_path_of(&store, p) {
            Ok(path) if store.is_valid(&path) => ends.push(path),
            Ok(path) => {
                return Err(failure(format!(
                    "path '{path}' is not valid in the store at {}; build it first",
                    root.display()
                )))
            }
            Err(e) => return Err(failure(e)),
        }
    }
    let dependency = mini_store::references::Dependency::find(&store, &ends[0], &ends[1])?
        .ok_or_else(|| failure(format!("'{}' does not depend on '{}'", ends[0], ends[1])))?;
    if args.json {
        println!("{}", dependency.to_json());
    } else {
        print!("{}", dependency.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// `mini derivation show [-r] DRV|INSTALLABLE...`: `{ "<drv path>":
/// <derivation>, … }`, each derivation in its canonical JSON, sorted by path.
pub fn derivation(root: &Path, command: DerivationCommand) -> Outcome {
    let DerivationCommand::Show { recursive, paths } = command;
    let store = Store::open(root)?;
    let targets = mini_flake::resolve(&store, &paths)?;
    let mut todo = Vec::new();
    for target in targets {
        match target {
            Target::Derivation { drv_path, .. } => todo.push(drv_path),
            Target::Opaque(path) => return Err(failure(format!("'{path}' is not a derivation (a .drv path)"))),
        }
    }
    let mut shown = std::collections::BTreeMap::new();
    while let Some(drv) = todo.pop() {
        if shown.contains_key(&drv) {
            continue;
        }
        // Read back through the one `.drv` reader, which checks it still
        // gives its own path; the text is printed as stored.
        let (parsed, json) = store.read_derivation_text(&drv)?;
        if recursive {
            todo.extend(parsed.input_drvs.into_keys());
        }
        shown.insert(drv, json);
    }
    let entries: Vec<String> = shown.iter().map(|(p, json)| format!("\"{p}\":{}", json.trim_end())).collect();
    println!("{{{}}}", entries.join(","));
    Ok(ExitCode::SUCCESS)
}
