//! Debian's relation fields (`Depends`, `Pre-Depends`, `Provides`) and
//! which packages of a resolved closure satisfy them: the `depends` lists
//! of `debian.lock`. apt already chose the closure and checked every
//! version constraint, so only names matter here: for each comma clause,
//! the first `|` alternative that is a package of the closure, else the
//! first that one of its packages provides. Qualifiers (`:any`,
//! `:native`), version constraints, `[arch]` restrictions and `<profile>`
//! lists are dropped. Pure: no I/O here.

use std::collections::{BTreeMap, BTreeSet};

use crate::names;

/// A relation field's clauses, each its `|` alternatives, names only:
/// `libc6 (>= 2.34), debconf | debconf-2.0` → `[[libc6], [debconf, debconf-2.0]]`.
pub fn parse(field: &str) -> Result<Vec<Vec<String>>, String> {
    let mut clauses = Vec::new();
    for clause in field.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let mut alternatives = Vec::new();
        for alternative in clause.split('|').map(str::trim) {
            let end = alternative.find(|c: char| c.is_whitespace() || "([<".contains(c)).unwrap_or(alternative.len());
            let name = &alternative[..end];
            let name = name.split_once(':').map_or(name, |(name, _qualifier)| name);
            if !names::is_package(name) {
                return Err(format!("'{alternative}' in '{clause}' does not start with a package name"));
            }
            alternatives.push(name.to_string());
        }
        clauses.push(alternatives);
    }
    Ok(clauses)
}

/// What the relations of one package of a closure say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRelations {
    pub name: String,
    /// The clauses of its `Pre-Depends` and `Depends`.
    pub depends: Vec<Vec<String>>,
    /// The names its `Provides` gives.
    pub provides: Vec<String>,
}

/// For each of `closure`, the sorted names of the closure's packages that
/// satisfy its dependencies (itself left out).
pub fn satisfiers(closure: &[PackageRelations]) -> Vec<Vec<String>> {
    let present: BTreeSet<&str> = closure.iter().map(|p| p.name.as_str()).collect();
    // Each virtual name's providers, the first by name first.
    let mut providers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for package in closure {
        for virtual_name in &package.provides {
            providers.entry(virtual_name.as_str()).or_default().insert(package.name.as_str());
        }
    }
    closure
        .iter()
        .map(|package| {
            let mut found = BTreeSet::new();
            for clause in &package.depends {
                let by_name = clause.iter().find(|alt| present.contains(alt.as_str())).map(String::as_str);
                let by_provides =
                    || clause.iter().find_map(|alt| providers.get(alt.as_str()).and_then(|p| p.first().copied()));
                if let Some(satisfier) = by_name.or_else(by_provides) {
                    if satisfier != package.name {
                        found.insert(satisfier.to_string());
                    }
                }
            }
            found.into_iter().collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(clauses: &[&[&str]]) -> Vec<Vec<String>> {
        clauses.iter().map(|c| c.iter().map(|n| n.to_string()).collect()).collect()
    }

    #[test]
    fn fields_give_names_without_qualifiers_versions_or_restrictions() {
        let field = "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (>= 3.11~), \
                     perl:native, foo [amd64] <!nocheck>, libx11-6(>=2:1.6)";
        assert_eq!(
            parse(field).unwrap(),
            names(&[&["libc6"], &["debconf", "debconf-2.0"], &["python3"], &["perl"], &["foo"], &["libx11-6"]])
        );
        assert!(parse("").unwrap().is_empty());
        assert!(parse("libc6,").unwrap().len() == 1);
        assert!(parse("libc6, | x").unwrap_err().contains("does not start with a package name"));
        assert!(parse("(>= 1)").is_err());
    }

    fn package(name: &str, depends: &[&[&str]], provides: &[&str]) -> PackageRelations {
        PackageRelations {
            name: name.into(),
            depends: names(depends),
            provides: provides.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_clause_is_satisfied_by_name_first_then_by_provides() {
        let closure = [
            package("tzdata", &[&["debconf", "debconf-2.0"]], &[]),
            package("debconf", &[&["perl-base"]], &["debconf-2.0"]),
            package("perl-base", &[&["libc6"], &["dpkg"]], &[]),
            package("libc6", &[&["libgcc-s1"], &["libc6"]], &[]),
            package("libgcc-s1", &[&["gcc-12-base"], &["libc6"]], &["libgcc1"]),
            package("gcc-12-base", &[], &[]),
            package("mawk", &[&["libc6"]], &["awk"]),
            package("gawk", &[&["libc6"]], &["awk"]),
            package("uses-awk", &[&["original-awk", "awk"], &["libgcc1"], &["not-here"]], &[]),
        ];
        let found = satisfiers(&closure);
        let expected: [&[&str]; 9] = [
            &["debconf"],
            &["perl-base"],
            // dpkg is not in the closure: nothing satisfies that clause here.
            &["libc6"],
            // A package never depends on itself.
            &["libgcc-s1"],
            &["gcc-12-base", "libc6"],
            &[],
            &["libc6"],
            &["libc6"],
            // Of two providers, the first by name.
            &["gawk", "libgcc-s1"],
        ];
        for ((package, found), expected) in closure.iter().zip(&found).zip(expected) {
            assert_eq!(found, expected, "{}", package.name);
        }
    }
}
