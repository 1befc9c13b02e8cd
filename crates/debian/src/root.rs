//! Assembling a filesystem root from a closure of `.deb` files, as
//! `debootstrap` or `dpkg --unpack` would, but with no maintainer script
//! and no process at all, byte for byte the same each time: the root of
//! `pkgs.debian.root` (`builtin:debroot`, [`debroot`]).
//!
//! [`assemble`] checks each `.deb` is the package it is claimed to be,
//! orders the packages dependencies first ([`order`]), creates the
//! usr-merged skeleton (`bin -> usr/bin`, `sbin -> usr/sbin`,
//! `lib -> usr/lib`, `lib64 -> usr/lib64`, relative, and `lib32`,
//! `libx32` when a package ships files there) and unpacks each package's
//! `data.tar` in that order (`unpack.rs`). A package's own `bin ->
//! usr/bin` (usr-merged releases ship them, DEP17) is the skeleton's link
//! and is only recorded. Entries below `bin`, `sbin`,
//! `lib*` are written below `usr/` instead, so that no link is ever
//! followed; every write goes through directory handles (`merge.rs`).
//! Directories shared by packages merge; a file or link a later package
//! ships again replaces the earlier one, and the log says so. Hard links
//! are written as copies. Devices and fifos are refused. Of a file's mode
//! only the executable bit is kept (0755 or 0644; setuid and setgid are
//! dropped, as the store normalises modes anyway); directories are 0755;
//! owners are not kept. A package's files may come to at most twice its
//! declared `Installed-Size` (plus 64 MiB), so a small `.deb` cannot fill
//! the disk.
//!
//! No maintainer script runs (`preinst`, `postinst`, … are not even read,
//! only named in the log as skipped). So the root has none of what they
//! would have made: no generated caches (`ld.so.cache`, gdk-pixbuf,
//! fontconfig, icon caches), no users or groups beyond what packages ship
//! as files (`base-passwd` installs `/etc/passwd` in its `preinst`), no
//! alternatives except the few in [`ALTERNATIVES`], no diversions, no
//! triggers. The dpkg database ([`dpkg_db`]) records every package as
//! installed, so `dpkg-query` and scanners see them.

mod builtin;
pub mod dpkg_db;
mod merge;
pub mod order;
mod stream;
mod tar_names;
mod unpack;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::deb::{self, Control, Deb, DebError};
use crate::names;
pub use builtin::debroot;
use merge::{MergeError, MergedTree, Owner};
use unpack::Unpacker;

/// One package to put in a root: what it is claimed to be, and its `.deb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootInput {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Where the `.deb` is on this host.
    pub path: PathBuf,
    /// The names of the packages (among the inputs) it depends on.
    pub depends: Vec<String>,
}

/// What [`assemble`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// The packages' names, in the order they were unpacked.
    pub order: Vec<String>,
    /// How many entries the packages' archives held.
    pub entries: u64,
    /// How many files or links a later package replaced.
    pub replaced: u64,
    /// The alternatives links made, as `link -> target`.
    pub alternatives: Vec<String>,
}

/// The top-level directories that are links into `usr/` in a usr-merged root, always made.
pub const USR_MERGED: [&str; 4] = ["bin", "sbin", "lib", "lib64"];
/// The top-level directories that become links into `usr/` when a package ships files there.
pub const USR_MERGED_ON_DEMAND: [&str; 2] = ["lib32", "libx32"];

/// The links maintainer scripts would have made with `update-alternatives`
/// or by hand, made after unpacking only when the link does not exist and
/// one of its targets does (the first that does): a root without
/// `/bin/sh` or `cc` surprises every build. Each is `(link, targets)`,
/// targets relative to the link's directory.
pub const ALTERNATIVES: &[(&str, &[&str])] = &[
    // dash's postinst points /bin/sh at dash (its data.tar ships the link too).
    ("usr/bin/sh", &["dash"]),
    ("usr/bin/awk", &["mawk", "gawk"]),
    ("usr/bin/cc", &["gcc"]),
    ("usr/bin/c++", &["g++"]),
    ("usr/bin/which", &["which.debianutils"]),
    ("usr/bin/pager", &["less"]),
];

/// The owner of what the assembler itself writes (the skeleton, alternatives, the database).
const ASSEMBLER: Owner = usize::MAX;
/// The size of the buffer files are written from.
const WRITE_BUFFER: usize = 256 << 10;

/// Why a root could not be assembled.
#[derive(Debug, Error)]
pub enum RootError {
    #[error("invalid {what} '{value}': {rule}")]
    InvalidName { what: &'static str, value: String, rule: &'static str },
    #[error("the package '{0}' is given twice; a root holds each package once")]
    DuplicatePackage(String),
    #[error("the package '{package}' depends on '{dependency}', which is not among the packages given")]
    UnknownDependency { package: String, dependency: String },
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error("{} is not the package claimed: its {field} is '{found}', but '{claimed}' was expected", path.display())]
    Mismatch { path: PathBuf, field: &'static str, claimed: String, found: String },
    #[error("{}: the control file sets 'Status', which only the dpkg database may; the package is malformed", path.display())]
    StatusInControl { path: PathBuf },
    #[error("cannot create the root {}: {source}", path.display())]
    Output { path: PathBuf, source: io::Error },
    #[error("package '{package}': cannot unpack '{entry}': {reason}")]
    Entry { package: String, entry: String, reason: String },
    #[error("package '{package}': cannot read its data ({member}): {source}")]
    Read { package: String, member: String, source: io::Error },
    #[error("cannot write '{entry}' in the root: {reason}")]
    Write { entry: String, reason: String },
}

