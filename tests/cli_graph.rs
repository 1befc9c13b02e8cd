//! `mini graph` end to end: the build graph of a small flake (its nodes and
//! edges checked against `mini derivation show -r`), the runtime closure
//! once built (against `mini path-info -r`), determinism, `-o`, and SVG
//! through Graphviz's `dot`. The SVG test skips when `dot` is missing,
//! except under `CI=true`, where it fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{mini_at as mini, ok, text, Scratch};

/// `app` refers to `lib` at run time and copies `data`'s bytes (so no
/// reference to it); `lib` refers to busybox; `app` also reads a source file.
const FLAKE: &str = r#"{ pkgs, ... }:
rec {
  lib = pkgs.runCommand "lib" { } ''
    mkdir -p $out/bin
    echo '#!${pkgs.busybox}/bin/sh' > $out/bin/greet
  '';
  data = pkgs.writeText "data" "hello";
  app = pkgs.runCommand "app" { } ''
    mkdir $out
    echo ${lib} > $out/lib-path
    cat ${data} ${./notes.txt} > $out/data
  '';
}
"#;

struct Setup {
    _scratch: Scratch,
    store: PathBuf,
    dir: PathBuf,
}

fn setup(name: &str) -> Setup {
    let scratch = Scratch::new(&format!("graph-{name}"));
    scratch.write("flake/flake.nixlike", FLAKE);
    scratch.write("flake/notes.txt", "notes\n");
    Setup { store: scratch.0.join("store"), dir: scratch.0.join("flake"), _scratch: scratch }
}

impl Setup {
    fn mini(&self, args: &[&str]) -> Output {
        mini(&self.store, &self.dir, args)
    }
}

/// A parsed DOT graph as `mini graph` writes it: node lines `"ID" [ATTRS];`
/// in order, and edges `"A" -> "B";` in order.
struct Dot {
    nodes: Vec<(String, String)>,
    edges: Vec<(String, String)>,
}

fn parse_dot(dot: &str) -> Dot {
    let lines: Vec<&str> = dot.lines().collect();
    assert_eq!(lines.first(), Some(&"digraph mini {"), "{dot}");
    assert_eq!(lines.last(), Some(&"}"), "{dot}");
    let (mut nodes, mut edges) = (Vec::new(), Vec::new());
    for line in &lines[1..lines.len() - 1] {
        let line = line.trim().strip_suffix(';').unwrap_or_else(|| panic!("no ';' ending {line}"));
        if line.starts_with("node ") {
            continue;
        }
        let (first, rest) = quoted(line);
        if let Some(to) = rest.strip_prefix(" -> ") {
            let (second, tail) = quoted(to);
            assert!(tail.is_empty(), "{line}");
            edges.push((first, second));
        } else {
            let attrs = rest.trim().strip_prefix('[').and_then(|a| a.strip_suffix(']'));
            nodes.push((first, attrs.unwrap_or_else(|| panic!("no attributes in {line}")).to_string()));
        }
    }
    Dot { nodes, edges }
}

/// The `"…"` at the start of `text` (store paths need no escapes) and the rest.
fn quoted(text: &str) -> (String, &str) {
    let inner = text.strip_prefix('"').unwrap_or_else(|| panic!("not quoted: {text}"));
    let end = inner.find('"').unwrap_or_else(|| panic!("unterminated: {text}"));
    (inner[..end].to_string(), &inner[end + 1..])
}

fn sorted<T: Ord + Clone>(items: &[T]) -> bool {
    items.windows(2).all(|w| w[0] < w[1])
}

