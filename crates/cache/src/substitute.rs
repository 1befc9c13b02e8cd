//! Substitution: supplying store paths from binary caches instead of
//! building them. A path is taken only from a narinfo signed by a trusted
//! key, and registered only once the download matched the narinfo's file
//! hash and size and the unpacked archive its archive hash and size.
//! References are substituted first, so the store stays closed under them.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Mutex;

use mini_store::archive;
use mini_store::store::{discard_tree, nar_hash_text, Store};
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

/// Hashes and counts what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing { inner, hasher: blake3::Hasher::new(), len: 0 }
    }

    /// Reads what is left, then the hash and length of everything read.
    fn finish(&mut self) -> io::Result<([u8; 32], u64)> {
        io::copy(self, &mut io::sink())?;
        Ok((*self.hasher.finalize().as_bytes(), self.len))
    }
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
        for reference in info.references.iter().filter(|r| *r != path && !store.is_valid(r)) {
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
    fn fetch(
        &self,
        store: &Store,
        remote: &Remote,
        info: &NarInfo,
        staging: &std::path::Path,
    ) -> std::result::Result<(), String> {
        let url = remote.url_of(&info.url);
        let reader = remote.open(&info.url).map_err(|e| e.to_string())?.ok_or_else(|| format!("{url} is missing"))?;
        let mut file_side = Hashing::new(reader);
        let staged = staging.join("out");
        let unpacked = match info.compression.as_str() {
            "xz" => restore_checked(xz2::read::XzDecoder::new(&mut file_side), &staged),
            "none" => restore_checked(&mut file_side, &staged),
            other => return Err(format!("{url} uses compression '{other}', which mini does not read")),
        };
        let (file_hash, file_size) = file_side.finish().map_err(|e| format!("cannot download {url}: {e}"))?;
        let corrupt = |what: &str, expected: String, got: String| {
            format!("{url} is corrupt or was tampered with: its {what} is {got}, but the narinfo says {expected}")
        };
        if file_size != info.file_size {
            return Err(corrupt("FileSize", info.file_size.to_string(), file_size.to_string()));
        }
        if file_hash != info.file_hash {
            return Err(corrupt("FileHash", nar_hash_text(&info.file_hash), nar_hash_text(&file_hash)));
        }
        let (nar_hash, nar_size) = unpacked.map_err(|e| format!("cannot unpack {url}: {e}"))?;
        if nar_size != info.nar_size {
            return Err(corrupt("NarSize", info.nar_size.to_string(), nar_size.to_string()));
        }
        if nar_hash != info.nar_hash {
            return Err(corrupt("NarHash", nar_hash_text(&info.nar_hash), nar_hash_text(&nar_hash)));
        }
        store
            .install(&info.store_path, &staged, info.references.clone(), info.deriver.clone())
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Restores the archive read from `nar` at `dest`: its hash and size,
/// counting any bytes after the archive (which make the size wrong).
fn restore_checked(nar: impl Read, dest: &std::path::Path) -> std::result::Result<([u8; 32], u64), String> {
    let mut nar_side = Hashing::new(nar);
    archive::restore(&mut nar_side, dest).map_err(|e| e.to_string())?;
    nar_side.finish().map_err(|e| e.to_string())
}

impl mini_build::Substituter for BinaryCaches {
    fn has(&self, path: &StorePath) -> bool {
        matches!(self.lookup(path), Lookup::Found(..))
    }

    fn substitute(&self, store: &Store, path: &StorePath) -> std::result::Result<bool, String> {
        self.substitute_locked(store, path)
    }
}
