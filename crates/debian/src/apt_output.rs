//! What the host's apt prints, read: the package lists it has
//! (`apt-get indextargets`), the closure it would install (`apt-get
//! install -s`), why it refused, and the records of the packages it chose
//! (`apt-cache show`), turned into a [`Lock`]. All of it is untrusted
//! text, checked field by field. Pure: no I/O here; [`crate::apt`] runs apt.

use std::collections::{BTreeMap, BTreeSet};

use crate::deb822;
use crate::lock::{is_pool_filename, is_sha256, Lock, LockedPackage};
use crate::names;
use crate::relations::{self, PackageRelations};

/// The suites, codenames and architectures of the host's package lists.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sources {
    pub(crate) suites: BTreeSet<String>,
    pub(crate) architectures: BTreeSet<String>,
}

/// Parses `apt-get indextargets --format '$(IDENTIFIER) $(CODENAME) $(SUITE) $(ARCHITECTURE)'`.
pub(crate) fn parse_sources(text: &str) -> Sources {
    let mut sources = Sources::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let ["Packages", codename, suite, architecture] = fields[..] {
            sources.suites.extend([codename, suite].into_iter().filter(|s| names::is_suite(s)).map(String::from));
            if names::is_architecture(architecture) && architecture != "all" {
                sources.architectures.insert(architecture.to_string());
            }
        }
    }
    sources
}

/// `items` as an error lists them.
pub(crate) fn listed(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The host's codename: `VERSION_CODENAME` of os-release's text.
pub(crate) fn codename(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("VERSION_CODENAME=")?.trim().trim_matches(['"', '\'']);
        names::is_suite(value).then(|| value.to_string())
    })
}

/// The packages of an `apt-get install -s` run: (name, version, architecture) per `Inst` line.
pub(crate) fn parse_simulation(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut installs = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("Inst ") else { continue };
        let bad = || format!("'{line}' is not 'Inst NAME (VERSION RELEASE [ARCH])'");
        let (name, rest) = rest.split_once(" (").ok_or_else(bad)?;
        let (version, rest) = rest.split_once(' ').ok_or_else(bad)?;
        let inner = &rest[..rest.find("])").ok_or_else(bad)?];
        let architecture = &inner[inner.rfind('[').ok_or_else(bad)? + 1..];
        // A package of another architecture than the native one is NAME:ARCH.
        let name = match name.split_once(':') {
            Some((name, qualifier)) if qualifier == architecture => name,
            Some(_) => return Err(bad()),
            None => name,
        };
        let checks = [
            (names::is_package(name), names::PACKAGE_RULE),
            (names::is_version(version), names::VERSION_RULE),
            (names::is_architecture(architecture), names::ARCHITECTURE_RULE),
        ];
        if let Some((_, rule)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("'{line}': {rule}"));
        }
        installs.push((name.to_string(), version.to_string(), architecture.to_string()));
    }
    Ok(installs)
}

/// Why apt refused a package it was asked to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No package has that name.
    Unknown,
    /// The name is known but nothing installs as it: a virtual package, or one with no version here.
    NoCandidate,
}

/// The package apt's `stderr` says it refused, and why, if that is why it failed.
pub(crate) fn refused_package(stderr: &str) -> Option<(String, Refusal)> {
    stderr.lines().find_map(|line| {
        let line = line.strip_prefix("E: ")?;
        let (name, refusal) = match line.strip_prefix("Unable to locate package ") {
            Some(name) => (name.trim(), Refusal::Unknown),
            None => {
                let name = line.strip_prefix("Package '")?.strip_suffix("' has no installation candidate")?;
                (name, Refusal::NoCandidate)
            }
        };
        names::is_package(name).then(|| (name.to_string(), refusal))
    })
}

/// Whether `line` is apt's progress, not worth quoting.
pub(crate) fn is_progress(line: &str) -> bool {
    ["Reading package lists...", "Building dependency tree...", "Reading state information..."]
        .contains(&line.trim_end())
}