#[test]
fn the_build_graph_is_the_derivation_graph_with_sources() {
    let s = setup("build");
    let dot = ok(&s.mini(&["graph", ".#app"])) + "\n";
    let graph = parse_dot(&dot);
    // What `derivation show -r` says the graph is.
    let shown: Value = serde_json::from_str(&ok(&s.mini(&["derivation", "show", "-r", ".#app"]))).unwrap();
    let shown = shown.as_object().unwrap();
    let mut expected_nodes = BTreeSet::new();
    let mut expected_edges = BTreeSet::new();
    let mut sources = BTreeSet::new();
    for (drv, json) in shown {
        expected_nodes.insert(drv.clone());
        for input in json["inputDrvs"].as_object().unwrap().keys() {
            expected_edges.insert((input.clone(), drv.clone()));
        }
        for src in json["inputSrcs"].as_array().unwrap() {
            let src = src.as_str().unwrap().to_string();
            expected_edges.insert((src.clone(), drv.clone()));
            expected_nodes.insert(src.clone());
            sources.insert(src);
        }
    }
    let nodes: BTreeSet<String> = graph.nodes.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(nodes, expected_nodes, "{dot}");
    assert_eq!(graph.edges.iter().cloned().collect::<BTreeSet<_>>(), expected_edges, "{dot}");
    assert!(sorted(&graph.nodes) && sorted(&graph.edges), "not sorted:\n{dot}");

    // Derivations are boxes labelled by name; sources are ellipses.
    let id_of = |suffix: &str| nodes.iter().find(|n| n.ends_with(suffix)).unwrap_or_else(|| panic!("{suffix}: {dot}"));
    let (app, lib, data) = (id_of("-app.drv"), id_of("-lib.drv"), id_of("-data.drv"));
    let (busybox, notes) = (id_of("-busybox"), id_of("-notes.txt"));
    let attrs = |id: &String| graph.nodes.iter().find(|(n, _)| n == id).unwrap().1.clone();
    assert_eq!(attrs(app), r#"label = "app""#);
    assert!(attrs(busybox).contains("shape = ellipse"), "{dot}");
    assert_eq!(sources, BTreeSet::from([busybox.clone(), notes.clone()]));
    // Edges go from what is needed to what needs it.
    for (from, to) in [(lib, app), (data, app), (notes, app), (busybox, lib), (busybox, data)] {
        assert!(graph.edges.contains(&(from.clone(), to.clone())), "no {from} -> {to}:\n{dot}");
    }
    assert!(!graph.edges.contains(&(app.clone(), lib.clone())));

    // The same graph is the same text; a .drv path draws as its attribute does.
    assert_eq!(ok(&s.mini(&["graph", ".#app"])) + "\n", dot);
    assert_eq!(ok(&s.mini(&["graph", app])) + "\n", dot);
    // -o writes the file instead.
    let out = s.mini(&["graph", ".#app", "-o", "app.dot"]);
    assert_eq!(ok(&out), "");
    assert_eq!(std::fs::read_to_string(s.dir.join("app.dot")).unwrap(), dot);
}

#[test]
fn the_runtime_graph_is_the_closure_of_the_built_outputs() {
    let s = setup("runtime");
    let out = s.mini(&["graph", "--runtime", ".#app"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("not built yet; run `mini build .#app`"), "{err}");

    let app = ok(&s.mini(&["build", ".#app", "--no-link", "--print-out-paths"]));
    let dot = ok(&s.mini(&["graph", "--runtime", ".#app"])) + "\n";
    let graph = parse_dot(&dot);
    let closure: BTreeSet<String> = ok(&s.mini(&["path-info", "-r", &app])).lines().map(str::to_string).collect();
    let nodes: BTreeSet<String> = graph.nodes.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(nodes, closure, "{dot}");
    assert!(!dot.contains("-data\""), "data's bytes were copied, not referred to:\n{dot}");
    assert!(sorted(&graph.nodes) && sorted(&graph.edges), "not sorted:\n{dot}");

    let id_of = |suffix: &str| nodes.iter().find(|n| n.ends_with(suffix)).unwrap().clone();
    let (lib, busybox) = (id_of("-lib"), id_of("-busybox"));
    let edges: BTreeSet<(String, String)> = graph.edges.iter().cloned().collect();
    assert_eq!(edges, BTreeSet::from([(lib.clone(), app.clone()), (busybox.clone(), lib.clone())]), "{dot}");
    // Labels: the name, then the archive size that path-info reports.
    let info: Value = serde_json::from_str(&ok(&s.mini(&["path-info", "--json", &app]))).unwrap();
    let size = info[0]["narSize"].as_u64().unwrap();
    let app_attrs = &graph.nodes.iter().find(|(n, _)| *n == app).unwrap().1;
    let expected = if size < 1024 { format!("{size} B") } else { format!("{:.1} KiB", size as f64 / 1024.0) };
    assert_eq!(app_attrs, &format!(r#"label = "app\n{expected}""#));
    let busybox_attrs = &graph.nodes.iter().find(|(n, _)| *n == busybox).unwrap().1;
    assert!(busybox_attrs.contains(" MiB\""), "{busybox_attrs}");
}

/// A directory holding nothing, to be all of `PATH`.
fn empty_path(s: &Setup) -> PathBuf {
    let dir = s.dir.parent().unwrap().join("empty-bin");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn svg_without_graphviz_says_how_to_install_it() {
    let s = setup("no-dot");
    let out = Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(&s.store)
        .args(["graph", "--format", "svg", ".#app"])
        .env("PATH", empty_path(&s))
        .current_dir(&s.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("`dot`") && err.contains("apt-get install graphviz"), "{err}");
    assert!(out.stdout.is_empty());
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

#[test]
fn svg_is_rendered_by_graphviz() {
    if which("dot").is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dot is required when CI=true: run scripts/install-prerequisites"
        );
        eprintln!("skipping: Graphviz's dot is not on PATH");
        return;
    }
    let s = setup("svg");
    let svg = ok(&s.mini(&["graph", "--format", "svg", ".#app"]));
    assert!(svg.starts_with("<?xml") && svg.ends_with("</svg>"), "{svg}");
    // Node labels become SVG text.
    for label in ["app", "lib", "data", "busybox", "notes.txt"] {
        assert!(svg.contains(&format!(">{label}</text>")), "no {label} in\n{svg}");
    }
    assert_eq!(ok(&s.mini(&["graph", "--format", "svg", ".#app", "-o", "app.svg"])), "");
    assert_eq!(std::fs::read_to_string(Path::new(&s.dir).join("app.svg")).unwrap().trim_end(), svg);
}
