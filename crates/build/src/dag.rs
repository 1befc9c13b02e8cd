//! The build plan: which derivations must run, in what order they may run,
//! and which to prefer. Derivations whose outputs are all valid are left
//! out, and so are their inputs: a valid output needs nothing rebuilt.
//! Likewise, a derivation whose missing outputs a substituter offers is
//! planned without its inputs: it will be downloaded, not built.
//!
//! Edges go from an input to the derivation that needs it. Each node's
//! priority is the number of derivations on the longest path from it to
//! the end of the graph, so the scheduler starts long chains first.

use std::collections::{BTreeSet, HashMap};

use mini_store::derivation::Derivation;
use mini_store::store::Store;
use mini_store::store_path::StorePath;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::error::{BuildError, Result};
use crate::schedule::Substituter;

/// One derivation to build.
#[derive(Debug, Clone)]
pub struct Job {
    pub drv_path: StorePath,
    pub drv: Derivation,
    /// Derivations on the longest path from here to the end, this one included.
    pub priority: usize,
    /// Rebuild although the outputs are valid, and compare (`--check`).
    pub check: bool,
    /// Its inputs were left out of the plan because a substituter offers
    /// its outputs; should substitution fail, they are built first.
    pub inputs_skipped: bool,
}

/// The derivations to build and their dependencies.
pub struct BuildPlan {
    pub graph: DiGraph<Job, ()>,
    /// The paths the plan found valid and relies on staying so: the
    /// derivations it read, the outputs it found built, the input sources.
    pub found_valid: BTreeSet<StorePath>,
}

/// Whether every output of `drv` is valid.
pub fn outputs_valid(store: &Store, drv: &Derivation) -> bool {
    drv.outputs.values().all(|o| o.path.as_ref().is_some_and(|p| store.is_valid(p)))
}

/// Plans the builds that make `targets` valid. With `check`, the targets
/// themselves are rebuilt even when valid (their inputs are not).
pub fn plan(store: &Store, targets: &[StorePath], check: bool) -> Result<BuildPlan> {
    plan_with(store, targets, check, None)
}

/// [`plan_with`], with every path the plan uses made a temporary root of
/// this process before the plan is trusted: the targets, what it found
/// valid (so the closures of built inputs too, which a GC keeps with them)
/// and the outputs it will make. A path found valid before it was rooted
/// may have been collected in between, so the plan is made again until
/// everything it found valid is still valid once rooted.
pub fn plan_held(
    store: &Store,
    targets: &[StorePath],
    check: bool,
    substituter: Option<&dyn Substituter>,
) -> Result<BuildPlan> {
    store.add_temp_roots(targets)?;
    let mut held: BTreeSet<StorePath> = targets.iter().cloned().collect();
    loop {
        let plan = plan_with(store, targets, check, substituter)?;
        let outputs =
            plan.graph.node_weights().flat_map(|job| job.drv.outputs.values().filter_map(|o| o.path.as_ref()));
        let fresh: Vec<StorePath> =
            plan.found_valid.iter().chain(outputs).filter(|p| !held.contains(*p)).cloned().collect();
        store.add_temp_roots(&fresh)?;
        held.extend(fresh);
        // Each round roots what the last one found, so this ends.
        if plan.found_valid.iter().all(|p| store.is_valid(p)) {
            return Ok(plan);
        }
    }
}

