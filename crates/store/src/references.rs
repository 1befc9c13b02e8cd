//! Runtime references: after a path is produced, which of the candidate
//! store paths (its inputs, and itself) does it mention? Nix's answer, and
//! ours: look for their 32-character hash parts in every file's contents
//! and every symlink's target. Also where a given hash appears, which is
//! what `why-depends` shows.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::base32::is_base32_char;
use crate::hash_io::read_full;
use crate::store_path::{StorePath, HASH_CHARS};

/// Finds which `candidates` occur in `bytes`. A hash is 32 base-32
/// characters, so each window is checked from its end: at the last byte
/// that is not base-32 the scan can jump past it. Binary data, where such
/// bytes are common, is scanned a window at a time rather than a byte.
pub fn scan_bytes(bytes: &[u8], candidates: &HashMap<[u8; HASH_CHARS], usize>, found: &mut BTreeSet<usize>) {
    let mut start = 0;
    while start + HASH_CHARS <= bytes.len() {
        let window = &bytes[start..start + HASH_CHARS];
        match window.iter().rposition(|&b| !is_base32_char(b)) {
            Some(bad) => start += bad + 1,
            None => {
                let key: [u8; HASH_CHARS] = window.try_into().expect("window is HASH_CHARS long");
                if let Some(&index) = candidates.get(&key) {
                    found.insert(index);
                }
                start += 1;
            }
        }
    }
}

/// Which of `candidates` the tree at `path` refers to. Files are read in
/// pieces (overlapping by a hash's length), so their size does not matter.
pub fn scan_references(path: &Path, candidates: &[StorePath]) -> io::Result<BTreeSet<StorePath>> {
    let table: HashMap<[u8; HASH_CHARS], usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let hash: [u8; HASH_CHARS] = c.hash_part().into_bytes().try_into().expect("hash parts are HASH_CHARS long");
            (hash, i)
        })
        .collect();
    let mut found = BTreeSet::new();
    let mut buffer = vec![0u8; SCAN_CHUNK + HASH_CHARS];
    walk(path, &mut |_, entry| {
        match entry {
            Entry::Symlink(target) => scan_bytes(target, &table, &mut found),
            Entry::File(file) => {
                // `kept` bytes from the previous piece stay in front, so a
                // hash split between two pieces is still seen whole.
                let mut kept = 0;
                loop {
                    let n = read_full(file, &mut buffer[kept..])?;
                    if n == 0 {
                        break;
                    }
                    let end = kept + n;
                    scan_bytes(&buffer[..end], &table, &mut found);
                    kept = end.min(HASH_CHARS - 1);
                    buffer.copy_within(end - kept..end, 0);
                }
            }
        }
        Ok(())
    })?;
    Ok(found.into_iter().map(|i| candidates[i].clone()).collect())
}

/// How much of a file is scanned at a time.
const SCAN_CHUNK: usize = 1 << 20;

/// One place a hash appears: the file (relative to the scanned root, `""`
/// for the root itself), the byte offset, and the text around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub file: PathBuf,
    pub offset: usize,
    pub context: String,
}

/// Every place `hash_part` appears in the tree at `path`.
pub fn find_occurrences(path: &Path, hash_part: &str) -> io::Result<Vec<Occurrence>> {
    let needle = hash_part.as_bytes();
    let mut out = Vec::new();
    visit(path, &mut |file, bytes| {
        let mut from = 0;
        while let Some(pos) = find(&bytes[from..], needle) {
            let offset = from + pos;
            let start = offset.saturating_sub(30);
            let end = (offset + needle.len() + 30).min(bytes.len());
            let context = String::from_utf8_lossy(&bytes[start..end]).replace(|c: char| c.is_control(), "·");
            out.push(Occurrence { file: file.to_path_buf(), offset, context });
            from = offset + needle.len();
        }
    })?;
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A file's contents or a symlink's target, as [`walk`] hands them out.
enum Entry<'a> {
    File(&'a mut fs::File),
    Symlink(&'a [u8]),
}

/// Calls `f` with each file (open) and each symlink's target, in sorted
/// order, with paths relative to `root`.
fn walk(root: &Path, f: &mut impl FnMut(&Path, Entry) -> io::Result<()>) -> io::Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(&rel) };
        let meta = fs::symlink_metadata(&full)?;
        if meta.file_type().is_symlink() {
            f(&rel, Entry::Symlink(fs::read_link(&full)?.as_os_str().as_encoded_bytes()))?;
        } else if meta.is_dir() {
            let mut names: Vec<_> =
                fs::read_dir(&full)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
            names.sort();
            stack.extend(names.into_iter().rev().map(|n| rel.join(n)));
        } else {
            f(&rel, Entry::File(&mut fs::File::open(&full)?))?;
        }
    }
    Ok(())
}

/// Calls `f` with each file's contents and each symlink's target, in
/// sorted order, with paths relative to `root`.
fn visit(root: &Path, f: &mut impl FnMut(&Path, &[u8])) -> io::Result<()> {
    walk(root, &mut |rel, entry| {
        match entry {
            Entry::Symlink(target) => f(rel, target),
            Entry::File(file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                f(rel, &bytes);
            }
        }
        Ok(())
    })
}

