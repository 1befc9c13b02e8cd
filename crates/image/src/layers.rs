//! Which store paths go in which layer: nixpkgs' popularity layering, with
//! an optional floor on layer size as Nixery has.
//!
//! Unroll the runtime reference graph from the image's roots into a tree;
//! a path's popularity is how often it appears there. Counting is done on
//! the graph (the number of root-to-path routes), not by unrolling, so it
//! stays linear however shared the graph is. Paths sort most popular first
//! (ties by name without the hash, then by hash), so libraries and busybox
//! sit at the bottom where every image built on them shares them.
//!
//! With `min_layer_size` (bytes, 0: off), a path is *shared* when its
//! popularity is at least 2 — more than one route from the roots reaches
//! it, as Nixery keeps its popular paths apart — and *small* when its size
//! (its NAR size) is below the floor. Small unshared paths get no layer of
//! their own: they share one layer, after every path that has one, since a
//! tiny layer nobody else uses costs a registry round trip and saves
//! nothing. A path whose size is unknown is never called small.
//!
//! Then the budget: `max_layers` keeps one layer for the customisation
//! layer; if more layers remain than that, the last store-path layer takes
//! everything that did not fit (the least popular paths, and the small
//! ones). Every such decision comes back as a note for the build log,
//! naming every path it moved: nothing is merged silently.
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use mini_store::store_path::StorePath;

use crate::inspect::human_size;

/// The store-path layers of an image, bottom first: each a set of paths.
pub type LayerPlan = Vec<Vec<StorePath>>;

/// How many times each path appears in the tree unrolled from `roots`.
pub fn popularity(
    roots: &[StorePath],
    references: &BTreeMap<StorePath, BTreeSet<StorePath>>,
) -> BTreeMap<StorePath, u128> {
    let order = topological(roots, references);
    let mut count: BTreeMap<StorePath, u128> = BTreeMap::new();
    for root in roots {
        *count.entry(root.clone()).or_default() += 1;
    }
    for path in &order {
        let routes = count.get(path).copied().unwrap_or(0);
        for child in references.get(path).into_iter().flatten().filter(|c| *c != path) {
            let entry = count.entry(child.clone()).or_default();
            *entry = entry.saturating_add(routes);
        }
    }
    count
}

/// Every path reachable from `roots`, each after all paths referring to
/// it (self-references ignored).
fn topological(roots: &[StorePath], references: &BTreeMap<StorePath, BTreeSet<StorePath>>) -> Vec<StorePath> {
    // Iterative depth-first post-order, then reversed.
    let mut done: BTreeSet<&StorePath> = BTreeSet::new();
    let mut post: Vec<StorePath> = Vec::new();
    let mut sorted_roots: Vec<&StorePath> = roots.iter().collect();
    sorted_roots.sort();
    for root in sorted_roots {
        if done.contains(root) {
            continue;
        }
        let mut stack: Vec<(&StorePath, bool)> = vec![(root, false)];
        while let Some((path, expanded)) = stack.pop() {
            if expanded {
                post.push(path.clone());
                continue;
            }
            if !done.insert(path) {
                continue;
            }
            stack.push((path, true));
            for child in references.get(path).into_iter().flatten() {
                if child != path && !done.contains(child) {
                    stack.push((child, false));
                }
            }
        }
    }
    post.reverse();
    post
}

/// The paths with their popularity, most popular first.
fn ranked(roots: &[StorePath], references: &BTreeMap<StorePath, BTreeSet<StorePath>>) -> Vec<(StorePath, u128)> {
    let mut paths: Vec<(StorePath, u128)> = popularity(roots, references).into_iter().collect();
    paths.sort_by(|(a, ca), (b, cb)| cb.cmp(ca).then_with(|| a.name().cmp(b.name())).then_with(|| a.cmp(b)));
    paths
}

/// A layer plan, and what the builder should say about it: each note is
/// one line for the build log (paths merged past `maxLayers`, paths folded
/// for being small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub layers: LayerPlan,
    pub notes: Vec<String>,
}

/// The layering settings of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Layers of the whole image, the customisation layer included.
    pub max_layers: usize,
    /// Bytes (0: off): a path smaller than this gets no layer of its own
    /// unless it is shared.
    pub min_layer_size: u64,
}

