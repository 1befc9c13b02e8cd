//! Which store paths go in which layer: nixpkgs' popularity layering.
//!
//! Unroll the runtime reference graph from the image's roots into a tree;
//! a path's popularity is how often it appears there. Counting is done on
//! the graph (the number of root-to-path routes), not by unrolling, so it
//! stays linear however shared the graph is. Paths sort most popular first
//! (ties by name without the hash, then by hash), so libraries and busybox
//! sit at the bottom where every image built on them shares them. With a
//! budget of `max_layers`, one layer is kept for the customisation layer;
//! if more paths remain than layers, the least popular share the last one.
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use mini_store::store_path::StorePath;

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

/// The paths by popularity, most popular first.
pub fn by_popularity(roots: &[StorePath], references: &BTreeMap<StorePath, BTreeSet<StorePath>>) -> Vec<StorePath> {
    let count = popularity(roots, references);
    let mut paths: Vec<(u128, StorePath)> = count.into_iter().map(|(p, c)| (c, p)).collect();
    paths.sort_by(|(ca, a), (cb, b)| cb.cmp(ca).then_with(|| a.name().cmp(b.name())).then_with(|| a.cmp(b)));
    paths.into_iter().map(|(_, p)| p).collect()
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
    pub max_layers: usize,
    /// Bytes (0: off): a path smaller than this gets no layer of its own
    /// unless it is shared.
    pub min_layer_size: u64,
}

/// Plans the layers of the closure of `roots`; `sizes` are the paths'
/// sizes in bytes (their archive sizes).
pub fn plan_layers(
    roots: &[StorePath],
    references: &BTreeMap<StorePath, BTreeSet<StorePath>>,
    _sizes: &BTreeMap<StorePath, u64>,
    settings: Settings,
) -> Plan {
    Plan { layers: plan(roots, references, settings.max_layers), notes: Vec::new() }
}

/// Splits the closure of `roots` into at most `max_layers - 1` layers (the
/// last layer of the image is the customisation layer).
pub fn plan(
    roots: &[StorePath],
    references: &BTreeMap<StorePath, BTreeSet<StorePath>>,
    max_layers: usize,
) -> LayerPlan {
    let paths = by_popularity(roots, references);
    let budget = max_layers.saturating_sub(1).max(1);
    if paths.len() <= budget {
        return paths.into_iter().map(|p| vec![p]).collect();
    }
    let mut layers: LayerPlan = paths[..budget - 1].iter().map(|p| vec![p.clone()]).collect();
    let mut rest = paths[budget - 1..].to_vec();
    rest.sort();
    layers.push(rest);
    layers
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
        assert_eq!(by_popularity(&[app.clone(), tool.clone()], &refs), vec![libc, app, lib, tool]);
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

    #[test]
    fn the_least_popular_share_the_last_layer() {
        let root = path("root");
        let leaves: Vec<StorePath> = (0..6).map(|i| path(&format!("leaf{i}"))).collect();
        let refs = graph(&[(&root, &leaves.iter().collect::<Vec<_>>())]);
        // 7 paths, 4 layers: 3 store-path layers + customisation.
        let plan = plan(std::slice::from_ref(&root), &refs, 4);
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[0], vec![leaves[0].clone()]);
        assert_eq!(plan[1], vec![leaves[1].clone()]);
        assert_eq!(plan[2].len(), 5);
        // Enough room: one layer each.
        assert_eq!(super::plan(&[root], &refs, 100).len(), 7);
    }
}
