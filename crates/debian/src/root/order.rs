//! The order packages are unpacked in: each package after the packages it
//! depends on, so that when two packages ship the same file, the one that
//! depends on the other wins, as it would have when dpkg installed them
//! one after another. Pure.
//!
//! Debian has dependency cycles (`libc6` and `libgcc-s1` depend on each
//! other), so the packages are first grouped into strongly connected
//! components (the packages of one cycle, or one package alone); the
//! components are placed by Kahn's algorithm, the ready one with the
//! smallest name first, and the packages of one cycle in name order, since
//! no order among them is the dependency order. A package outside a cycle
//! therefore always comes after everything it depends on. The result
//! depends only on the names and the dependencies, not on the order they
//! are given in.

use std::collections::BTreeSet;

/// The order to place `names[i]`, whose dependencies are the indices in
/// `depends[i]`: a permutation of `0..names.len()`.
pub fn install_order(names: &[&str], depends: &[Vec<usize>]) -> Vec<usize> {
    let count = names.len();
    let edges: Vec<BTreeSet<usize>> = (0..count)
        .map(|i| depends.get(i).into_iter().flatten().copied().filter(|&d| d != i && d < count).collect())
        .collect();
    let component = components(&edges);
    let groups = component.iter().max().map_or(0, |&c| c + 1);
    // Each component's members, by name, and the components it waits on.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for i in 0..count {
        members[component[i]].push(i);
    }
    for group in &mut members {
        group.sort_by_key(|&i| (names[i], i));
    }
    let mut waiting_on = vec![BTreeSet::new(); groups];
    let mut dependents = vec![BTreeSet::new(); groups];
    for (i, deps) in edges.iter().enumerate() {
        for &d in deps {
            if component[i] != component[d] {
                waiting_on[component[i]].insert(component[d]);
                dependents[component[d]].insert(component[i]);
            }
        }
    }
    let first_name = |g: usize| names[members[g][0]];
    let mut ready: BTreeSet<(&str, usize)> =
        (0..groups).filter(|&g| waiting_on[g].is_empty()).map(|g| (first_name(g), g)).collect();
    let mut order = Vec::with_capacity(count);
    while let Some((_, group)) = ready.pop_first() {
        order.extend(&members[group]);
        for &dependent in &dependents[group] {
            waiting_on[dependent].remove(&group);
            if waiting_on[dependent].is_empty() {
                ready.insert((first_name(dependent), dependent));
            }
        }
    }
    order
}

/// The strongly connected component of each node of the graph `edges`
/// (Kosaraju's algorithm, iterative): numbers from 0, equal for nodes on
/// a common cycle.
fn components(edges: &[BTreeSet<usize>]) -> Vec<usize> {
    let count = edges.len();
    // First pass: nodes in order of finishing a depth-first walk.
    let mut finished = Vec::with_capacity(count);
    let mut seen = vec![false; count];
    for start in 0..count {
        if seen[start] {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![(start, edges[start].iter())];
        while let Some((node, next)) = stack.last_mut() {
            match next.next() {
                Some(&to) if !seen[to] => {
                    seen[to] = true;
                    stack.push((to, edges[to].iter()));
                }
                Some(_) => {}
                None => {
                    finished.push(*node);
                    stack.pop();
                }
            }
        }
    }
    // Second pass, on the reversed graph, latest finished first.
    let mut reversed = vec![Vec::new(); count];
    for (from, tos) in edges.iter().enumerate() {
        for &to in tos {
            reversed[to].push(from);
        }
    }
    let mut component = vec![usize::MAX; count];
    let mut next_component = 0;
    for &start in finished.iter().rev() {
        if component[start] != usize::MAX {
            continue;
        }
        component[start] = next_component;
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            for &from in &reversed[node] {
                if component[from] == usize::MAX {
                    component[from] = next_component;
                    stack.push(from);
                }
            }
        }
        next_component += 1;
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order, as names, of packages given as (name, dependency names).
    fn order_of(packages: &[(&'static str, &[&str])]) -> Vec<&'static str> {
        let names: Vec<&str> = packages.iter().map(|(n, _)| *n).collect();
        let depends: Vec<Vec<usize>> = packages
            .iter()
            .map(|(_, deps)| deps.iter().map(|d| names.iter().position(|n| n == d).unwrap()).collect())
            .collect();
        install_order(&names, &depends).into_iter().map(|i| names[i]).collect()
    }

    #[test]
    fn dependencies_come_first_and_ties_go_by_name() {
        let order = order_of(&[
            ("make", &["libc6"]),
            ("gcc", &["cpp", "libc6", "binutils"]),
            ("cpp", &["libc6"]),
            ("binutils", &["libc6"]),
            ("libc6", &[]),
            ("base-files", &[]),
        ]);
        assert_eq!(order, ["base-files", "libc6", "binutils", "cpp", "gcc", "make"]);
    }

    #[test]
    fn a_package_waiting_on_a_cycle_comes_after_it_whatever_its_name() {
        // "aaa" sorts before the cycle, but depends on it: it must wait.
        let order = order_of(&[
            ("aaa", &["libc6"]),
            ("libc6", &["libgcc-s1"]),
            ("libgcc-s1", &["libc6"]),
            ("binutils", &["aaa", "libc6"]),
        ]);
        assert_eq!(order, ["libc6", "libgcc-s1", "aaa", "binutils"]);
    }

    #[test]
    fn cycles_are_placed_together_in_name_order() {
        let order = order_of(&[
            ("zlib1g", &["libc6"]),
            ("libgcc-s1", &["libc6", "gcc-12-base"]),
            ("libc6", &["libgcc-s1"]),
            ("gcc-12-base", &[]),
            ("self", &["self"]),
        ]);
        // libc6 and libgcc-s1 wait on each other: libc6 goes first.
        assert_eq!(order, ["gcc-12-base", "libc6", "libgcc-s1", "self", "zlib1g"]);
        let whole_cycle = order_of(&[("c", &["a"]), ("b", &["c"]), ("a", &["b"])]);
        assert_eq!(whole_cycle, ["a", "b", "c"]);
    }

    #[test]
    fn on_a_real_lock_every_dependency_comes_first_but_within_a_cycle() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/c-make/debian.lock");
        let lock = crate::lock::Lock::parse(&std::fs::read_to_string(path).unwrap(), path).unwrap();
        let names: Vec<&str> = lock.packages.iter().map(|p| p.name.as_str()).collect();
        let index = |n: &String| names.iter().position(|m| m == n).unwrap();
        let depends: Vec<Vec<usize>> = lock.packages.iter().map(|p| p.depends.iter().map(index).collect()).collect();
        let edges: Vec<BTreeSet<usize>> = depends.iter().map(|d| d.iter().copied().collect()).collect();
        let component = components(&edges);
        let order = install_order(&names, &depends);
        let position = |i: usize| order.iter().position(|&o| o == i).unwrap();
        for (package, deps) in depends.iter().enumerate() {
            for &dep in deps {
                let in_a_cycle = component[dep] == component[package];
                assert!(in_a_cycle || position(dep) < position(package), "{} before {}", names[package], names[dep]);
            }
        }
    }

    #[test]
    fn the_order_does_not_depend_on_the_input_order() {
        let forward = order_of(&[("a", &["b"]), ("b", &[]), ("c", &["a", "b"]), ("d", &[])]);
        let backward = order_of(&[("d", &[]), ("c", &["b", "a"]), ("b", &[]), ("a", &["b", "b"])]);
        assert_eq!(forward, backward);
        assert_eq!(forward, ["b", "a", "c", "d"]);
    }
}
