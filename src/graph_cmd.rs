//! `mini graph`: an installable's dependency graph as Graphviz DOT, or as
//! SVG rendered by Graphviz's `dot`. By default it is the build graph: the
//! `.drv`s reached through input derivations (boxes, labelled by name), with
//! input sources as leaves (ellipses). With `--runtime` it is the runtime
//! closure of the built outputs, through their references, each labelled
//! with its name and archive size.
//!
//! Edges go from a dependency to what depends on it, as in
//! `nix-store -q --graph` and in the build plan (`mini_build::dag`), so the
//! default top-to-bottom layout draws inputs above the things built from
//! them. Nodes and edges are written sorted by store path: the same graph
//! is the same text.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::fail;
use clap::{Args, ValueEnum};
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

/// What a node stands for, which decides how it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Derivation,
    Source,
    Output,
}

/// A graph to draw: nodes by store path, edges from dependency to dependent.
#[derive(Debug, Default)]
struct Graph {
    nodes: BTreeMap<StorePath, (Kind, String)>,
    edges: BTreeSet<(StorePath, StorePath)>,
}

pub fn graph(store_root: &Path, args: GraphArgs) -> ExitCode {
    let store = match Store::open(store_root) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let target = match mini_flake::resolve(&store, std::slice::from_ref(&args.installable)) {
        Ok(mut targets) if targets.len() == 1 => targets.remove(0),
        Ok(_) => return fail("the installable resolved to no single target"),
        Err(e) => return fail(e),
    };
    let graph = if args.runtime {
        runtime_graph(&store, &args.installable, target)
    } else {
        build_graph(&store, &args.installable, target)
    };
    let dot = match graph {
        Ok(g) => to_dot(&g),
        Err(message) => return fail(message),
    };
    let bytes = match args.format {
        Format::Dot => dot.into_bytes(),
        Format::Svg => match render_svg(&dot) {
            Ok(svg) => svg,
            Err(message) => return fail(message),
        },
    };
    match &args.output {
        Some(file) => match std::fs::write(file, &bytes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("writing '{}': {e}", file.display())),
        },
        None => {
            // A closed stdout (`| head`) is not worth a panic.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&bytes).and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
    }
}

/// The derivation graph under the target's `.drv`, input sources included.
fn build_graph(store: &Store, installable: &str, target: Target) -> Result<Graph, String> {
    let root = match target {
        Target::Derivation { drv_path, .. } => drv_path,
        Target::Opaque(path) => {
            return Err(format!(
                "'{path}' is not a derivation, so it has no build graph; `mini graph --runtime {installable}` draws its references"
            ))
        }
    };
    let mut graph = Graph::default();
    let mut todo = vec![root];
    while let Some(drv_path) = todo.pop() {
        if graph.nodes.contains_key(&drv_path) {
            continue;
        }
        let drv = mini_build::dag::read_derivation(store, &drv_path).map_err(|e| e.to_string())?;
        for src in &drv.input_srcs {
            graph.nodes.entry(src.clone()).or_insert_with(|| (Kind::Source, src.name().to_string()));
            graph.edges.insert((src.clone(), drv_path.clone()));
        }
        for input in drv.input_drvs.keys() {
            graph.edges.insert((input.clone(), drv_path.clone()));
            todo.push(input.clone());
        }
        graph.nodes.insert(drv_path, (Kind::Derivation, drv.name));
    }
    Ok(graph)
}

/// The runtime closure of the target's outputs, which must be built.
fn runtime_graph(store: &Store, installable: &str, target: Target) -> Result<Graph, String> {
    let roots: Vec<StorePath> = match target {
        Target::Derivation { outputs, .. } => outputs.into_values().collect(),
        Target::Opaque(path) => vec![path],
    };
    if let Some(missing) = roots.iter().find(|p| !store.is_valid(p)) {
        return Err(format!("'{installable}' ({missing}) is not built yet; run `mini build {installable}`"));
    }
    let closure = store.closure(&roots).map_err(|e| e.to_string())?;
    let mut graph = Graph::default();
    for info in closure {
        for reference in info.references.iter().filter(|r| **r != info.path) {
            graph.edges.insert((reference.clone(), info.path.clone()));
        }
        let label = format!("{}\n{}", info.path.name(), mini_image::inspect::human_size(info.nar_size));
        graph.nodes.insert(info.path, (Kind::Output, label));
    }
    Ok(graph)
}

