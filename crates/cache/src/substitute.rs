//! Substitution: supplying store paths from binary caches instead of
//! building them. A path is taken only from a narinfo signed by a trusted
//! key, and registered only once the download matched the narinfo's file
//! hash and size and the unpacked archive its archive hash and size.
//! References are substituted first, so the store stays closed under them.
//!
//! The download and the archive are read through limits at the narinfo's
//! `FileSize` and `NarSize`, so a cache that lies about them (an xz bomb)
//! is refused as soon as it passes the declared size, not after filling
//! the disk; the archive is unpacked with `nar::restore`, which never
//! writes through a link.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;

use mini_store::encoding::nar_hash_text;
use mini_store::hash_io::HashingReader;
use mini_store::nar;
use mini_store::store::{discard_tree, Store};
use mini_store::store_path::StorePath;

use crate::key::PublicKey;
use crate::narinfo::{self, NarInfo};
use crate::remote::Remote;
use crate::Result;

/// What the caches say about a path.
#[derive(Clone)]
enum Lookup {
    /// The first cache, by index, with a trusted narinfo.
    Found(usize, Box<NarInfo>),
    Missing,
    /// Offered, but not acceptably: why.
    Rejected(String),
}

/// A list of binary caches and the keys trusted to sign for them.
pub struct BinaryCaches {
    remotes: Vec<Remote>,
    keys: Vec<PublicKey>,
    lookups: Mutex<HashMap<StorePath, Lookup>>,
}

/// Reads at most `limit` bytes of `inner`: a byte more is an error, and
/// `exceeded` remembers it, so the caller can tell a lie about the size
/// from a failure of its own.
struct Limited<R> {
    inner: R,
    left: u64,
    exceeded: bool,
}