/// Plans the store-path layers of the closure of `roots` (at most
/// `max_layers - 1` of them, bottom first; layer `n` of the plan is layer
/// `n` of the image); `sizes` are the paths' NAR sizes in bytes.
pub fn plan_layers(
    roots: &[StorePath],
    references: &BTreeMap<StorePath, BTreeSet<StorePath>>,
    sizes: &BTreeMap<StorePath, u64>,
    settings: Settings,
) -> Plan {
    let floor = settings.min_layer_size;
    let is_small =
        |path: &StorePath, count: u128| floor > 0 && count < 2 && sizes.get(path).is_some_and(|&size| size < floor);
    let (small, own): (Vec<_>, Vec<_>) = ranked(roots, references).into_iter().partition(|(p, c)| is_small(p, *c));
    let mut small: Vec<StorePath> = small.into_iter().map(|(p, _)| p).collect();
    small.sort();
    let mut layers: LayerPlan = own.into_iter().map(|(p, _)| vec![p]).collect();
    if !small.is_empty() {
        layers.push(small.clone());
    }
    let budget = settings.max_layers.saturating_sub(1).max(1);
    let mut notes = Vec::new();
    let merged = layers.len() > budget;
    if small.len() > 1 {
        let layer = if merged { budget } else { layers.len() };
        notes.push(format!(
            "minLayerSize {floor}: {} unshared paths under {} ({}) share layer {layer}: {}",
            small.len(),
            human_size(floor),
            human_size(total_size(&small, sizes)),
            names(&small)
        ));
    }
    if merged {
        let mut rest: Vec<StorePath> = layers.drain(budget - 1..).flatten().collect();
        rest.sort();
        notes.push(format!(
            "maxLayers {}: {} paths ({}) share layer {budget}: {}",
            settings.max_layers,
            rest.len(),
            human_size(total_size(&rest, sizes)),
            names(&rest)
        ));
        layers.push(rest);
    }
    Plan { layers, notes }
}

/// The bytes of `paths` whose size is known.
fn total_size(paths: &[StorePath], sizes: &BTreeMap<StorePath, u64>) -> u64 {
    paths.iter().filter_map(|p| sizes.get(p)).sum()
}

