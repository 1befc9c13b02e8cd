//! Reference constraints: `allowedReferences`, `allowedRequisites`,
//! `disallowedReferences` and `disallowedRequisites`, with Nix's meaning.
//! A recipe uses them to promise what its outputs may depend on (a Go
//! service must not keep its toolchain alive, say); the scheduler checks
//! them after an output's references are known and before anything is
//! registered, so a broken promise leaves nothing in the store.
//!
//! Each attribute is a list, which reaches the derivation's environment
//! space-separated, as Nix passes lists: store paths, or names of the
//! derivation's own outputs (`out`, `dev`). `*References` constrains an
//! output's direct references, `*Requisites` its whole closure. An output
//! referring to itself is never a violation.
//!
//! Pure: the references of each path come from the caller.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mini_store::derivation::Derivation;
use mini_store::store_path::StorePath;

use crate::error::{BuildError, Result};

/// The attributes, in the order they are checked and reported.
pub const ATTRIBUTES: [&str; 4] =
    ["allowedReferences", "allowedRequisites", "disallowedReferences", "disallowedRequisites"];

/// One attribute a derivation sets, its entries resolved to store paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// One of [`ATTRIBUTES`].
    pub attribute: &'static str,
    pub paths: BTreeSet<StorePath>,
}

impl Constraint {
    /// Whether the list names what is allowed (else what is forbidden).
    fn allows(&self) -> bool {
        self.attribute.starts_with("allowed")
    }

    /// Whether the whole closure is constrained (else the direct references).
    fn recursive(&self) -> bool {
        self.attribute.ends_with("Requisites")
    }
}

/// A dependency of an output that a constraint forbids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The output's name (`out`).
    pub output: String,
    /// The attribute broken, one of [`ATTRIBUTES`].
    pub attribute: &'static str,
    /// The shortest chain of references from the output (first) to the
    /// forbidden path (last).
    pub chain: Vec<StorePath>,
    /// Where in the output's files the second path of the chain appears
    /// (`file: …context…`), when that was looked up.
    pub found_in: Vec<String>,
}