/// A DOT quoted string: `"`, `\` and newlines escaped (a `\n` in a label
/// is a line break).
fn quote(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// The graph as DOT, nodes then edges, each sorted by store path.
fn to_dot(graph: &Graph) -> String {
    let mut dot = String::from("digraph mini {\n  node [shape = box, style = filled, fillcolor = \"#ffe0b0\"];\n");
    for (path, (kind, label)) in &graph.nodes {
        let style = match kind {
            Kind::Derivation | Kind::Output => "",
            Kind::Source => ", shape = ellipse, fillcolor = \"#c8e6c9\"",
        };
        dot.push_str(&format!("  {} [label = {}{style}];\n", quote(&path.to_string()), quote(label)));
    }
    for (from, to) in &graph.edges {
        dot.push_str(&format!("  {} -> {};\n", quote(&from.to_string()), quote(&to.to_string())));
    }
    dot.push_str("}\n");
    dot
}

/// Renders DOT as SVG with Graphviz's `dot`, found on `PATH`.
fn render_svg(dot: &str) -> Result<Vec<u8>, String> {
    let spawned =
        Command::new("dot").arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("--format svg needs Graphviz's `dot`, which is not on PATH: install graphviz \
                        (`apt-get install graphviz`), or use --format dot"
                .into())
        }
        Err(e) => return Err(format!("cannot run Graphviz's `dot`: {e}")),
    };
    let mut stdin = child.stdin.take().ok_or("no pipe to `dot`")?;
    let mut stdout = child.stdout.take().ok_or("no pipe from `dot`")?;
    // Feed and drain at once: a large graph fills either pipe.
    let (written, svg) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(dot.as_bytes()));
        let mut svg = Vec::new();
        let read = stdout.read_to_end(&mut svg).map(|_| svg);
        (writer.join().unwrap_or_else(|_| Err(std::io::Error::other("the writer panicked"))), read)
    });
    let output = child.wait_with_output().map_err(|e| format!("waiting for `dot`: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("`dot -Tsvg` failed ({}): {}", output.status, stderr.trim()));
    }
    written.map_err(|e| format!("writing to `dot`: {e}"))?;
    svg.map_err(|e| format!("reading from `dot`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> StorePath {
        StorePath::parse(&format!("/mini/store/{}-{name}", "0".repeat(32))).unwrap()
    }

    #[test]
    fn dot_lists_sorted_nodes_then_sorted_edges() {
        let mut graph = Graph::default();
        let (app, lib, src) = (path("app.drv"), path("lib.drv"), path("src"));
        graph.nodes.insert(app.clone(), (Kind::Derivation, "app".into()));
        graph.nodes.insert(lib.clone(), (Kind::Derivation, "lib".into()));
        graph.nodes.insert(src.clone(), (Kind::Source, "src".into()));
        graph.edges.insert((src.clone(), lib.clone()));
        graph.edges.insert((lib.clone(), app.clone()));
        graph.edges.insert((src.clone(), app.clone()));
        let p = |name: &str| format!("/mini/store/{}-{name}", "0".repeat(32));
        let expected = format!(
            "digraph mini {{\n  node [shape = box, style = filled, fillcolor = \"#ffe0b0\"];\n  \
             \"{app}\" [label = \"app\"];\n  \"{lib}\" [label = \"lib\"];\n  \
             \"{src}\" [label = \"src\", shape = ellipse, fillcolor = \"#c8e6c9\"];\n  \
             \"{lib}\" -> \"{app}\";\n  \"{src}\" -> \"{app}\";\n  \"{src}\" -> \"{lib}\";\n}}\n",
            app = p("app.drv"),
            lib = p("lib.drv"),
            src = p("src"),
        );
        assert_eq!(to_dot(&graph), expected);
    }

    #[test]
    fn labels_are_quoted_for_dot() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }

    /// Runtime-graph labels use the sizes `image inspect` shows.
    #[test]
    fn sizes_read_as_people_read_them() {
        use mini_image::inspect::human_size;
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(2 << 20), "2.0 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
