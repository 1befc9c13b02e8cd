//! `mini flake show` (a flake's attributes as a tree, as `nix flake show`
//! draws it) and `mini eval DIR#ATTR` (one attribute, printed as `mini
//! eval` prints a file's value). The evaluation is `mini-flake`'s; this
//! only prints.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mini_lang::{print_value, Evaluator, Value};
use mini_store::store::Store;

use crate::{failure, Outcome};

#[derive(Subcommand)]
pub enum FlakeCommand {
    /// List a flake's attributes as a tree, each with its type (a
    /// derivation with its name); nothing is built.
    Show(ShowArgs),
}

#[derive(Args)]
pub struct ShowArgs {
    /// The flake: a directory holding flake.nixlike, or git+file:URL.
    #[arg(default_value = ".", value_name = "FLAKE")]
    flake: String,
    /// Also list the attributes of other systems than this machine's.
    #[arg(long)]
    all_systems: bool,
}

pub fn flake(store_root: &Path, command: FlakeCommand) -> Outcome {
    match command {
        FlakeCommand::Show(args) => {
            let options = mini_flake::ShowOptions { all_systems: args.all_systems };
            let shown = mini_flake::show(&Store::open(store_root)?, &args.flake, &options)?;
            for line in &shown.diagnostics {
                eprintln!("{line}");
            }
            let _ = std::io::stdout().write_all(shown.text.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `mini eval DIR#ATTR`: the attribute's value, printed as `mini eval`
/// prints (`--strict`: deeply; `--json`: as JSON).
pub fn eval(store_root: &Path, text: &str, strict: bool, json: bool) -> Outcome {
    let (store, text) = (Store::open(store_root)?, text.to_string());
    let outcome = mini_lang::with_evaluator(move |ev| {
        // Lazy printing shows which values are still thunks; keep them all.
        ev.speculate = strict || json;
        let evaluated = mini_flake::eval_attribute(ev, &store, &text).map_err(|e| format!("error: {e}\n"))?;
        for line in &evaluated.diagnostics {
            eprintln!("{line}");
        }
        printed(ev, &evaluated.value, strict, json).map_err(|e| ev.render_error(&e))
    });
    match outcome.map_err(|e| failure(format!("the evaluation thread failed: {e}")))? {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush());
            Ok(ExitCode::SUCCESS)
        }
        // Already rendered with its source positions.
        Err(rendered) => {
            let _ = std::io::stderr().write_all(rendered.as_bytes());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn printed(ev: &mut Evaluator, value: &Value, strict: bool, json: bool) -> mini_lang::EvalResult<String> {
    let span = Default::default();
    if json {
        return mini_lang::to_json(ev, value, span);
    }
    if strict {
        ev.deep_force(value, span)?;
    }
    Ok(format!("{}\n", print_value(value)))
}