/// The constraints `drv` (at `drv_path`) sets; `outputs` resolves the
/// output names its lists may hold. An entry that is neither a store path
/// nor one of its outputs is an error, as in Nix.
pub fn parse(drv_path: &StorePath, drv: &Derivation, outputs: &BTreeMap<String, StorePath>) -> Result<Vec<Constraint>> {
    let mut constraints = Vec::new();
    for attribute in ATTRIBUTES {
        let Some(value) = drv.env.get(attribute) else { continue };
        let mut paths = BTreeSet::new();
        for entry in value.split_whitespace() {
            let path = match StorePath::parse(entry) {
                Ok(path) => path,
                Err(_) => outputs.get(entry).cloned().ok_or_else(|| BuildError::BadDerivation {
                    drv: drv_path.to_string(),
                    message: format!(
                        "'{entry}' in {attribute} is neither a store path nor one of its outputs ({}); \
                         list packages (store paths) or output names",
                        outputs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                })?,
            };
            paths.insert(path);
        }
        constraints.push(Constraint { attribute, paths });
    }
    Ok(constraints)
}

/// What `constraints` forbid in the output `name` at `output`, whose
/// direct references and those of every path they lead to `references`
/// gives. Sorted by attribute, then by the forbidden path.
pub fn check(
    constraints: &[Constraint],
    name: &str,
    output: &StorePath,
    references: &mut dyn FnMut(&StorePath) -> Result<BTreeSet<StorePath>>,
) -> Result<Vec<Violation>> {
    let mut violations = Vec::new();
    if constraints.is_empty() {
        return Ok(violations);
    }
    let direct = references(output)?;
    // Filled only if a *Requisites constraint needs the closure.
    let mut parents: Option<BTreeMap<StorePath, StorePath>> = None;
    for constraint in constraints {
        let used: Vec<StorePath> = if constraint.recursive() {
            let parents = match &mut parents {
                Some(parents) => parents,
                None => parents.insert(closure_parents(output, &direct, references)?),
            };
            parents.keys().cloned().collect()
        } else {
            direct.iter().filter(|p| *p != output).cloned().collect()
        };
        for path in used {
            if constraint.paths.contains(&path) == constraint.allows() {
                continue;
            }
            let chain = match &parents {
                Some(parents) if constraint.recursive() => chain_to(output, &path, parents),
                _ => vec![output.clone(), path],
            };
            violations.push(Violation {
                output: name.to_string(),
                attribute: constraint.attribute,
                chain,
                found_in: Vec::new(),
            });
        }
    }
    Ok(violations)
}

/// Every path in the closure of `output` but itself, each mapped to the
/// path it was first reached from, breadth first (so chains are shortest).
fn closure_parents(
    output: &StorePath,
    direct: &BTreeSet<StorePath>,
    references: &mut dyn FnMut(&StorePath) -> Result<BTreeSet<StorePath>>,
) -> Result<BTreeMap<StorePath, StorePath>> {
    let mut parents = BTreeMap::new();
    let mut queue: VecDeque<StorePath> = VecDeque::new();
    for path in direct.iter().filter(|p| *p != output) {
        parents.insert(path.clone(), output.clone());
        queue.push_back(path.clone());
    }
    while let Some(path) = queue.pop_front() {
        for next in references(&path)? {
            if next != *output && !parents.contains_key(&next) {
                parents.insert(next.clone(), path.clone());
                queue.push_back(next);
            }
        }
    }
    Ok(parents)
}

/// The chain from `output` to `path` that `parents` recorded.
fn chain_to(output: &StorePath, path: &StorePath, parents: &BTreeMap<StorePath, StorePath>) -> Vec<StorePath> {
    let mut chain = vec![path.clone()];
    let mut at = path;
    while at != output {
        let Some(parent) = parents.get(at) else { break };
        chain.push(parent.clone());
        at = parent;
    }
    chain.reverse();
    chain
}

/// The message for [`BuildError::ForbiddenReferences`]: each violation
/// with its chain drawn as `mini why-depends` draws one, then what to do.
pub(crate) fn render(drv: &str, violations: &[Violation]) -> String {
    let mut text = String::new();
    for v in violations {
        let Some(forbidden) = v.chain.last() else { continue };
        let verb = if v.attribute.ends_with("Requisites") { "depends on" } else { "refers to" };
        let judgement = if v.attribute.starts_with("allowed") { "does not list" } else { "forbids" };
        text.push_str(&format!(
            "output '{}' of '{drv}' {verb} {forbidden}, which its {} {judgement}:\n",
            v.output, v.attribute
        ));
        for (depth, path) in v.chain.iter().enumerate() {
            match depth {
                0 => text.push_str(&format!("  {path}\n")),
                _ => text.push_str(&format!("  {}└───{path}\n", "    ".repeat(depth - 1))),
            }
            if depth == 1 {
                for found in &v.found_in {
                    text.push_str(&format!("  {}{found}\n", "    ".repeat(depth)));
                }
            }
        }
    }
    let attributes: BTreeSet<&str> = violations.iter().map(|v| v.attribute).collect();
    text.push_str(&format!(
        "nothing was registered; remove the reference from the output (the files above mention it; \
         `mini why-depends` explains a path already built), or change {} in the recipe",
        attributes.into_iter().collect::<Vec<_>>().join(" and ")
    ));
    text
}

#[cfg(test)]
mod tests {
    use mini_store::derivation::Output;

    use super::*;

    /// A store path named `name` whose hash part repeats `c`.
    fn path(c: char, name: &str) -> StorePath {
        StorePath::parse_base_name(&format!("{}-{name}", c.to_string().repeat(32))).unwrap()
    }

    fn drv(env: &[(&str, &str)]) -> Derivation {
        Derivation {
            name: "app".into(),
            outputs: BTreeMap::from([("out".to_string(), Output { path: None, fixed: None })]),
            input_drvs: BTreeMap::new(),
            input_srcs: BTreeSet::new(),
            system: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            args: vec![],
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// `app` refers to itself, `lib` and `libc`; `lib` refers to `go`; `go`
    /// refers to `libc`.
    struct Graph {
        app: StorePath,
        dev: StorePath,
        lib: StorePath,
        go: StorePath,
        libc: StorePath,
        edges: BTreeMap<StorePath, BTreeSet<StorePath>>,
    }

    fn graph() -> Graph {
        let (app, dev, lib, go, libc) =
            (path('a', "app"), path('d', "app-dev"), path('b', "lib"), path('c', "go"), path('f', "libc"));
        let edges = BTreeMap::from([
            (app.clone(), BTreeSet::from([app.clone(), lib.clone(), libc.clone()])),
            (dev.clone(), BTreeSet::from([app.clone()])),
            (lib.clone(), BTreeSet::from([go.clone()])),
            (go.clone(), BTreeSet::from([libc.clone()])),
            (libc.clone(), BTreeSet::new()),
        ]);
        Graph { app, dev, lib, go, libc, edges }
    }

    fn run(g: &Graph, constraints: &[Constraint], output: &StorePath) -> Vec<(&'static str, Vec<StorePath>)> {
        let mut refs = |p: &StorePath| Ok(g.edges.get(p).cloned().unwrap_or_default());
        check(constraints, "out", output, &mut refs).unwrap().into_iter().map(|v| (v.attribute, v.chain)).collect()
    }

    fn constraint(attribute: &'static str, paths: &[&StorePath]) -> Constraint {
        Constraint { attribute, paths: paths.iter().map(|p| (*p).clone()).collect() }
    }

    #[test]
    fn lists_resolve_store_paths_and_output_names() {
        let g = graph();
        let outputs = BTreeMap::from([("out".to_string(), g.app.clone()), ("dev".to_string(), g.dev.clone())]);
        let drv_path = path('g', "app.drv");
        let env = [
            ("allowedReferences", format!("out {}  dev\n{}", g.lib, g.libc)),
            ("disallowedRequisites", String::new()),
            ("unrelated", "x".to_string()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let parsed = parse(&drv_path, &drv(&env), &outputs).unwrap();
        assert_eq!(
            parsed,
            [
                constraint("allowedReferences", &[&g.app, &g.dev, &g.lib, &g.libc]),
                constraint("disallowedRequisites", &[]),
            ]
        );
        assert_eq!(parse(&drv_path, &drv(&[]), &outputs).unwrap(), []);
        let err = parse(&drv_path, &drv(&[("disallowedReferences", "bin")]), &outputs).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read derivation {drv_path}: 'bin' in disallowedReferences is neither a store path nor \
                 one of its outputs (dev, out); list packages (store paths) or output names"
            )
        );
    }

    #[test]
    fn references_are_the_direct_ones_and_the_output_itself_is_always_allowed() {
        let g = graph();
        assert_eq!(run(&g, &[constraint("allowedReferences", &[&g.lib, &g.libc])], &g.app), []);
        assert_eq!(
            run(&g, &[constraint("allowedReferences", &[])], &g.app),
            [
                ("allowedReferences", vec![g.app.clone(), g.lib.clone()]),
                ("allowedReferences", vec![g.app.clone(), g.libc.clone()]),
            ]
        );
        // go is only reached through lib: not a reference.
        assert_eq!(run(&g, &[constraint("disallowedReferences", &[&g.go])], &g.app), []);
        assert_eq!(
            run(&g, &[constraint("disallowedReferences", &[&g.libc, &g.go])], &g.app),
            [("disallowedReferences", vec![g.app.clone(), g.libc.clone()])]
        );
    }

    #[test]
    fn requisites_follow_the_closure_and_give_the_shortest_chain() {
        let g = graph();
        assert_eq!(
            run(&g, &[constraint("disallowedRequisites", &[&g.go])], &g.app),
            [("disallowedRequisites", vec![g.app.clone(), g.lib.clone(), g.go.clone()])]
        );
        // libc is both a direct reference and reached through go: the direct one is the chain.
        assert_eq!(
            run(&g, &[constraint("allowedRequisites", &[&g.lib, &g.go])], &g.app),
            [("allowedRequisites", vec![g.app.clone(), g.libc.clone()])]
        );
        // dev -> app -> lib -> go: the closure goes through another output.
        assert_eq!(
            run(&g, &[constraint("disallowedRequisites", &[&g.go])], &g.dev),
            [("disallowedRequisites", vec![g.dev.clone(), g.app.clone(), g.lib.clone(), g.go.clone()])]
        );
        assert_eq!(run(&g, &[constraint("allowedRequisites", &[&g.lib, &g.go, &g.libc])], &g.app), []);
    }

    #[test]
    fn several_constraints_are_each_checked_in_order() {
        let g = graph();
        let found = run(
            &g,
            &[constraint("allowedReferences", &[&g.lib]), constraint("disallowedRequisites", &[&g.go])],
            &g.app,
        );
        assert_eq!(
            found,
            [
                ("allowedReferences", vec![g.app.clone(), g.libc.clone()]),
                ("disallowedRequisites", vec![g.app.clone(), g.lib.clone(), g.go.clone()]),
            ]
        );
    }

    #[test]
    fn a_failure_to_read_references_is_reported() {
        let g = graph();
        let mut refs = |p: &StorePath| -> Result<BTreeSet<StorePath>> {
            Err(BuildError::BadDerivation { drv: p.to_string(), message: "unreadable".into() })
        };
        assert!(check(&[constraint("allowedRequisites", &[])], "out", &g.app, &mut refs).is_err());
        // No constraint: nothing is read at all.
        assert_eq!(check(&[], "out", &g.app, &mut refs).unwrap(), []);
    }

    #[test]
    fn the_message_draws_the_chain_and_says_what_to_do() {
        let g = graph();
        let violations = [
            Violation {
                output: "out".into(),
                attribute: "disallowedRequisites",
                chain: vec![g.app.clone(), g.lib.clone(), g.go.clone()],
                found_in: vec!["bin/app: …/mini/store/bbbb…".into()],
            },
            Violation {
                output: "out".into(),
                attribute: "allowedReferences",
                chain: vec![g.app.clone(), g.libc.clone()],
                found_in: vec![],
            },
        ];
        let expected = format!(
            "output 'out' of 'X.drv' depends on {go}, which its disallowedRequisites forbids:\n  {app}\n  \
             └───{lib}\n      bin/app: …/mini/store/bbbb…\n      └───{go}\n\
             output 'out' of 'X.drv' refers to {libc}, which its allowedReferences does not list:\n  {app}\n  \
             └───{libc}\n\
             nothing was registered; remove the reference from the output (the files above mention it; \
             `mini why-depends` explains a path already built), or change allowedReferences and \
             disallowedRequisites in the recipe",
            app = g.app,
            lib = g.lib,
            go = g.go,
            libc = g.libc
        );
        assert_eq!(render("X.drv", &violations), expected);
    }
}