/// The paths' names (without hashes), sorted by name, then hash.
fn names(paths: &[StorePath]) -> String {
    let mut sorted: Vec<&StorePath> = paths.iter().collect();
    sorted.sort_by(|a, b| a.name().cmp(b.name()).then_with(|| a.cmp(b)));
    sorted.iter().map(|p| p.name()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mini_store::store_path::PathKind;

    fn path(name: &str) -> StorePath {
        let digest = blake3_like(name);
        StorePath::compute(&PathKind::Source { references: &[] }, "sha256", &digest, name).unwrap()
    }

    /// A distinct digest per name (any bytes do for a test path).
    fn blake3_like(name: &str) -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::digest(name.as_bytes()).to_vec()
    }

    fn graph(edges: &[(&StorePath, &[&StorePath])]) -> BTreeMap<StorePath, BTreeSet<StorePath>> {
        edges.iter().map(|(from, to)| ((*from).clone(), to.iter().map(|p| (*p).clone()).collect())).collect()
    }

    #[test]
    fn popularity_counts_routes_from_the_roots() {
        // app -> lib -> libc, app -> libc, tool -> libc; libc refers to itself.
        let (app, tool, lib, libc) = (path("app"), path("tool"), path("lib"), path("libc"));
        let refs = graph(&[(&app, &[&lib, &libc]), (&tool, &[&libc]), (&lib, &[&libc]), (&libc, &[&libc])]);
        let count = popularity(&[app.clone(), tool.clone()], &refs);
        assert_eq!(count[&libc], 3);
        assert_eq!(count[&lib], 1);
        assert_eq!(count[&app], 1);
        let order: Vec<StorePath> = ranked(&[app.clone(), tool.clone()], &refs).into_iter().map(|(p, _)| p).collect();
        assert_eq!(order, vec![libc, app, lib, tool]);
    }

    #[test]
    fn shared_graphs_are_counted_without_unrolling() {
        // A ladder 60 rungs high has 2^60 routes to its foot.
        let rungs: Vec<StorePath> = (0..61).map(|i| path(&format!("rung{i:02}"))).collect();
        let sides: Vec<StorePath> = (0..61).map(|i| path(&format!("side{i:02}"))).collect();
        let mut refs = BTreeMap::new();
        for i in 0..60 {
            refs.insert(rungs[i].clone(), BTreeSet::from([rungs[i + 1].clone(), sides[i + 1].clone()]));
            refs.insert(sides[i].clone(), BTreeSet::from([rungs[i + 1].clone(), sides[i + 1].clone()]));
        }
        let count = popularity(&[rungs[0].clone()], &refs);
        assert_eq!(count[&rungs[60]], 1 << 59);
    }

    fn sized(entries: &[(&StorePath, u64)]) -> BTreeMap<StorePath, u64> {
        entries.iter().map(|(p, size)| ((*p).clone(), *size)).collect()
    }

    fn sorted(paths: &[&StorePath]) -> Vec<StorePath> {
        let mut v: Vec<StorePath> = paths.iter().map(|p| (*p).clone()).collect();
        v.sort();
        v
    }

    fn settings(max_layers: usize, min_layer_size: u64) -> Settings {
        Settings { max_layers, min_layer_size }
    }

    #[test]
    fn the_least_popular_share_the_last_layer() {
        let root = path("root");
        let leaves: Vec<StorePath> = (0..6).map(|i| path(&format!("leaf{i}"))).collect();
        let refs = graph(&[(&root, &leaves.iter().collect::<Vec<_>>())]);
        let sizes: BTreeMap<StorePath, u64> = leaves.iter().chain([&root]).map(|p| (p.clone(), 1024)).collect();
        // 7 paths, 4 layers: 3 store-path layers + customisation.
        let plan = plan_layers(std::slice::from_ref(&root), &refs, &sizes, settings(4, 0));
        assert_eq!(plan.layers.len(), 3);
        assert_eq!(plan.layers[0], vec![leaves[0].clone()]);
        assert_eq!(plan.layers[1], vec![leaves[1].clone()]);
        assert_eq!(plan.layers[2], sorted(&[&leaves[2], &leaves[3], &leaves[4], &leaves[5], &root]));
        assert_eq!(plan.notes, ["maxLayers 4: 5 paths (5.0 KiB) share layer 3: leaf2 leaf3 leaf4 leaf5 root"]);
        // Enough room: one layer each, nothing to say.
        let roomy = plan_layers(&[root], &refs, &sizes, settings(100, 0));
        assert_eq!(roomy.layers.len(), 7);
        assert!(roomy.notes.is_empty());
    }

    #[test]
    fn small_unshared_paths_share_one_layer_after_the_rest() {
        let (app, big, s1, s2, s3) = (path("app"), path("big"), path("s1"), path("s2"), path("s3"));
        let refs = graph(&[(&app, &[&big, &s1, &s2, &s3])]);
        let sizes = sized(&[(&app, 5000), (&big, 1 << 20), (&s1, 100), (&s2, 200), (&s3, 999)]);
        let plan = plan_layers(std::slice::from_ref(&app), &refs, &sizes, settings(100, 1000));
        assert_eq!(plan.layers, vec![vec![app.clone()], vec![big.clone()], sorted(&[&s1, &s2, &s3])]);
        assert_eq!(plan.notes, ["minLayerSize 1000: 3 unshared paths under 1000 B (1.3 KiB) share layer 3: s1 s2 s3"]);
        // A path of exactly the floor is not under it; off (0) folds nothing.
        let at_floor = plan_layers(std::slice::from_ref(&app), &refs, &sizes, settings(100, 999));
        assert_eq!(at_floor.layers.len(), 4);
        assert_eq!(at_floor.layers[3], sorted(&[&s1, &s2]));
        let off = plan_layers(std::slice::from_ref(&app), &refs, &sizes, settings(100, 0));
        assert_eq!(off.layers.len(), 5);
        assert!(off.notes.is_empty());
    }

    #[test]
    fn shared_small_paths_keep_their_layer() {
        // tiny is reached from two roots (popularity 2): shared. lone is
        // small but reached once; a path of unknown size is never small.
        let (one, two, tiny, lone, unknown) = (path("one"), path("two"), path("tiny"), path("lone"), path("unknown"));
        let refs = graph(&[(&one, &[&tiny, &lone]), (&two, &[&tiny, &unknown])]);
        let sizes = sized(&[(&one, 1 << 20), (&two, 1 << 20), (&tiny, 10), (&lone, 10)]);
        let plan = plan_layers(&[one.clone(), two.clone()], &refs, &sizes, settings(100, 4096));
        assert_eq!(
            plan.layers,
            vec![vec![tiny.clone()], vec![one.clone()], vec![two.clone()], vec![unknown.clone()], vec![lone.clone()]]
        );
        // A single small path loses nothing: it is alone in its layer anyway.
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    }

    #[test]
    fn folding_and_the_budget_both_say_what_they_merged() {
        let root = path("root");
        let big: Vec<StorePath> = (0..4).map(|i| path(&format!("big{i}"))).collect();
        let small: Vec<StorePath> = (0..3).map(|i| path(&format!("small{i}"))).collect();
        let children: Vec<&StorePath> = big.iter().chain(&small).collect();
        let refs = graph(&[(&root, &children)]);
        let mut sizes: BTreeMap<StorePath, u64> = big.iter().chain([&root]).map(|p| (p.clone(), 1 << 20)).collect();
        sizes.extend(small.iter().map(|p| (p.clone(), 512)));
        // 5 big paths and the small layer want 6 layers; 4 store layers fit.
        let plan = plan_layers(std::slice::from_ref(&root), &refs, &sizes, settings(5, 1024));
        assert_eq!(plan.layers.len(), 4);
        assert_eq!(plan.layers[..3], [vec![big[0].clone()], vec![big[1].clone()], vec![big[2].clone()]]);
        assert_eq!(plan.layers[3], sorted(&[&big[3], &root, &small[0], &small[1], &small[2]]));
        assert_eq!(
            plan.notes,
            [
                "minLayerSize 1024: 3 unshared paths under 1.0 KiB (1.5 KiB) share layer 4: small0 small1 small2",
                "maxLayers 5: 5 paths (2.0 MiB) share layer 4: big3 root small0 small1 small2",
            ]
        );
    }

    #[test]
    fn plans_do_not_depend_on_the_order_of_the_roots() {
        let roots: Vec<StorePath> = (0..5).map(|i| path(&format!("r{i}"))).collect();
        let (libc, small) = (path("libc"), path("small"));
        let mut edges: Vec<(&StorePath, Vec<&StorePath>)> = roots.iter().map(|r| (r, vec![&libc])).collect();
        edges[2].1.push(&small);
        let refs: BTreeMap<StorePath, BTreeSet<StorePath>> =
            edges.iter().map(|(from, to)| ((*from).clone(), to.iter().map(|p| (*p).clone()).collect())).collect();
        let sizes: BTreeMap<StorePath, u64> = roots.iter().chain([&libc, &small]).map(|p| (p.clone(), 10)).collect();
        let reversed: Vec<StorePath> = roots.iter().rev().cloned().collect();
        for s in [settings(3, 0), settings(4, 100), settings(100, 100)] {
            let plan = plan_layers(&roots, &refs, &sizes, s);
            assert_eq!(plan, plan_layers(&reversed, &refs, &sizes, s));
            assert_eq!(plan.layers[0], vec![libc.clone()], "the most popular path is at the bottom");
        }
    }

    #[test]
    fn empty_and_one_path_closures() {
        let empty = plan_layers(&[], &BTreeMap::new(), &BTreeMap::new(), settings(2, 1 << 20));
        assert_eq!(empty, Plan { layers: vec![], notes: vec![] });
        let only = path("only");
        let sizes = sized(&[(&only, 1)]);
        for s in [settings(2, 0), settings(2, 1 << 20), settings(100, 1 << 20)] {
            let plan = plan_layers(std::slice::from_ref(&only), &BTreeMap::new(), &sizes, s);
            assert_eq!(plan, Plan { layers: vec![vec![only.clone()]], notes: vec![] });
        }
    }

    #[test]
    fn two_layers_put_the_whole_closure_in_one() {
        let (app, lib, libc) = (path("app"), path("lib"), path("libc"));
        let refs = graph(&[(&app, &[&lib, &libc]), (&lib, &[&libc])]);
        let sizes = sized(&[(&app, 3 << 20), (&lib, 2048), (&libc, 1 << 20)]);
        let plan = plan_layers(std::slice::from_ref(&app), &refs, &sizes, settings(2, 0));
        assert_eq!(plan.layers, vec![sorted(&[&app, &lib, &libc])]);
        assert_eq!(plan.notes, ["maxLayers 2: 3 paths (4.0 MiB) share layer 1: app lib libc"]);
    }
}