/// Why one path depends on another (`mini why-depends`): the shortest
/// chain of references from the first to the second, and for each step
/// where in the files the next path's hash appears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// From the dependent path to its dependency, both included.
    pub chain: Vec<StorePath>,
    /// For each step of `chain`, where the next path's hash appears.
    pub found: Vec<Vec<Occurrence>>,
}

impl Dependency {
    /// The dependency of `from` on `to`, or `None` if `from`'s closure does
    /// not contain `to`.
    pub fn find(store: &crate::store::Store, from: &StorePath, to: &StorePath) -> crate::store::Result<Option<Self>> {
        let Some(chain) = store.why_depends(from, to)? else { return Ok(None) };
        let found = chain
            .windows(2)
            .map(|pair| find_occurrences(&store.physical_path(&pair[0]), &pair[1].hash_part()).unwrap_or_default())
            .collect();
        Ok(Some(Dependency { chain, found }))
    }

    /// The chain as a tree, each step with the places its next hash is in.
    pub fn render_text(&self) -> String {
        let mut text = format!("{}\n", self.chain[0]);
        for (depth, (pair, found)) in self.chain.windows(2).zip(&self.found).enumerate() {
            let indent = "  ".repeat(depth);
            text.push_str(&format!("{indent}└───{}\n", pair[1]));
            for occ in found {
                text.push_str(&format!("{indent}    {}: …{}…\n", occ.file_label(), occ.context));
            }
        }
        text
    }

    /// `[{"path", "nextFoundIn": [{"file", "offset", "context"}, …]}, …]`.
    pub fn to_json(&self) -> serde_json::Value {
        let links = self.chain.iter().enumerate().map(|(i, path)| {
            let found: Vec<serde_json::Value> = (self.found.get(i).into_iter().flatten())
                .map(|o| serde_json::json!({ "file": o.file_label(), "offset": o.offset, "context": o.context }))
                .collect();
            serde_json::json!({ "path": path.to_string(), "nextFoundIn": found })
        });
        serde_json::Value::Array(links.collect())
    }
}

impl Occurrence {
    /// The file as people read it: `(the file itself)` for the root.
    pub fn file_label(&self) -> String {
        if self.file.as_os_str().is_empty() {
            "(the file itself)".to_string()
        } else {
            self.file.display().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store_path::source_path_for_tests as path;

    #[test]
    fn finds_hashes_in_contents_and_symlinks_only() {
        let dir = std::env::temp_dir().join(format!("mini-refs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).unwrap();
        let (libc, busybox, unused) = (path("libc"), path("busybox"), path("unused"));
        fs::write(dir.join("bin/script"), format!("#!{busybox}/bin/sh\nexec foo\n")).unwrap();
        std::os::unix::fs::symlink(format!("{libc}/lib/libc.so"), dir.join("libc.so")).unwrap();
        // A name that merely contains the hash is not a reference: names are not scanned.
        fs::write(dir.join(unused.hash_part()), "nothing here").unwrap();
        let found = scan_references(&dir, &[libc.clone(), busybox.clone(), unused]).unwrap();
        assert_eq!(found, BTreeSet::from([libc, busybox.clone()]));
        let occ = find_occurrences(&dir, &busybox.hash_part()).unwrap();
        assert_eq!(occ.len(), 1);
        assert_eq!(occ[0].file, PathBuf::from("bin/script"));
        assert_eq!(occ[0].offset, "#!/mini/store/".len());
        assert!(occ[0].context.contains("-busybox/bin/sh"), "{}", occ[0].context);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hashes_across_piece_boundaries_and_in_binary_data_are_found() {
        let dir = std::env::temp_dir().join(format!("mini-refs-big-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (path("a"), path("b"), path("c"));
        // `a` straddles the first piece's end; `b` sits in noise further on.
        let mut bytes: Vec<u8> = (0..SCAN_CHUNK + HASH_CHARS - 10).map(|i| (i * 7 % 251) as u8).collect();
        bytes.extend_from_slice(a.hash_part().as_bytes());
        bytes.extend((0..3 * SCAN_CHUNK).map(|i| (i * 13 % 256) as u8));
        bytes.extend_from_slice(b.hash_part().as_bytes());
        bytes.push(0);
        fs::write(dir.join("blob"), &bytes).unwrap();
        let found = scan_references(&dir, &[a.clone(), b.clone(), c]).unwrap();
        assert_eq!(found, BTreeSet::from([a, b]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn windows_inside_longer_base32_runs_are_found() {
        let p = path("x");
        let mut table = HashMap::new();
        table.insert(<[u8; HASH_CHARS]>::try_from(p.hash_part().as_bytes()).unwrap(), 0);
        let mut found = BTreeSet::new();
        scan_bytes(format!("aaaa{}zz", p.hash_part()).as_bytes(), &table, &mut found);
        assert_eq!(found, BTreeSet::from([0]));
        let mut none = BTreeSet::new();
        scan_bytes(&p.hash_part().as_bytes()[..31], &table, &mut none);
        assert!(none.is_empty());
    }
}
