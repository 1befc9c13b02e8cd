//! `mini build`, `mini log` and `mini run`: resolve installables to
//! derivations (through `mini-flake`), realise them (through `mini-build`),
//! then make out-links, print paths, or run the result. Missing outputs
//! are first asked of the binary caches (`--substituters` and the config
//! file, through `mini-cache`). With `--remote` (or the config file's
//! `remote`), derivations are built on a REAPI service (`mini-remote`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{failure, Failure, Outcome};
use std::time::Duration;

use clap::Args;
use mini_build::{BuildOptions, Builder, Substituter};
use mini_cache::config::Config;
use mini_cache::substitute::BinaryCaches;
use mini_flake::{ResolveOptions, Target};
use mini_remote::client::RemoteBuilder;
use mini_remote::endpoint::Endpoint;
use mini_store::store::Store;
use mini_store::store_path::StorePath;

use crate::progress::Progress;

#[derive(Args)]
pub struct BuildArgs {
    /// What to build: DIR#ATTR (DIR/flake.nixlike), DIR (DIR#default), or a .drv store path.
    #[arg(required = true, value_name = "INSTALLABLE")]
    installables: Vec<String>,
    /// Name of the out-link (further ones get -2, -3, ...; other outputs -<output>).
    #[arg(short = 'o', long, value_name = "NAME", default_value = "result")]
    out_link: PathBuf,
    /// Make no out-links.
    #[arg(long, conflicts_with = "out_link")]
    no_link: bool,
    /// Print the output paths on stdout.
    #[arg(long)]
    print_out_paths: bool,
    /// Print what was built as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Build this many derivations at once (default: the number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,
    /// Go on building what does not depend on a failed derivation.
    #[arg(long)]
    keep_going: bool,
    /// Keep the build directory of a failed build and say where it is.
    #[arg(long)]
    keep_failed: bool,
    /// Rebuild already-valid outputs and compare them bit for bit.
    #[arg(long)]
    check: bool,
    /// Kill a build that runs longer than this (with --remote, the
    /// actions' timeout).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Kill a build that prints nothing for this long (builds on this
    /// machine; REAPI has no such limit for remote ones).
    #[arg(long, value_name = "SECS")]
    max_silent_time: Option<u64>,
    /// The size of each build's /tmp and /dev/shm (bytes, or with a K, M or
    /// G suffix; default 1G). Builds keep large temporary files in /build.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    tmpfs_size: Option<u64>,
    /// Show the builders' output, each line prefixed with its derivation.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
    /// Binary caches to download outputs from instead of building them
    /// (file:///DIR or http(s)://...; repeatable or space-separated), tried
    /// before those of the config file.
    #[arg(long, value_name = "URL", value_delimiter = ' ')]
    substituters: Vec<String>,
    /// Keys (NAME:BASE64) whose signatures make a cache's paths acceptable,
    /// besides those of the config file.
    #[arg(long, value_name = "KEY", value_delimiter = ' ')]
    trusted_public_keys: Vec<String>,
    /// Build on a Remote Execution API service (grpc://HOST:PORT[/INSTANCE]),
    /// such as BuildGrid with `mini worker`s; -j is then the number of
    /// actions in flight. Overrides the config file's `remote`.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    /// Build here even if the config file names a remote service.
    #[arg(long, conflicts_with = "remote")]
    no_remote: bool,
    /// Lock the inputs of a flake whose mini.lock is missing or stale
    /// (writing the lock of a working tree) instead of refusing to build.
    #[arg(long)]
    update_lock: bool,
}

#[derive(Args)]
pub struct LogArgs {
    /// DIR#ATTR or a .drv store path.
    installable: String,
}

#[derive(Args)]
pub struct RunArgs {
    /// What to build and run: DIR#ATTR or DIR.
    installable: String,
    /// Arguments for the program (after `--`).
    #[arg(last = true)]
    args: Vec<OsString>,
}

/// Resolves installables and builds them in `store`, substituting from
/// the configured binary caches; the targets and, on success, nothing else
/// to report.
pub(crate) fn realise(
    store: &Store,
    installables: &[String],
    options: BuildOptions,
    check: bool,
    print_logs: bool,
) -> Result<Vec<Target>, Failure> {
    let config = Config::load()?;
    let caches = config.binary_caches(Vec::new(), Vec::new())?;
    let request =
        Realise { installables, resolve: &ResolveOptions::default(), check, print_logs, remote: RemoteChoice::Config };
    realise_with(store, &config, &request, options, caches.as_ref())
}

