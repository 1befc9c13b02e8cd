//! The order packages are unpacked in: each package after the packages it
//! depends on, so that when two packages ship the same file, the one that
//! depends on the other wins, as it would have when dpkg installed them
//! one after another. Pure.
//!
//! Kahn's algorithm: of the packages whose dependencies are all placed,
//! the one with the smallest name goes next. Debian has dependency cycles
//! (`libc6` and `libgcc-s1` depend on each other); when every remaining
//! package waits on another, the remaining package with the smallest name
//! goes next as if its dependencies were placed, and the walk resumes.
//! The result depends only on the names and the dependencies, not on the
//! order they are given in.

use std::collections::BTreeSet;

/// The order to place `names[i]`, whose dependencies are the indices in
/// `depends[i]`: a permutation of `0..names.len()`.
pub fn install_order(names: &[&str], depends: &[Vec<usize>]) -> Vec<usize> {
    let count = names.len();
    let mut waiting_on = vec![0usize; count];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (package, deps) in depends.iter().enumerate() {
        let unique: BTreeSet<usize> = deps.iter().copied().filter(|&d| d != package && d < count).collect();
        waiting_on[package] = unique.len();
        for dependency in unique {
            dependents[dependency].push(package);
        }
    }
    let mut ready: BTreeSet<(&str, usize)> =
        (0..count).filter(|&i| waiting_on[i] == 0).map(|i| (names[i], i)).collect();
    let mut placed = vec![false; count];
    let mut order = Vec::with_capacity(count);
    while order.len() < count {
        let next = match ready.pop_first() {
            Some((_, next)) => next,
            // A cycle: the smallest name still waiting goes first.
            None => match (0..count).filter(|&i| !placed[i]).min_by_key(|&i| (names[i], i)) {
                Some(next) => next,
                None => break,
            },
        };
        placed[next] = true;
        order.push(next);
        for &dependent in &dependents[next] {
            if placed[dependent] {
                continue;
            }
            waiting_on[dependent] = waiting_on[dependent].saturating_sub(1);
            if waiting_on[dependent] == 0 {
                ready.insert((names[dependent], dependent));
            }
        }
    }
    order
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
    fn cycles_are_broken_at_the_smallest_name() {
        let order = order_of(&[
            ("zlib1g", &["libc6"]),
            ("libgcc-s1", &["libc6", "gcc-12-base"]),
            ("libc6", &["libgcc-s1"]),
            ("gcc-12-base", &[]),
            ("self", &["self"]),
        ]);
        // libc6 and libgcc-s1 wait on each other: libc6 goes first.
        assert_eq!(order, ["gcc-12-base", "self", "libc6", "libgcc-s1", "zlib1g"]);
        let whole_cycle = order_of(&[("c", &["a"]), ("b", &["c"]), ("a", &["b"])]);
        assert_eq!(whole_cycle, ["a", "c", "b"]);
    }

    #[test]
    fn the_order_does_not_depend_on_the_input_order() {
        let forward = order_of(&[("a", &["b"]), ("b", &[]), ("c", &["a", "b"]), ("d", &[])]);
        let backward = order_of(&[("d", &[]), ("c", &["b", "a"]), ("b", &[]), ("a", &["b", "b"])]);
        assert_eq!(forward, backward);
        assert_eq!(forward, ["b", "a", "c", "d"]);
    }
}
