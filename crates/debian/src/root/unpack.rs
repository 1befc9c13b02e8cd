//! Unpacking one package's `data.tar` into the root being assembled:
//! each entry's path checked and mapped into the usr-merged layout, each
//! entry kind written its way (files from large buffered writes, hard
//! links as copies, devices and fifos refused), and the paths recorded for
//! the package's `.list`.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;

use super::merge::{self, MergeError, MergedTree, Owner, Placed};
use super::tar_names::EntryNames;
use super::{read_error, Package, RootError, ASSEMBLER, USR_MERGED, USR_MERGED_ON_DEMAND};
use crate::deb;

/// Unpacks one package's `data.tar` into the tree.
pub(super) struct Unpacker<'t, 'p, 'l> {
    pub tree: &'t mut MergedTree,
    pub packages: &'p [Package<'p>],
    pub owner: Owner,
    pub log: &'l mut dyn Write,
    pub buffer: &'t mut Vec<u8>,
}

impl Unpacker<'_, '_, '_> {
    /// Unpacks `data`; the package's paths (for its `.list`), how many
    /// entries it held, how many it replaced.
    pub fn unpack(&mut self, data: &mut dyn Read) -> Result<(Vec<Vec<u8>>, u64, u64), RootError> {
        let mut archive = tar::Archive::new(data);
        let mut list = Vec::new();
        let (mut entries, mut replaced) = (0, 0);
        let packages = self.packages;
        let package = &packages[self.owner];
        let read = |source| read_error(package, source);
        let mut names = EntryNames::default();
        let limit = unpacked_limit(package.control.paragraph.get("Installed-Size"));
        let mut unpacked: u64 = 0;
        for entry in archive.entries().map_err(read)?.raw(true) {
            let mut entry = entry.map_err(read)?;
            let absorbed = names.absorb(&mut entry).map_err(|reason| RootError::Entry {
                package: package.input.name.clone(),
                entry: deb::show_bytes(&entry.header().path_bytes()),
                reason,
            })?;
            if absorbed {
                continue;
            }
            let kind = entry.header().entry_type();
            let (raw, link) = names.take(&entry);
            let refuse = |reason: String| RootError::Entry {
                package: package.input.name.clone(),
                entry: deb::show_bytes(&raw),
                reason,
            };
            let Some(MappedPath { listed, in_root: mapped }) =
                map_path(&raw).map_err(|reason| refuse(reason.to_string()))?
            else {
                continue;
            };
            entries += 1;
            self.make_on_demand_link(&mapped).map_err(|e| refuse(e.to_string()))?;
            let placed = match kind {
                tar::EntryType::Directory => {
                    self.tree.dir(&mapped, self.owner).map_err(|e| self.explain(e, &refuse))?
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    unpacked = unpacked.saturating_add(entry.header().size().map_err(read)?);
                    if unpacked > limit {
                        return Err(refuse(too_large(limit)));
                    }
                    let executable = entry.header().mode().map_err(read)? & 0o111 != 0;
                    let (mut file, placed) =
                        self.tree.file(&mapped, executable, self.owner).map_err(|e| self.explain(e, &refuse))?;
                    copy(&mut entry, &mut file, self.buffer).map_err(read)?;
                    placed
                }
                tar::EntryType::Symlink => {
                    let target = link.ok_or_else(|| refuse("the link has no target".into()))?;
                    if is_layout_link(&listed, &target) {
                        // Packages of usr-merged releases (DEP17: trixie's
                        // base-files) ship `bin -> usr/bin` themselves: the
                        // root's layout has that very link already.
                        self.make_on_demand_link(&mapped).map_err(|e| self.explain(e, &refuse))?;
                        list.push(listed);
                        continue;
                    }
                    self.tree.symlink(&mapped, &target, self.owner).map_err(|e| self.explain(e, &refuse))?
                }
                tar::EntryType::Link => {
                    let target = link.ok_or_else(|| refuse("the hard link has no target".into()))?;
                    let target = map_path(&target)
                        .map_err(|reason| refuse(format!("the hard link's target {reason}")))?
                        .ok_or_else(|| refuse("the hard link points at the root".into()))?
                        .in_root;
                    let mut source =
                        self.tree.open_own_file(&target, self.owner).map_err(|e| self.explain(e, &refuse))?;
                    // One inode in dpkg's tree: the copy keeps the original's mode.
                    let metadata = source.metadata().map_err(read)?;
                    unpacked = unpacked.saturating_add(metadata.len());
                    if unpacked > limit {
                        return Err(refuse(too_large(limit)));
                    }
                    let executable = metadata.permissions().mode() & 0o111 != 0;
                    let (mut file, placed) =
                        self.tree.file(&mapped, executable, self.owner).map_err(|e| self.explain(e, &refuse))?;
                    copy(&mut source, &mut file, self.buffer).map_err(read)?;
                    placed
                }
                other => return Err(refuse(format!("it is {}, which a root may not hold", kind_name(other)))),
            };
            if let Placed::Replaced { owner } = placed {
                replaced += 1;
                let by = packages.get(owner).map_or("the assembler", |p| p.input.name.as_str());
                let _ = writeln!(self.log, "  {} replaces {} from {by}", package.input.name, deb::show_bytes(&listed));
            }
            list.push(listed);
        }
        Ok((list, entries, replaced))
    }

    /// A tree error as the package's, naming the package that wrote what is in the way.
    fn explain(&self, error: MergeError, refuse: &impl Fn(String) -> RootError) -> RootError {
        let reason = match &error {
            MergeError::Conflict { owner, .. } => {
                let by = self.packages.get(*owner).map_or("the usr-merged layout", |p| p.input.name.as_str());
                format!("{error} (from {by})")
            }
            _ => error.to_string(),
        };
        refuse(reason)
    }

    /// Makes `lib32 -> usr/lib32` (or `libx32`) when `mapped` is below it and it is not there yet.
    fn make_on_demand_link(&mut self, mapped: &[u8]) -> Result<(), MergeError> {
        for top in USR_MERGED_ON_DEMAND {
            let inside = format!("usr/{top}");
            let below = mapped.strip_prefix(inside.as_bytes()).is_some_and(|rest| rest.is_empty() || rest[0] == b'/');
            if below && self.tree.kind(top.as_bytes()).is_none() {
                self.tree.dir(inside.as_bytes(), ASSEMBLER)?;
                self.tree.symlink(top.as_bytes(), inside.as_bytes(), ASSEMBLER)?;
                let _ = writeln!(self.log, "  made {top} -> {inside}");
            }
        }
        Ok(())
    }
}