/// What [`realise_with`] is asked for, besides the build options.
struct Realise<'a> {
    installables: &'a [String],
    resolve: &'a ResolveOptions,
    check: bool,
    print_logs: bool,
    remote: RemoteChoice,
}

/// Where `mini build` builds: on the service the config file names (if
/// any), on this one, or here.
enum RemoteChoice {
    Config,
    Url(String),
    Local,
}

/// [`realise`] with these binary caches.
fn realise_with(
    store: &Store,
    config: &Config,
    request: &Realise,
    mut options: BuildOptions,
    caches: Option<&BinaryCaches>,
) -> Result<Vec<Target>, Failure> {
    let resolved = mini_flake::resolve_with(store, request.installables, request.resolve)?;
    crate::lock_cmd::report_updates(&resolved.lock_updates);
    for line in &resolved.diagnostics {
        eprintln!("{line}");
    }
    let targets = resolved.targets;
    let drvs: Vec<StorePath> = targets
        .iter()
        .filter_map(|t| match t {
            Target::Derivation { drv_path, .. } => Some(drv_path.clone()),
            Target::Opaque(_) => None,
        })
        .collect();
    for target in &targets {
        if let Target::Opaque(path) = target {
            if !store.is_valid(path) {
                return Err(failure(format!("{path} is not a valid store path")));
            }
        }
    }
    let progress = Progress::new(request.print_logs);
    let (options_timeout, options_silent) = (options.timeout, options.max_silent_time);
    let file_dirs = config.allowed_file_dirs()?;
    options.impure_env = config.impure_env()?;
    let mut builder = Builder::new(store, options, &progress)
        .with_builtin(mini_build::builtin_builders::fetchurl(file_dirs))
        .with_builtin(Box::new(mini_image::builder::ImageBuilder))
        .with_builtin(mini_debian::fetchdeb(mini_debian::apt::Apt::host()))
        .with_builtin(mini_debian::debroot());
    if let Some(caches) = caches {
        builder = builder.with_substituter(caches as &dyn Substituter);
    }
    let remote = match &request.remote {
        RemoteChoice::Url(url) => Some(RemoteBuilder::connect(&Endpoint::parse(url)?, options_timeout)?),
        // The config file's service is a default: when it cannot be
        // reached, this machine builds.
        RemoteChoice::Config => match config.remote()? {
            Some(url) => match RemoteBuilder::connect(&Endpoint::parse(&url)?, options_timeout) {
                Ok(remote) => Some(remote),
                Err(error) => {
                    eprintln!("warning: {error}; building here instead (the config file's \"remote\")");
                    None
                }
            },
            None => None,
        },
        RemoteChoice::Local => None,
    };
    if let Some(remote) = &remote {
        if options_silent.is_some() {
            eprintln!(
                "warning: --max-silent-time limits only the builds on this machine; remote actions get --timeout"
            );
        }
        builder = builder.with_remote(remote);
    }
    let report = builder.realise(&drvs, request.check);
    progress.finish();
    if let Some(remote) = &remote {
        let stats = remote.stats();
        eprintln!(
            "remote: {} executed, {} from the action cache; {} blobs ({} bytes) uploaded, {} bytes downloaded",
            stats.executed, stats.cached, stats.uploaded_blobs, stats.uploaded_bytes, stats.downloaded_bytes
        );
    }
    let report = report?;
    if !report.failed.is_empty() {
        // Each failure was shown as it happened.
        let mut message = format!("{} derivation(s) failed", report.failed.len());
        if !report.not_attempted.is_empty() {
            let count = report.not_attempted.len();
            let verb = if count == 1 { "was" } else { "were" };
            message.push_str(&format!("; {count} {verb} not built because of that"));
        }
        return Err(failure(message));
    }
    Ok(targets)
}