/// The lock for `installs`, from their records in `paragraphs`.
pub(crate) fn lock_of(
    suite: String,
    architecture: String,
    requested: &[String],
    installs: &[(String, String, String)],
    paragraphs: &[deb822::Paragraph],
) -> Result<Lock, String> {
    let mut by_key: BTreeMap<(&str, &str, &str), &deb822::Paragraph> = BTreeMap::new();
    for paragraph in paragraphs {
        let field = |name: &str| paragraph.get(name).unwrap_or_default();
        let key = (field("Package"), field("Architecture"), field("Version"));
        // The same version from two sources: the first, as apt would take; never two different files.
        if let Some(first) = by_key.get(&key) {
            if first.get("SHA256") != paragraph.get("SHA256") {
                return Err(format!("{} {} ({}) has two different files in the host's sources", key.0, key.2, key.1));
            }
            continue;
        }
        by_key.insert(key, paragraph);
    }
    let mut packages = Vec::new();
    let mut relations = Vec::new();
    for (name, version, arch) in installs {
        if arch != &architecture && arch != "all" {
            return Err(format!(
                "apt chose {name} {version} for {arch}, not {architecture}: a lock holds packages of one architecture \
                 (and all)"
            ));
        }
        let record = by_key
            .get(&(name.as_str(), arch.as_str(), version.as_str()))
            .ok_or_else(|| format!("no record of {name} {version} ({arch})"))?;
        let field = |key: &str| record.get(key).ok_or_else(|| format!("{name} has no {key}"));
        let filename = field("Filename")?;
        if !is_pool_filename(filename) {
            return Err(format!("{name}'s Filename '{filename}' is not a relative path into the archive"));
        }
        let size = field("Size")?.parse::<u64>().map_err(|_| format!("{name}'s Size is not a number"))?;
        let sha256 = field("SHA256")?.to_ascii_lowercase();
        if !is_sha256(&sha256) {
            return Err(format!("{name}'s SHA256 is not 64 hex digits"));
        }
        let relation = |key: &str| {
            relations::parse(record.get(key).unwrap_or_default()).map_err(|m| format!("{name}'s {key}: {m}"))
        };
        let mut depends = relation("Pre-Depends")?;
        depends.extend(relation("Depends")?);
        let provides = relation("Provides")?.into_iter().flatten().collect();
        relations.push(PackageRelations { name: name.clone(), depends, provides });
        packages.push(LockedPackage {
            name: name.clone(),
            version: version.clone(),
            architecture: arch.clone(),
            filename: filename.to_string(),
            size,
            sha256,
            depends: Vec::new(),
        });
    }
    for (package, depends) in packages.iter_mut().zip(relations::satisfiers(&relations)) {
        package.depends = depends;
    }
    let mut lock = Lock { suite, architecture, requested: requested.to_vec(), packages };
    lock.normalize();
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inst_lines_give_name_version_and_architecture() {
        let text = "Inst gcc-12-base (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64])\n\
                    Conf gcc-12-base (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64])\n\
                    Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []\n\
                    Inst libgcrypt20 (1.10.1-3+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])\n\
                    Inst tzdata (2026f-0+deb12u1 Debian-Security:12/oldstable-security [all])\n\
                    Inst zlib1g:arm64 (1:1.2.13.dfsg-1 Debian:12.15/oldstable [arm64])\n";
        let installs = parse_simulation(text).unwrap();
        let expected = [
            ("gcc-12-base", "12.2.0-14+deb12u1", "amd64"),
            ("libc6", "2.36-9+deb12u14", "amd64"),
            ("libgcrypt20", "1.10.1-3+deb12u1", "amd64"),
            ("tzdata", "2026f-0+deb12u1", "all"),
            ("zlib1g", "1:1.2.13.dfsg-1", "arm64"),
        ];
        let installs: Vec<(&str, &str, &str)> =
            installs.iter().map(|(n, v, a)| (n.as_str(), v.as_str(), a.as_str())).collect();
        assert_eq!(installs, expected);
        for bad in [
            "Inst make",
            "Inst make (4.3 Debian [amd64]",
            "Inst -o (4.3 Debian [amd64])",
            "Inst make (--x Debian [amd64])",
            "Inst make:i386 (4.3 Debian [amd64])",
            "Inst make (4.3 Debian [AMD64])",
        ] {
            assert!(parse_simulation(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_codenames_and_unknown_packages() {
        let text = "DEP-11 bookworm oldstable amd64\nPackages bookworm oldstable amd64\n\
                    Packages bookworm-security oldstable-security amd64\nPackages bookworm oldstable all\n\
                    Packages bookworm oldstable arm64\nPackages trixie -t amd64\n";
        let sources = parse_sources(text);
        assert_eq!(listed(&sources.architectures), "amd64, arm64");
        assert_eq!(listed(&sources.suites), "bookworm, bookworm-security, oldstable, oldstable-security, trixie");
        assert_eq!(listed(&BTreeSet::new()), "none");
        assert_eq!(codename("NAME=\"Debian\"\nVERSION_CODENAME=bookworm\n").as_deref(), Some("bookworm"));
        assert_eq!(codename("VERSION_CODENAME=\"jammy\"\n").as_deref(), Some("jammy"));
        assert_eq!(codename("VERSION_CODENAME=\n"), None);
        assert_eq!(
            refused_package("W: x\nE: Unable to locate package nosuch\n"),
            Some(("nosuch".to_string(), Refusal::Unknown))
        );
        assert_eq!(
            refused_package("E: Package 'mail-transport-agent' has no installation candidate\n"),
            Some(("mail-transport-agent".to_string(), Refusal::NoCandidate))
        );
        assert_eq!(refused_package("E: Broken packages\n"), None);
        assert_eq!(refused_package("E: Unable to locate package -x\n"), None);
        assert!(is_progress("Reading package lists...") && !is_progress("Package awk is a virtual package"));
    }

    fn record(name: &str, version: &str, arch: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n{extra}Filename: pool/main/{name}_{arch}.deb\n\
             Size: 42\nSHA256: {}\nDescription: x\n more\n\n",
            "AB".repeat(32)
        )
    }

    #[test]
    fn records_become_the_lock_with_depends_in_the_closure() {
        let text = [
            record("make", "4.3-4.1", "amd64", "Depends: libc6 (>= 2.34)\n"),
            record("libc6", "2.36-9", "amd64", "Depends: libgcc-s1\nRecommends: libidn2-0\n"),
            record("libgcc-s1", "12.2.0-14", "amd64", "Pre-Depends: libc6 (>= 2.35)\nDepends: gcc-12-base\n"),
            record("gcc-12-base", "12.2.0-14", "amd64", ""),
            record("gcc-12-base", "12.2.0-14", "amd64", ""),
            record("tzdata", "2026f-0", "all", "Depends: debconf (>= 0.5) | debconf-2.0\n"),
            record("cdebconf", "0.270", "amd64", "Provides: debconf-2.0\n"),
        ]
        .concat();
        let paragraphs = deb822::parse_all(&text).unwrap();
        let installs: Vec<(String, String, String)> = [
            ("tzdata", "2026f-0", "all"),
            ("make", "4.3-4.1", "amd64"),
            ("libc6", "2.36-9", "amd64"),
            ("libgcc-s1", "12.2.0-14", "amd64"),
            ("gcc-12-base", "12.2.0-14", "amd64"),
            ("cdebconf", "0.270", "amd64"),
        ]
        .iter()
        .map(|(n, v, a)| (n.to_string(), v.to_string(), a.to_string()))
        .collect();
        let requested = vec!["tzdata".to_string(), "make".to_string()];
        let lock = lock_of("bookworm".into(), "amd64".into(), &requested, &installs, &paragraphs).unwrap();
        let summary: Vec<(&str, Vec<String>)> =
            lock.packages.iter().map(|p| (p.name.as_str(), p.depends.clone())).collect();
        let expected: Vec<(&str, Vec<String>)> = vec![
            ("cdebconf", vec![]),
            ("gcc-12-base", vec![]),
            ("libc6", vec!["libgcc-s1".into()]),
            ("libgcc-s1", vec!["gcc-12-base".into(), "libc6".into()]),
            ("make", vec!["libc6".into()]),
            ("tzdata", vec!["cdebconf".into()]),
        ];
        assert_eq!(summary, expected);
        assert_eq!(lock.requested, ["make", "tzdata"]);
        assert_eq!(lock.packages[0].sha256, "ab".repeat(32));
        assert_eq!(lock.packages[0].filename, "pool/main/cdebconf_amd64.deb");
        assert_eq!(lock.packages[5].architecture, "all");
        // What it writes reads back.
        Lock::parse(&lock.to_json(), "debian.lock").unwrap();

        let missing = lock_of("bookworm".into(), "amd64".into(), &requested, &installs[..1], &paragraphs[..1]);
        assert_eq!(missing.unwrap_err(), "no record of tzdata 2026f-0 (all)");
        let evil = deb822::parse_all(&record("make", "4.3-4.1", "amd64", "").replace("pool/main/", "../../")).unwrap();
        let err = lock_of("b".into(), "amd64".into(), &requested, &installs[1..2], &evil).unwrap_err();
        assert!(err.contains("is not a relative path into the archive"), "{err}");
        let foreign = lock_of("b".into(), "arm64".into(), &requested, &installs[1..2], &paragraphs).unwrap_err();
        assert_eq!(
            foreign,
            "apt chose make 4.3-4.1 for amd64, not arm64: a lock holds packages of one architecture (and all)"
        );
        let twice = format!(
            "{}{}",
            record("make", "4.3-4.1", "amd64", ""),
            record("make", "4.3-4.1", "amd64", "").replace("AB", "CD")
        );
        let err = lock_of("b".into(), "amd64".into(), &requested, &installs[1..2], &deb822::parse_all(&twice).unwrap())
            .unwrap_err();
        assert!(err.contains("has two different files"), "{err}");
    }
}