/// [`plan`], leaving out the inputs of derivations `substituter` can supply.
pub fn plan_with(
    store: &Store,
    targets: &[StorePath],
    check: bool,
    substituter: Option<&dyn Substituter>,
) -> Result<BuildPlan> {
    let mut graph: DiGraph<Job, ()> = DiGraph::new();
    let mut index: HashMap<StorePath, Option<NodeIndex>> = HashMap::new();
    let wanted: BTreeSet<&StorePath> = targets.iter().collect();
    // Depth-first, iteratively: graphs can be deep.
    let mut stack: Vec<(StorePath, bool)> = targets.iter().map(|t| (t.clone(), false)).collect();
    let mut pending_edges: Vec<(StorePath, StorePath)> = Vec::new();
    let mut found_valid = BTreeSet::new();
    while let Some((drv_path, _)) = stack.pop() {
        if index.contains_key(&drv_path) {
            continue;
        }
        let drv = store.read_derivation(&drv_path)?;
        found_valid.insert(drv_path.clone());
        let is_check = check && wanted.contains(&drv_path);
        if outputs_valid(store, &drv) && !is_check {
            found_valid.extend(drv.outputs.values().filter_map(|o| o.path.clone()));
            index.insert(drv_path, None);
            continue;
        }
        for src in &drv.input_srcs {
            if !store.is_valid(src) {
                return Err(BuildError::BadDerivation {
                    drv: drv_path.to_string(),
                    message: format!("its input source {src} is not in the store"),
                });
            }
        }
        found_valid.extend(drv.input_srcs.iter().cloned());
        let substitutable = !is_check
            && substituter.is_some_and(|s| {
                drv.outputs.values().all(|o| o.path.as_ref().is_some_and(|p| store.is_valid(p) || s.has(p)))
            });
        if !substitutable {
            for input in drv.input_drvs.keys() {
                pending_edges.push((input.clone(), drv_path.clone()));
                if !index.contains_key(input) {
                    stack.push((input.clone(), false));
                }
            }
        }
        let node = graph.add_node(Job {
            drv_path: drv_path.clone(),
            drv,
            priority: 0,
            check: is_check,
            inputs_skipped: substitutable,
        });
        index.insert(drv_path, Some(node));
    }
    for (input, dependent) in pending_edges {
        if let (Some(Some(from)), Some(Some(to))) = (index.get(&input), index.get(&dependent)) {
            graph.add_edge(*from, *to, ());
        }
    }
    let order = petgraph::algo::toposort(&graph, None).map_err(|cycle| BuildError::BadDerivation {
        drv: graph[cycle.node_id()].drv_path.to_string(),
        message: "its inputs form a cycle".into(),
    })?;
    for &node in order.iter().rev() {
        let longest_after =
            graph.neighbors_directed(node, Direction::Outgoing).map(|n| graph[n].priority).max().unwrap_or(0);
        graph[node].priority = longest_after + 1;
    }
    Ok(BuildPlan { graph, found_valid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mini-dag-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn add_drv(store: &Store, name: &str, inputs: &[&StorePath]) -> StorePath {
        crate::testing::add_drv(store, name, "/bin/sh", inputs)
    }

    #[test]
    fn plans_inputs_first_and_prefers_long_chains() {
        let dir = scratch("plan");
        let store = Store::open(&dir).unwrap();
        let a = add_drv(&store, "a", &[]);
        let b = add_drv(&store, "b", &[]);
        let c = add_drv(&store, "c", &[&a, &b]);
        let plan = plan(&store, &[c.clone(), b.clone()], false).unwrap();
        assert_eq!(plan.graph.node_count(), 3);
        assert_eq!(plan.graph.edge_count(), 2);
        let priority = |p: &StorePath| plan.graph.node_weights().find(|j| &j.drv_path == p).unwrap().priority;
        assert_eq!((priority(&a), priority(&b), priority(&c)), (2, 2, 1));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Offers every output path except those named in its list.
    struct Offers(Vec<&'static str>);

    impl Substituter for Offers {
        fn has(&self, path: &StorePath) -> bool {
            !self.0.contains(&path.name())
        }

        fn substitute(&self, _: &Store, _: &StorePath) -> std::result::Result<bool, String> {
            Ok(false)
        }
    }

    #[test]
    fn inputs_of_substitutable_derivations_are_left_out() {
        let dir = scratch("substitutable");
        let store = Store::open(&dir).unwrap();
        let a = add_drv(&store, "a", &[]);
        let b = add_drv(&store, "b", &[&a]);
        let c = add_drv(&store, "c", &[&b]);
        let plan = plan_with(&store, std::slice::from_ref(&c), false, Some(&Offers(vec![]))).unwrap();
        let names: Vec<&str> = plan.graph.node_weights().map(|j| j.drv.name.as_str()).collect();
        assert_eq!(names, ["c"]);
        assert!(plan.graph.node_weights().all(|j| j.inputs_skipped));
        // c is not offered: its input b is planned, but not b's input.
        let plan = plan_with(&store, &[c], false, Some(&Offers(vec!["c"]))).unwrap();
        let mut names: Vec<&str> = plan.graph.node_weights().map(|j| j.drv.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(plan.graph.edge_count(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The paths this process holds in `store` as temporary roots.
    fn held(store: &Store) -> BTreeSet<StorePath> {
        let file = store.root().join("temproots").join(std::process::id().to_string());
        std::fs::read_to_string(file).unwrap().lines().map(|l| StorePath::parse(l).unwrap()).collect()
    }

    #[test]
    fn a_held_plan_holds_what_it_found_built_and_what_it_will_make() {
        let dir = scratch("held");
        let store = Store::open(&dir).unwrap();
        let a = add_drv(&store, "a", &[]);
        let b = add_drv(&store, "b", &[&a]);
        // a is built: its output stands in the store, found by the plan.
        let a_out = store.read_derivation(&a).unwrap().outputs["out"].path.clone().unwrap();
        let b_out = store.read_derivation(&b).unwrap().outputs["out"].path.clone().unwrap();
        let staged = store.staging_dir().unwrap();
        std::fs::write(staged.join("f"), "a").unwrap();
        let _lock = store.lock(&a_out).unwrap();
        store.install(&a_out, &staged.join("f"), BTreeSet::new(), Some(a.clone())).unwrap();
        std::fs::remove_file(store.root().join("temproots").join(std::process::id().to_string())).unwrap();

        let plan = plan_held(&store, std::slice::from_ref(&b), false, None).unwrap();
        assert_eq!(plan.graph.node_count(), 1);
        assert_eq!(plan.found_valid, BTreeSet::from([a.clone(), b.clone(), a_out.clone()]));
        assert_eq!(held(&store), BTreeSet::from([a, b, a_out, b_out]));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_derivation_modified_on_disk_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("modified");
        let store = Store::open(&dir).unwrap();
        let a = add_drv(&store, "a", &[]);
        let file = store.physical_path(&a);
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&file, text.replace("/bin/sh", "/bin/ev")).unwrap();
        let e = plan(&store, std::slice::from_ref(&a), false).err().unwrap().to_string();
        assert!(e.contains(&a.to_string()) && e.contains("modified") && e.contains("verify --repair"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_missing_derivation_is_a_clear_error() {
        let dir = scratch("missing");
        let store = Store::open(&dir).unwrap();
        let ghost = StorePath::parse("/mini/store/00000000000000000000000000000000-ghost.drv").unwrap();
        let e = plan(&store, &[ghost], false).err().unwrap().to_string();
        assert!(e.contains("ghost.drv") && e.contains("not a valid store path"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
