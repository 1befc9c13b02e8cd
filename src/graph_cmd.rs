//! `mini graph`: an installable's build graph, or with `--runtime` the
//! runtime closure of its outputs (each labelled with its name and archive
//! size), drawn by `mini_build::graph`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{failure, Outcome};
use clap::{Args, ValueEnum};
use mini_build::graph;
use mini_flake::Target;
use mini_store::store::Store;
use mini_store::store_path::StorePath;

#[derive(Args)]
pub struct GraphArgs {
    /// What to draw: DIR#ATTR (DIR/flake.nixlike), DIR (DIR#default), or a store path.
    installable: String,
    /// Draw the runtime closure of the built outputs instead of the build graph.
    #[arg(long)]
    runtime: bool,
    /// `dot`: Graphviz's source text; `svg`: rendered by Graphviz's `dot` program.
    #[arg(long, value_enum, default_value_t = Format::Dot)]
    format: Format,
    /// Write the graph to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Dot,
    Svg,
}

pub fn graph(store_root: &Path, args: GraphArgs) -> Outcome {
    let store = Store::open(store_root)?;
    let mut targets = mini_flake::resolve(&store, std::slice::from_ref(&args.installable))?;
    if targets.len() != 1 {
        return Err(failure("the installable resolved to no single target"));
    }
    let target = targets.remove(0);
    let installable = &args.installable;
    let graph = match (args.runtime, target) {
        (false, Target::Derivation { drv_path, .. }) => graph::build_graph(&store, drv_path),
        (false, Target::Opaque(path)) => Err(format!(
            "'{path}' is not a derivation, so it has no build graph; `mini graph --runtime {installable}` draws its references"
        )),
        (true, target) => {
            let roots: Vec<StorePath> = match target {
                Target::Derivation { outputs, .. } => outputs.into_values().collect(),
                Target::Opaque(path) => vec![path],
            };
            if let Some(missing) = roots.iter().find(|p| !store.is_valid(p)) {
                return Err(failure(format!("'{installable}' ({missing}) is not built yet; run `mini build {installable}`")));
            }
            graph::runtime_graph(&store, &roots, |info| {
                format!("{}\n{}", info.path.name(), mini_image::inspect::human_size(info.nar_size))
            })
        }
    };
    let dot = graph::to_dot(&graph.map_err(failure)?);
    let bytes = match args.format {
        Format::Dot => dot.into_bytes(),
        Format::Svg => graph::render_svg(&dot).map_err(failure)?,
    };
    match &args.output {
        Some(file) => {
            std::fs::write(file, &bytes).map_err(|e| failure(format!("writing '{}': {e}", file.display())))?
        }
        None => {
            // A closed stdout (`| head`) is not worth a panic.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&bytes).and_then(|()| stdout.flush());
        }
    }
    Ok(ExitCode::SUCCESS)
}