/// Checks a Debian package name ([`names::is_package`]).
pub fn check_package_name(name: &str) -> Result<(), RootError> {
    check(names::is_package(name), "package name", name, names::PACKAGE_RULE)
}

/// Checks a Debian version ([`names::is_version`]).
pub fn check_version(version: &str) -> Result<(), RootError> {
    check(names::is_version(version), "version", version, names::VERSION_RULE)
}

/// Checks a Debian architecture ([`names::is_architecture`]).
pub fn check_architecture(arch: &str) -> Result<(), RootError> {
    check(names::is_architecture(arch), "architecture", arch, names::ARCHITECTURE_RULE)
}

fn check(valid: bool, what: &'static str, value: &str, rule: &'static str) -> Result<(), RootError> {
    match valid {
        true => Ok(()),
        false => Err(RootError::InvalidName { what, value: deb::shown(value), rule }),
    }
}

/// A package opened and checked, ready to unpack.
struct Package<'a> {
    input: &'a RootInput,
    deb: Deb,
    control: Control,
}

/// Assembles the root `out` (which must not exist) from `debs`, writing
/// what it does to `log`. On error nothing is left at `out`.
pub fn assemble(debs: &[RootInput], out: &Path, log: &mut dyn Write) -> Result<Assembled, RootError> {
    let depends = check_inputs(debs)?;
    let packages = debs.iter().map(open_package).collect::<Result<Vec<_>, _>>()?;
    let names: Vec<&str> = debs.iter().map(|d| d.name.as_str()).collect();
    let order = order::install_order(&names, &depends);
    let mut tree = MergedTree::create(out).map_err(|source| RootError::Output { path: out.to_path_buf(), source })?;
    let result = fill(&mut tree, &packages, &order, log);
    if result.is_err() {
        mini_store::store::discard_tree(out);
    }
    result
}

/// Checks the inputs' names and that each dependency is among them; the dependencies as indices.
fn check_inputs(debs: &[RootInput]) -> Result<Vec<Vec<usize>>, RootError> {
    let mut seen = std::collections::BTreeMap::new();
    for (i, input) in debs.iter().enumerate() {
        check_package_name(&input.name)?;
        check_version(&input.version)?;
        check_architecture(&input.architecture)?;
        if seen.insert(input.name.as_str(), i).is_some() {
            return Err(RootError::DuplicatePackage(input.name.clone()));
        }
    }
    debs.iter()
        .map(|input| {
            input
                .depends
                .iter()
                .map(|dependency| {
                    seen.get(dependency.as_str()).copied().ok_or_else(|| RootError::UnknownDependency {
                        package: input.name.clone(),
                        dependency: deb::shown(dependency),
                    })
                })
                .collect()
        })
        .collect()
}

/// Opens `input`'s `.deb` and checks its control file names the package claimed.
fn open_package(input: &RootInput) -> Result<Package<'_>, RootError> {
    let deb = Deb::open(&input.path)?;
    let control = deb.control()?;
    for (field, claimed) in
        [("Package", &input.name), ("Version", &input.version), ("Architecture", &input.architecture)]
    {
        let found = control.paragraph.get(field).unwrap_or("");
        if found != claimed {
            return Err(RootError::Mismatch {
                path: input.path.clone(),
                field,
                claimed: claimed.clone(),
                found: deb::shown(found),
            });
        }
    }
    if control.paragraph.get("Status").is_some() {
        return Err(RootError::StatusInControl { path: input.path.clone() });
    }
    Ok(Package { input, deb, control })
}