/// The most bytes of files one package may unpack: twice what its
/// control's `Installed-Size` (KiB) declares, plus 64 MiB, or 1 GiB when it
/// declares nothing. A few kilobytes of xz can expand to any size, and the
/// root is written to the store's disk.
fn unpacked_limit(installed_size: Option<&str>) -> u64 {
    match installed_size.and_then(|kib| kib.trim().parse::<u64>().ok()) {
        Some(kib) => kib.saturating_mul(2048).saturating_add(64 << 20),
        None => 1 << 30,
    }
}

fn too_large(limit: u64) -> String {
    format!(
        "the package's files come to more than {limit} bytes, twice what its Installed-Size declares \
         (plus 64 MiB): refusing to fill the disk with it"
    )
}

/// Whether the entry `/NAME -> usr/NAME` is the usr-merged layout's own
/// link (`NAME` one of [`USR_MERGED`] and [`USR_MERGED_ON_DEMAND`]).
fn is_layout_link(listed: &[u8], target: &[u8]) -> bool {
    USR_MERGED.iter().chain(&USR_MERGED_ON_DEMAND).any(|top| {
        listed.strip_prefix(b"/") == Some(top.as_bytes()) && target.strip_prefix(b"usr/") == Some(top.as_bytes())
    })
}

/// Where the entry a `.list` shows as `listed` (`/bin/sh`) is in the root
/// (`usr/bin/sh`), if it is an entry at all.
pub(super) fn in_root(listed: &[u8]) -> Option<Vec<u8>> {
    let rel = listed.strip_prefix(b"/").unwrap_or(listed);
    map_path(rel).ok().flatten().map(|m| m.in_root)
}

/// Copies `from` into `to` through `buffer`, in large writes.
fn copy(from: &mut dyn Read, to: &mut std::fs::File, buffer: &mut [u8]) -> io::Result<()> {
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            match from.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..filled])?;
    }
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Char => "a character device",
        tar::EntryType::Block => "a block device",
        tar::EntryType::Fifo => "a fifo",
        tar::EntryType::GNUSparse => "a sparse file",
        _ => "an entry of an unknown type",
    }
}

/// Where an archive entry goes.
#[derive(Debug, PartialEq, Eq)]
struct MappedPath {
    /// How the package's `.list` shows it (`/usr/bin/make`, `/bin`).
    listed: Vec<u8>,
    /// Where it goes in the root (`usr/bin/make`, `usr/bin`).
    in_root: Vec<u8>,
}

/// Where the path an archive entry names (`./usr/bin/make`, `./bin/`)
/// goes; `None` for the root itself.
fn map_path(raw: &[u8]) -> Result<Option<MappedPath>, &'static str> {
    if raw.starts_with(b"/") {
        return Err("is absolute");
    }
    let rel = raw.strip_prefix(b"./").unwrap_or(raw);
    let rel = rel.strip_suffix(b"/").unwrap_or(rel);
    if rel.is_empty() || rel == b"." {
        return Ok(None);
    }
    if let Some(reason) = rel.split(|&b| b == b'/').find_map(merge::component_problem) {
        return Err(reason);
    }
    let listed = [b"/", rel].concat();
    let first = rel.split(|&b| b == b'/').next().unwrap_or(rel);
    let to_usr = USR_MERGED.iter().chain(&USR_MERGED_ON_DEMAND).any(|top| top.as_bytes() == first);
    let mapped = if to_usr { [b"usr/", rel].concat() } else { rel.to_vec() };
    Ok(Some(MappedPath { listed, in_root: mapped }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_map_into_usr() {
        let mapped = |raw: &[u8]| {
            map_path(raw)
                .unwrap()
                .map(|m| (String::from_utf8(m.listed).unwrap(), String::from_utf8(m.in_root).unwrap()))
        };
        assert_eq!(mapped(b"./"), None);
        assert_eq!(mapped(b"."), None);
        assert_eq!(mapped(b"./bin/"), Some(("/bin".into(), "usr/bin".into())));
        assert_eq!(mapped(b"./lib64/ld.so"), Some(("/lib64/ld.so".into(), "usr/lib64/ld.so".into())));
        assert_eq!(mapped(b"./libexec/x"), Some(("/libexec/x".into(), "libexec/x".into())));
        assert_eq!(mapped(b"etc/passwd"), Some(("/etc/passwd".into(), "etc/passwd".into())));
        assert_eq!(mapped(b"./usr/lib/"), Some(("/usr/lib".into(), "usr/lib".into())));
        assert!(map_path(b"/etc").is_err());
        assert!(map_path(b"./a/../b").is_err());
        assert!(map_path(b"./a//b").is_err());
    }
}
