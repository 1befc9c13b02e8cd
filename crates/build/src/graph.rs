//! Dependency graphs for people to look at (`mini graph`): the build graph
//! of a derivation (the `.drv`s reached through input derivations, with
//! input sources as leaves) or the runtime closure of store paths (through
//! their references), as Graphviz DOT, or as SVG rendered by Graphviz's
//! `dot`.
//!
//! Edges go from a dependency to what depends on it, as in
//! `nix-store -q --graph` and in the build plan ([`crate::dag`]), so the
//! default top-to-bottom layout draws inputs above the things built from
//! them. Nodes and edges are written sorted by store path: the same graph
//! is the same text.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use mini_store::store::{PathInfo, Store};
use mini_store::store_path::StorePath;

/// What a node stands for, which decides how it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Derivation,
    Source,
    Output,
}

/// A graph to draw: nodes by store path, edges from dependency to dependent.
#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: BTreeMap<StorePath, (Kind, String)>,
    pub edges: BTreeSet<(StorePath, StorePath)>,
}

/// The derivation graph under the `.drv` `root`, input sources included.
pub fn build_graph(store: &Store, root: StorePath) -> Result<Graph, String> {
    let mut graph = Graph::default();
    let mut todo = vec![root];
    while let Some(drv_path) = todo.pop() {
        if graph.nodes.contains_key(&drv_path) {
            continue;
        }
        let drv = store.read_derivation(&drv_path).map_err(|e| e.to_string())?;
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

/// The runtime closure of `roots`, which must be valid, each path
/// labelled by `label` (its name and size, say).
pub fn runtime_graph(store: &Store, roots: &[StorePath], label: impl Fn(&PathInfo) -> String) -> Result<Graph, String> {
    let closure = store.closure(roots).map_err(|e| e.to_string())?;
    let mut graph = Graph::default();
    for info in closure {
        for reference in info.references.iter().filter(|r| **r != info.path) {
            graph.edges.insert((reference.clone(), info.path.clone()));
        }
        let label = label(&info);
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
pub fn to_dot(graph: &Graph) -> String {
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
pub fn render_svg(dot: &str) -> Result<Vec<u8>, String> {
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
}