pub fn build(store_root: &Path, args: BuildArgs) -> Outcome {
    let mut options = BuildOptions::default();
    if let Some(jobs) = args.jobs {
        options.jobs = jobs.max(1);
    }
    options.keep_going = args.keep_going;
    options.keep_failed = args.keep_failed;
    options.timeout = args.timeout.map(Duration::from_secs);
    options.max_silent_time = args.max_silent_time.map(Duration::from_secs);
    if let Some(size) = args.tmpfs_size {
        options.tmpfs_size = size;
    }
    let config = Config::load()?;
    let caches = config.binary_caches(args.substituters, args.trusted_public_keys)?;
    let store = Store::open(store_root)?;
    let resolve = ResolveOptions { update_lock: args.update_lock };
    let request = Realise {
        installables: &args.installables,
        resolve: &resolve,
        check: args.check,
        print_logs: args.print_build_logs,
        remote: match (args.remote, args.no_remote) {
            (Some(url), _) => RemoteChoice::Url(url),
            (None, true) => RemoteChoice::Local,
            (None, false) => RemoteChoice::Config,
        },
    };
    let targets = realise_with(&store, &config, &request, options, caches.as_ref())?;
    let mut json = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let (outputs, drv) = match target {
            Target::Derivation { drv_path, outputs } => (outputs.clone(), Some(drv_path)),
            Target::Opaque(path) => (BTreeMap::from([("out".to_string(), path.clone())]), None),
        };
        if !args.no_link {
            for (name, path) in &outputs {
                let mut link = args.out_link.as_os_str().to_owned();
                if i > 0 {
                    link.push(format!("-{}", i + 1));
                }
                if name != "out" {
                    link.push(format!("-{name}"));
                }
                store.add_root(Path::new(&link), path)?;
            }
        }
        if args.print_out_paths {
            for path in outputs.values() {
                println!("{path}");
            }
        }
        let outputs_json: serde_json::Map<String, serde_json::Value> =
            outputs.iter().map(|(n, p)| (n.clone(), p.to_string().into())).collect();
        let mut entry = serde_json::Map::new();
        if let Some(drv) = drv {
            entry.insert("drvPath".into(), drv.to_string().into());
        }
        entry.insert("outputs".into(), outputs_json.into());
        json.push(serde_json::Value::Object(entry));
    }
    if args.json {
        println!("{}", serde_json::Value::Array(json));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn log(store_root: &Path, args: LogArgs) -> Outcome {
    let store = Store::open(store_root)?;
    let targets = mini_flake::resolve(&store, std::slice::from_ref(&args.installable))?;
    let drv = match targets.first() {
        Some(Target::Derivation { drv_path, .. }) => drv_path.clone(),
        Some(Target::Opaque(path)) => match store.query(path) {
            Ok(Some(info)) if info.deriver.is_some() => info.deriver.unwrap_or_else(|| path.clone()),
            _ => return Err(failure(format!("{path} was not built by mini, so it has no log"))),
        },
        None => return Err(failure("nothing to show")),
    };
    let path = mini_build::schedule::log_path(&store, &drv);
    let bytes =
        std::fs::read(&path).map_err(|_| failure(format!("{drv} has no build log; it has not been built here")))?;
    use std::io::Write;
    let _ = std::io::stdout().write_all(&bytes);
    Ok(ExitCode::SUCCESS)
}

pub fn run(store_root: &Path, args: RunArgs) -> Outcome {
    let store = Store::open(store_root)?;
    let targets = realise(&store, std::slice::from_ref(&args.installable), BuildOptions::default(), false, false)?;
    let (out, name, main_program) = match targets.first() {
        Some(Target::Derivation { drv_path, outputs }) => {
            let Some(out) = outputs.get("out").or_else(|| outputs.values().next()) else {
                return Err(failure("the derivation has no outputs"));
            };
            let drv = store.read_derivation(drv_path).ok();
            let main = drv.as_ref().and_then(|d| d.env.get("mainProgram").cloned());
            let name = drv.map(|d| d.name).unwrap_or_default();
            (out.clone(), name, main)
        }
        Some(Target::Opaque(path)) => (path.clone(), path.name().to_string(), None),
        None => return Err(failure("nothing to run")),
    };
    let program = mini_build::store_view::program_to_run(&store.physical_path(&out), &name, main_program)
        .map_err(|e| failure(format!("cannot tell what to run in {out}: {e}")))?;
    let scratch = store.staging_dir()?;
    let program_path = format!("{out}/bin/{program}");
    let mut command = mini_build::store_view::run_command(&store.store_dir(), &scratch, &program_path, &args.args)?;
    let status = command.status();
    mini_store::store::discard_tree(&scratch);
    let status = status.map_err(|e| failure(format!("cannot run {program_path}: {e}")))?;
    Ok(ExitCode::from(status.code().map_or(1, |c| c as u8)))
}

/// A size in bytes, as `--tmpfs-size` takes it: `4096`, `512K`, `64M`, `2G`.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(format!("'{text}': the unit must be K, M or G")),
    };
    let number: u64 = digits.parse().map_err(|_| format!("'{text}' is not a size (such as 4096, 512K, 64M or 2G)"))?;
    match number.checked_shl(shift).filter(|n| n >> shift == number && *n > 0) {
        Some(bytes) => Ok(bytes),
        None => Err(format!("'{text}' is not a usable size: it must be above zero and below 16 EiB")),
    }
}