impl<R: Read> Limited<R> {
    fn new(inner: R, limit: u64) -> Self {
        Limited { inner, left: limit, exceeded: false }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.exceeded {
            return Err(io::Error::other("more bytes than the narinfo declares"));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte past the limit is enough to know it was passed.
        let window = self.left.saturating_add(1).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..window])?;
        if n as u64 > self.left {
            self.exceeded = true;
            return Err(io::Error::other("more bytes than the narinfo declares"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads what is left through `side`, then the hash and length of everything read.
fn finish<R: Read>(side: &mut HashingReader<R, blake3::Hasher>) -> io::Result<([u8; 32], u64)> {
    io::copy(side, &mut io::sink())?;
    Ok((*side.digest().finalize().as_bytes(), side.read_bytes()))
}

impl BinaryCaches {
    pub fn new(urls: &[String], keys: &[String]) -> Result<BinaryCaches> {
        Ok(BinaryCaches {
            remotes: urls.iter().map(|u| Remote::parse(u)).collect::<Result<_>>()?,
            keys: keys.iter().map(|k| PublicKey::parse(k)).collect::<Result<_>>()?,
            lookups: Mutex::new(HashMap::new()),
        })
    }

    fn lookup(&self, path: &StorePath) -> Lookup {
        if let Some(known) = self.lookups.lock().unwrap_or_else(|e| e.into_inner()).get(path) {
            return known.clone();
        }
        let mut problems = Vec::new();
        let mut found = Lookup::Missing;
        for (i, remote) in self.remotes.iter().enumerate() {
            match self.trusted_narinfo(remote, path) {
                Ok(Some(info)) => {
                    found = Lookup::Found(i, Box::new(info));
                    break;
                }
                Ok(None) => {}
                Err(problem) => problems.push(problem),
            }
        }
        if matches!(found, Lookup::Missing) && !problems.is_empty() {
            found = Lookup::Rejected(problems.join("; "));
        }
        self.lookups.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone(), found.clone());
        found
    }

    /// The narinfo `remote` has for `path`, if it is signed by a trusted key.
    fn trusted_narinfo(&self, remote: &Remote, path: &StorePath) -> std::result::Result<Option<NarInfo>, String> {
        let name = narinfo::file_name(path);
        let url = remote.url_of(&name);
        let Some(bytes) = remote.get(&name).map_err(|e| e.to_string())? else { return Ok(None) };
        let text = String::from_utf8(bytes).map_err(|_| format!("{url} is not text"))?;
        let info = NarInfo::parse(&url, &text).map_err(|e| e.to_string())?;
        if &info.store_path != path {
            return Err(format!("{url} describes {}, not {path}", info.store_path));
        }
        if info.sigs.is_empty() {
            return Err(format!("{url} is unsigned; only paths signed by a trusted key are accepted"));
        }
        let fingerprint = info.fingerprint();
        if !info.sigs.iter().any(|sig| self.keys.iter().any(|key| key.verifies(&fingerprint, sig))) {
            let signers: Vec<&str> = info.sigs.iter().map(|s| s.split(':').next().unwrap_or("")).collect();
            return Err(format!(
                "{url} has no valid signature by a trusted key (signed as: {}; check --trusted-public-keys)",
                signers.join(", ")
            ));
        }
        Ok(Some(info))
    }

    /// Substitutes `path` and, first, its missing references; the caller
    /// holds `path`'s lock.
    fn substitute_locked(&self, store: &Store, path: &StorePath) -> std::result::Result<bool, String> {
        let (index, info) = match self.lookup(path) {
            Lookup::Found(i, info) => (i, info),
            Lookup::Missing => return Ok(false),
            Lookup::Rejected(why) => return Err(why),
        };
        // Held before they are checked, so a GC cannot take a reference
        // found valid before the path referring to it is registered.
        let references: Vec<StorePath> = info.references.iter().filter(|r| *r != path).cloned().collect();
        store.add_temp_roots(&references).map_err(|e| e.to_string())?;
        for reference in references.iter().filter(|r| !store.is_valid(r)) {
            let _lock = store.lock(reference).map_err(|e| e.to_string())?;
            if store.is_valid(reference) {
                continue;
            }
            if !self.substitute_locked(store, reference)? {
                return Err(format!("its reference {reference} is in no binary cache"));
            }
        }
        store.add_temp_roots(std::slice::from_ref(path)).map_err(|e| e.to_string())?;
        let staging = store.staging_dir().map_err(|e| e.to_string())?;
        let result = self.fetch(store, &self.remotes[index], &info, &staging);
        discard_tree(&staging);
        result.map(|()| true)
    }

    /// Downloads, checks and registers one path.
    fn fetch(&self, store: &Store, remote: &Remote, info: &NarInfo, staging: &Path) -> std::result::Result<(), String> {
        let url = remote.url_of(&info.url);
        let reader = remote.open(&info.url).map_err(|e| e.to_string())?.ok_or_else(|| format!("{url} is missing"))?;
        let staged = staging.join("out");
        let narinfo_url = remote.url_of(&narinfo::file_name(&info.store_path));
        unpack(info, &narinfo_url, &url, reader, &staged)?;
        store
            .install(&info.store_path, &staged, info.references.clone(), info.deriver.clone())
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Unpacks the compressed archive read from `compressed` (at `url`) at
/// `dest`, checking it against `info` (read from `narinfo_url`): reading
/// stops as soon as the file passes its `FileSize` or the archive its
/// `NarSize`, and the hashes and sizes must match exactly. On error, `dest`
/// does not exist.
fn unpack(
    info: &NarInfo,
    narinfo_url: &str,
    url: &str,
    compressed: impl Read,
    dest: &Path,
) -> std::result::Result<(), String> {
    let mut file_side = HashingReader::new(Limited::new(compressed, info.file_size), blake3::Hasher::new());
    let decoded: Box<dyn Read + '_> = match info.compression.as_str() {
        "xz" => Box::new(xz2::read::XzDecoder::new(&mut file_side)),
        "none" => Box::new(&mut file_side),
        other => return Err(format!("{url} uses compression '{other}', which mini does not read")),
    };
    let mut nar_side = HashingReader::new(Limited::new(decoded, info.nar_size), blake3::Hasher::new());
    // The archive's hash and size count any bytes after its end (which make the size wrong).
    let nar = nar::restore(&mut nar_side, dest)
        .map_err(|e| e.to_string())
        .and_then(|()| finish(&mut nar_side).map_err(|e| e.to_string()));
    let nar_exceeded = nar_side.get_ref().exceeded;
    drop(nar_side);
    // The rest of the file (at most its FileSize) is read even when the
    // archive was bad: a wrong file hash explains a bad archive best.
    let file = if nar_exceeded { None } else { Some(finish(&mut file_side).map_err(|e| e.to_string())) };

    let oversized = |what: &str, thing: &str, declared: u64| {
        format!(
            "{url} is refused: the {thing} is larger than the {what} of {declared} bytes that {narinfo_url} \
             declares, so the cache is corrupt or hostile; reading stopped there and nothing was kept"
        )
    };
    let corrupt = |what: &str, expected: String, got: String| {
        format!("{url} is corrupt or was tampered with: its {what} is {got}, but {narinfo_url} says {expected}")
    };
    let checked = match (nar, file) {
        _ if file_side.get_ref().exceeded => Err(oversized("FileSize", "downloaded file", info.file_size)),
        (_, None) => Err(oversized("NarSize", "unpacked archive", info.nar_size)),
        (_, Some(Err(e))) => Err(format!("cannot download {url}: {e}")),
        (_, Some(Ok((_, file_size)))) if file_size != info.file_size => {
            Err(corrupt("FileSize", info.file_size.to_string(), file_size.to_string()))
        }
        (_, Some(Ok((file_hash, _)))) if file_hash != info.file_hash => {
            Err(corrupt("FileHash", nar_hash_text(&info.file_hash), nar_hash_text(&file_hash)))
        }
        (Err(e), _) => Err(format!("cannot unpack {url}: {e}")),
        (Ok((_, nar_size)), _) if nar_size != info.nar_size => {
            Err(corrupt("NarSize", info.nar_size.to_string(), nar_size.to_string()))
        }
        (Ok((nar_hash, _)), _) if nar_hash != info.nar_hash => {
            Err(corrupt("NarHash", nar_hash_text(&info.nar_hash), nar_hash_text(&nar_hash)))
        }
        (Ok(_), _) => Ok(()),
    };
    if checked.is_err() && std::fs::symlink_metadata(dest).is_ok() {
        discard_tree(dest);
    }
    checked
}

impl mini_build::Substituter for BinaryCaches {
    fn has(&self, path: &StorePath) -> bool {
        matches!(self.lookup(path), Lookup::Found(..))
    }

    fn substitute(&self, store: &Store, path: &StorePath) -> std::result::Result<bool, String> {
        self.substitute_locked(store, path)
    }
}

#[cfg(test)]
mod tests {
    use mini_store::testing::{snapshot, Rng, Scratch};
    use std::cell::Cell;
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::Write;
    use std::rc::Rc;

    use mini_store::nar::Node;

    use super::*;

    /// Counts the bytes read through it.
    struct Counting<R>(R, Rc<Cell<u64>>);

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.set(self.1.get() + n as u64);
            Ok(n)
        }
    }

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = xz2::write::XzEncoder::new(Vec::new(), 1);
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// The archive of `node`, and a narinfo that tells the truth about it compressed as `compression`.
    fn cached(node: &Node, compression: &str) -> (NarInfo, Vec<u8>) {
        let mut nar = Vec::new();
        nar::encode(node, &mut nar).unwrap();
        let file = if compression == "xz" { xz(&nar) } else { nar.clone() };
        let info = NarInfo {
            store_path: mini_store::store_path::StorePath::parse("/mini/store/00000000000000000000000000000000-x")
                .unwrap(),
            url: "nar/x.nar.xz".into(),
            compression: compression.into(),
            file_hash: *blake3::hash(&file).as_bytes(),
            file_size: file.len() as u64,
            nar_hash: *blake3::hash(&nar).as_bytes(),
            nar_size: nar.len() as u64,
            references: BTreeSet::new(),
            deriver: None,
            sigs: Vec::new(),
        };
        (info, file)
    }

    fn zeros(len: usize) -> Node {
        Node::Regular { executable: false, contents: vec![0; len] }
    }

    #[test]
    fn an_honest_archive_unpacks() {
        let s = Scratch::new("honest");
        let tree = Node::Directory(BTreeMap::from([(b"f".to_vec(), zeros(10)), (b"l".to_vec(), link(b"f"))]));
        for compression in ["xz", "none"] {
            let (info, file) = cached(&tree, compression);
            let dest = s.0.join(compression);
            unpack(&info, "c/x.narinfo", "c/nar/x", file.as_slice(), &dest).unwrap();
            assert_eq!(std::fs::read(dest.join("f")).unwrap(), vec![0; 10]);
        }
    }

    #[test]
    fn an_archive_larger_than_its_nar_size_is_refused_while_reading() {
        let s = Scratch::new("bomb");
        let dest = s.0.join("out");
        // 64 MiB of zeros: a few kilobytes of xz.
        let (mut info, file) = cached(&zeros(64 << 20), "xz");
        assert!(file.len() < 64 << 10);
        info.nar_size = 4096;
        let err = unpack(&info, "file:///c/x.narinfo", "file:///c/nar/x", file.as_slice(), &dest).unwrap_err();
        assert!(err.contains("larger than the NarSize of 4096 bytes that file:///c/x.narinfo declares"), "{err}");
        assert!(std::fs::symlink_metadata(&dest).is_err(), "{dest:?} left behind");

        let (mut info, file) = cached(&zeros(10 << 20), "none");
        info.nar_size = 4096;
        let read = Rc::new(Cell::new(0));
        let err = unpack(&info, "n", "u", Counting(file.as_slice(), read.clone()), &dest).unwrap_err();
        assert!(err.contains("NarSize"), "{err}");
        assert!(read.get() <= 4097, "read {} bytes past a NarSize of 4096", read.get());
        assert!(std::fs::symlink_metadata(&dest).is_err());
    }

    #[test]
    fn a_file_larger_than_its_file_size_is_refused_while_reading() {
        let s = Scratch::new("file-size");
        let dest = s.0.join("out");
        for compression in ["xz", "none"] {
            let (mut info, file) = cached(&zeros(1 << 20), compression);
            info.file_size = 100;
            let read = Rc::new(Cell::new(0));
            let err = unpack(&info, "c/x.narinfo", "u", Counting(file.as_slice(), read.clone()), &dest).unwrap_err();
            assert!(err.contains("larger than the FileSize of 100 bytes that c/x.narinfo declares"), "{err}");
            assert!(read.get() <= 101, "{compression}: read {} bytes", read.get());
            assert!(std::fs::symlink_metadata(&dest).is_err());
        }
        // Smaller than declared, or with different bytes: refused after reading.
        let (mut info, file) = cached(&zeros(100), "xz");
        info.file_size += 1;
        assert!(unpack(&info, "n", "u", file.as_slice(), &dest).unwrap_err().contains("its FileSize is"));
        let (mut info, file) = cached(&zeros(100), "none");
        info.nar_hash = [7; 32];
        assert!(unpack(&info, "n", "u", file.as_slice(), &dest).unwrap_err().contains("its NarHash is"));
        assert!(std::fs::symlink_metadata(&dest).is_err());
    }

    fn link(target: &[u8]) -> Node {
        Node::Symlink { target: target.to_vec() }
    }

    /// Random trees with links aimed outside, mutated (bytes flipped,
    /// cut short, spliced), compressed or not, under narinfos that lie
    /// about sizes or not: nothing is written outside the destination, a
    /// refusal leaves nothing, and nothing panics.
    #[test]
    fn unpacking_random_archives_stays_inside_its_destination() {
        let s = Scratch::new("fuzz");
        let sentinel = s.0.join("sentinel");
        std::fs::create_dir_all(sentinel.join("inner")).unwrap();
        std::fs::write(sentinel.join("keep.txt"), "keep").unwrap();
        let before = snapshot(&sentinel);
        let dest = s.0.join("dest");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15_u64);
        let mut next = |n: u64| rng.below(n);
        let targets: [&[u8]; 5] = [sentinel.as_os_str().as_encoded_bytes(), b"../sentinel", b"..", b"/", b"a/b"];
        let names: [&[u8]; 5] = [b"a", b"b", b"keep.txt", b"sentinel", b"inner"];
        let (mut unpacked, mut refused) = (0, 0);
        for case in 0..300 {
            let mut tree = BTreeMap::new();
            for _ in 0..next(5) {
                let node = match next(3) {
                    0 => link(targets[next(5) as usize]),
                    1 => zeros(next(64) as usize),
                    _ => Node::Directory(BTreeMap::from([(b"a".to_vec(), link(targets[next(5) as usize]))])),
                };
                tree.insert(names[next(5) as usize].to_vec(), node);
            }
            let compression = if next(2) == 0 { "xz" } else { "none" };
            let (mut info, mut file) = cached(&Node::Directory(tree), compression);
            match next(8) {
                0 => info.nar_size = next(info.nar_size + 1),
                1 => info.file_size = next(info.file_size + 1),
                2 => file.truncate(next(file.len() as u64) as usize),
                3 | 4 => {
                    for _ in 0..1 + next(3) {
                        let at = next(file.len() as u64) as usize;
                        file[at] ^= 1 << next(8);
                    }
                }
                5 => {
                    let at = next(file.len() as u64) as usize;
                    let copy = file[at..].to_vec();
                    file.truncate(at + next(copy.len() as u64) as usize);
                    file.extend_from_slice(&copy);
                }
                _ => {}
            }
            let ok = match std::panic::catch_unwind(|| unpack(&info, "n", "u", file.as_slice(), &dest)) {
                Ok(Ok(())) => true,
                Ok(Err(_)) => {
                    assert!(std::fs::symlink_metadata(&dest).is_err(), "case {case}: a refusal left {dest:?}");
                    false
                }
                Err(_) => panic!("case {case}: unpacking panicked"),
            };
            (unpacked, refused) = if ok { (unpacked + 1, refused) } else { (unpacked, refused + 1) };
            assert_eq!(snapshot(&sentinel), before, "case {case}: the sentinel changed");
            let beside = std::fs::read_dir(&s.0).unwrap().count();
            assert_eq!(beside, 1 + usize::from(ok), "case {case}: something appeared beside the destination");
            let _ = std::fs::remove_dir_all(&dest);
        }
        assert!(unpacked > 30 && refused > 30, "both outcomes reached: {unpacked} / {refused}");
    }
}