/// Writes everything into the new `tree`.
fn fill(
    tree: &mut MergedTree,
    packages: &[Package<'_>],
    order: &[usize],
    log: &mut dyn Write,
) -> Result<Assembled, RootError> {
    write_skeleton(tree)?;
    let mut lists: Vec<Vec<Vec<u8>>> = vec![Vec::new(); packages.len()];
    let mut totals = (0u64, 0u64);
    let ordered: Vec<&Deb> = order.iter().map(|&i| &packages[i].deb).collect();
    let mut buffer = vec![0u8; WRITE_BUFFER];
    stream::for_each_data(
        &ordered,
        |position, data| {
            let index = order[position];
            let package = &packages[index];
            let input = package.input;
            let _ = writeln!(log, "unpacking {} {} ({})", input.name, input.version, input.architecture);
            let scripts: Vec<&str> =
                package.control.other_files.iter().map(String::as_str).filter(|f| is_script(f)).collect();
            if !scripts.is_empty() {
                let _ = writeln!(log, "  not run: {}", scripts.join(", "));
            }
            let mut unpacker =
                Unpacker { tree: &mut *tree, packages, owner: index, log: &mut *log, buffer: &mut buffer };
            let (list, entries, replaced) = unpacker.unpack(data)?;
            lists[index] = list;
            totals.0 += entries;
            totals.1 += replaced;
            Ok(())
        },
        |position, source| read_error(&packages[order[position]], source),
    )?;
    // A file or link a later package replaced is that package's now, not
    // the earlier one's (dpkg takes it off the earlier package's list too).
    for (index, list) in lists.iter_mut().enumerate() {
        list.retain(|listed| match unpack::in_root(listed) {
            Some(rel) => tree.kind(&rel) == Some(merge::Kind::Dir) || tree.owner(&rel).is_none_or(|o| o == index),
            None => true,
        });
    }
    let alternatives = make_alternatives(tree, log)?;
    write_database(tree, packages, &lists)?;
    let order = order.iter().map(|&i| packages[i].input.name.clone()).collect();
    Ok(Assembled { order, entries: totals.0, replaced: totals.1, alternatives })
}

fn is_script(name: &str) -> bool {
    matches!(name, "preinst" | "postinst" | "prerm" | "postrm" | "config" | "triggers")
}

fn read_error(package: &Package<'_>, source: io::Error) -> RootError {
    RootError::Read { package: package.input.name.clone(), member: package.deb.data_member().to_string(), source }
}

/// The usr-merged top level: `usr/bin` … and the links to them.
fn write_skeleton(tree: &mut MergedTree) -> Result<(), RootError> {
    for top in USR_MERGED {
        let inside = format!("usr/{top}");
        tree.dir(inside.as_bytes(), ASSEMBLER).map_err(|e| written(&inside, e))?;
        tree.symlink(top.as_bytes(), inside.as_bytes(), ASSEMBLER).map_err(|e| written(top, e))?;
    }
    Ok(())
}

fn written(entry: &str, source: MergeError) -> RootError {
    RootError::Write { entry: entry.to_string(), reason: source.to_string() }
}

/// Makes the [`ALTERNATIVES`] links whose link is missing and a target is present.
fn make_alternatives(tree: &mut MergedTree, log: &mut dyn Write) -> Result<Vec<String>, RootError> {
    let mut made = Vec::new();
    for (link, targets) in ALTERNATIVES {
        if tree.kind(link.as_bytes()).is_some() {
            continue;
        }
        let dir = link.rsplit_once('/').map_or("", |(dir, _)| dir);
        let present =
            targets.iter().find(|t| tree.kind(format!("{dir}/{t}").as_bytes()).is_some_and(|k| k != merge::Kind::Dir));
        if let Some(target) = present {
            tree.symlink(link.as_bytes(), target.as_bytes(), ASSEMBLER).map_err(|e| written(link, e))?;
            let _ = writeln!(log, "alternative: {link} -> {target}");
            made.push(format!("{link} -> {target}"));
        }
    }
    Ok(made)
}

/// Writes `var/lib/dpkg`: `status`, an empty `available`, `info/format`,
/// and each package's `.list` and `.md5sums`.
fn write_database(tree: &mut MergedTree, packages: &[Package<'_>], lists: &[Vec<Vec<u8>>]) -> Result<(), RootError> {
    let installed: Vec<dpkg_db::Installed<'_>> = packages
        .iter()
        .map(|p| dpkg_db::Installed {
            name: &p.input.name,
            architecture: &p.input.architecture,
            paragraph: &p.control.paragraph,
        })
        .collect();
    new_file(tree, "var/lib/dpkg/status", dpkg_db::status(&installed).as_bytes())?;
    new_file(tree, "var/lib/dpkg/available", b"")?;
    tree.dir(b"var/lib/dpkg/info", ASSEMBLER).map_err(|e| written("var/lib/dpkg/info", e))?;
    new_file(tree, "var/lib/dpkg/info/format", dpkg_db::INFO_FORMAT.as_bytes())?;
    for (package, list) in packages.iter().zip(lists) {
        let base = dpkg_db::info_name(&package.input.name, &package.input.architecture, &package.control.paragraph);
        new_file(tree, &format!("var/lib/dpkg/info/{base}.list"), &dpkg_db::list(list))?;
        if let Some(md5sums) = &package.control.md5sums {
            new_file(tree, &format!("var/lib/dpkg/info/{base}.md5sums"), md5sums)?;
        }
    }
    Ok(())
}

/// Writes the file `rel`, which no package may have shipped.
fn new_file(tree: &mut MergedTree, rel: &str, contents: &[u8]) -> Result<(), RootError> {
    if tree.kind(rel.as_bytes()).is_some() {
        let source = MergeError::BadPath {
            entry: rel.to_string(),
            reason: "is part of the dpkg database, which no package may ship",
        };
        return Err(written(rel, source));
    }
    let (mut file, _) = tree.file(rel.as_bytes(), false, ASSEMBLER).map_err(|e| written(rel, e))?;
    file.write_all(contents)
        .map_err(|source| written(rel, MergeError::Io { entry: rel.to_string(), action: "write", source }))
}

#[cfg(test)]
mod tests;
