//! The store on disk: where paths physically live, their metadata, and the
//! rules that make them trustworthy.
//!
//! Layout under the physical root (`--store DIR`, `MINI_STORE`, or
//! `$XDG_DATA_HOME/mini`, else `~/.local/share/mini`):
//!
//! - `store/<hash>-<name>`: the files of each path, read-only, mtime 1;
//! - `db/<hash>.json`: one metadata record per valid path (its references,
//!   deriver, archive hash and size, registration time);
//! - `tmp/`: staging; a path is built here, then renamed into `store/`;
//! - `locks/<hash>.lock`: per-path locks, so concurrent `mini` processes never
//!   produce the same path twice at once (and `locks/gc.lock`);
//! - `gcroots/`: one symlink per out-link (such as `result`) that keeps a path
//!   alive; `temproots/<pid>`: paths a running process is using.
//!
//! Metadata is one small file per path written with an atomic rename rather
//! than a database engine: a record is exactly as valid as the rename that
//! made it, there is no shared file to corrupt, and it needs no dependency.
//!
//! A path is valid only once its record exists, and the record is written
//! only after the files are complete and synced. A process killed at any
//! moment leaves at worst an unregistered entry or staging directory, which
//! the next `open` removes.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::encoding::{nar_hash_text, parse_nar_hash};
use crate::nar::{self, NarError, PathFilter};
use crate::store_path::{PathKind, StorePath, StorePathError};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{action} '{}': {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error(transparent)]
    Nar(#[from] NarError),
    #[error(transparent)]
    Path(#[from] StorePathError),
    #[error("the metadata of {path} is unreadable: {message}")]
    BadRecord { path: String, message: String },
    #[error("{path} is not a valid store path; evaluate the recipe again to write it")]
    NotValid { path: StorePath },
    #[error("the derivation {path} is unusable: {source}")]
    BadDerivation { path: StorePath, source: crate::derivation::DerivationError },
}

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_path_buf(), source }
}

/// What the store knows about a valid path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    pub references: BTreeSet<StorePath>,
    pub deriver: Option<StorePath>,
    /// BLAKE3 of the path's canonical archive.
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
    /// Seconds since the epoch: the only time the store records anywhere.
    pub registration_time: u64,
}

impl PathInfo {
    /// The path as `mini path-info --json` shows it, with the closure's size
    /// when asked for: `{"path","narHash","narSize","references","deriver"
    /// [,"closureSize"]}`, references sorted.
    pub fn to_json(&self, closure_size: Option<u64>) -> String {
        let refs: Vec<String> = self.references.iter().map(|r| format!("\"{r}\"")).collect();
        let deriver = self.deriver.as_ref().map_or("null".to_string(), |d| format!("\"{d}\""));
        let closure = closure_size.map_or(String::new(), |s| format!(",\"closureSize\":{s}"));
        format!(
            "{{\"path\":\"{}\",\"narHash\":\"{}\",\"narSize\":{},\"references\":[{}],\"deriver\":{deriver}{closure}}}",
            self.path,
            nar_hash_text(&self.nar_hash),
            self.nar_size,
            refs.join(",")
        )
    }
}

/// A problem `verify` found; its `Display` is the line `mini store verify`
/// prints, [`Problem::to_json`] the object of `--json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Registered, but its files are gone.
    Missing(StorePath),
    /// Registered, but its files no longer hash to the recorded archive hash.
    Modified(StorePath),
    /// A valid path refers to one that is not valid: its closure is broken.
    MissingReference { path: StorePath, reference: StorePath },
    /// A record that cannot be read.
    BadRecord(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing(path) => write!(f, "missing: {path}"),
            Problem::Modified(path) => write!(f, "modified: {path}"),
            Problem::MissingReference { path, reference } => {
                write!(f, "{path} refers to {reference}, which is missing")
            }
            Problem::BadRecord(what) => write!(f, "unreadable record: {what}"),
        }
    }
}

impl Problem {
    /// `{"problem": "missing" | "modified" | "missing reference" |
    /// "unreadable record", "path": …[, "reference": …]}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Problem::Missing(path) => serde_json::json!({ "problem": "missing", "path": path.to_string() }),
            Problem::Modified(path) => serde_json::json!({ "problem": "modified", "path": path.to_string() }),
            Problem::MissingReference { path, reference } => serde_json::json!({
                "problem": "missing reference", "path": path.to_string(), "reference": reference.to_string()
            }),
            Problem::BadRecord(what) => serde_json::json!({ "problem": "unreadable record", "path": what }),
        }
    }
}

/// The longest `.drv` [`Store::read_derivation`] reads: far above any
/// real derivation, and a bound on what a tampered one can make mini hold.
pub const MAX_DERIVATION: u64 = 64 << 20;

static OPENS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A store rooted at a physical directory. Cloning copies the handle;
/// it does not open the store again.
#[derive(Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Where the store lives when nothing says otherwise: `$MINI_STORE`, else
    /// `$XDG_DATA_HOME/mini`, else `~/.local/share/mini`. All writable by an
    /// unprivileged user; builds see it at `/mini/store` whatever it is.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("MINI_STORE") {
            return PathBuf::from(dir);
        }
        if let Some(data) = std::env::var_os("XDG_DATA_HOME") {
            return PathBuf::from(data).join("mini");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".local/share/mini")
    }

    /// Opens (creating if needed) the store at `root`, and removes what a
    /// killed process may have left half-made.
    pub fn open(root: &Path) -> Result<Store> {
        OPENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Absolute, because out-links and sandboxes point into it from
        // elsewhere.
        let root = std::path::absolute(root).map_err(io_err("resolving", root))?;
        let store = Store { root: root.clone() };
        for dir in ["store", "db", "tmp", "locks", "gcroots", "temproots"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(io_err("creating", &d))?;
        }
        store.clean_leftovers()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The physical directory holding the store paths themselves (what
    /// builds and images see as [`crate::STORE_DIR`]). The one place that
    /// knows the folder layout under [`Store::root`].
    pub fn store_dir(&self) -> PathBuf {
        Store::store_dir_of(&self.root)
    }

    /// [`Store::store_dir`] of the store rooted at `root`, which need not
    /// exist or be opened (to resolve a user's path that may lead into it).
    pub fn store_dir_of(root: &Path) -> PathBuf {
        root.join("store")
    }

    /// How many times this process has opened a store: one per command,
    /// which `MINI_COUNT_STORE_OPENS=1` makes the CLI report.
    pub fn opens() -> usize {
        OPENS.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The derivation stored at `drv_path`, which must be valid and still
    /// give its own store path (a `.drv` edited in place is refused). The
    /// one `.drv` reader: it never follows a link put in the `.drv`'s place,
    /// and reads at most [`MAX_DERIVATION`] bytes.
    pub fn read_derivation(&self, drv_path: &StorePath) -> Result<crate::derivation::Derivation> {
        self.read_derivation_text(drv_path).map(|(derivation, _)| derivation)
    }

    /// [`Store::read_derivation`], with the checked text as stored (what
    /// `mini derivation show` prints).
    pub fn read_derivation_text(&self, drv_path: &StorePath) -> Result<(crate::derivation::Derivation, String)> {
        use std::os::unix::fs::OpenOptionsExt;
        if !self.is_valid(drv_path) {
            return Err(StoreError::NotValid { path: drv_path.clone() });
        }
        let file = self.physical_path(drv_path);
        let opened = fs::OpenOptions::new()
            .read(true)
            .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
            .open(&file)
            .map_err(io_err("reading", &file))?;
        let not_a_file = || io::Error::new(io::ErrorKind::InvalidData, "not a regular file");
        if !opened.metadata().map_err(io_err("reading", &file))?.is_file() {
            return Err(io_err("reading", &file)(not_a_file()));
        }
        let mut text = String::new();
        opened.take(MAX_DERIVATION + 1).read_to_string(&mut text).map_err(io_err("reading", &file))?;
        if text.len() as u64 > MAX_DERIVATION {
            let long = io::Error::new(io::ErrorKind::InvalidData, format!("longer than {MAX_DERIVATION} bytes"));
            return Err(io_err("reading", &file)(long));
        }
        let derivation = crate::derivation::Derivation::from_stored(drv_path, &text)
            .map_err(|source| StoreError::BadDerivation { path: drv_path.clone(), source })?;
        Ok((derivation, text))
    }

    /// Where the files of `path` physically are.
    pub fn physical_path(&self, path: &StorePath) -> PathBuf {
        self.store_dir().join(path.base_name())
    }

    fn record_path(&self, path: &StorePath) -> PathBuf {
        self.root.join("db").join(format!("{}.json", path.hash_part()))
    }

    pub fn is_valid(&self, path: &StorePath) -> bool {
        self.record_path(path).exists()
    }

    /// The metadata of a valid path, or `None` if the path is not valid.
    pub fn query(&self, path: &StorePath) -> Result<Option<PathInfo>> {
        let record = self.record_path(path);
        let text = match fs::read_to_string(&record) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &record)(e)),
        };
        parse_record(&text).map(Some).map_err(|message| StoreError::BadRecord { path: path.to_string(), message })
    }

    /// Adds a file or directory tree as a source path named `name`. Adding
    /// the same content again is free and gives the same path.
    pub fn add_path(&self, source: &Path, name: &str) -> Result<StorePath> {
        self.add_path_reporting(source, name).map(|(path, _)| path)
    }

    /// [`Store::add_path`], also saying whether this call did the copying
    /// (false when the path was already valid, or another process made it).
    pub fn add_path_reporting(&self, source: &Path, name: &str) -> Result<(StorePath, bool)> {
        self.add_path_filtered(source, name, nar::KEEP_ALL)
    }

    /// [`Store::add_path_reporting`] of only the entries of `source` that
    /// `filter` keeps: the path is the one adding a copy of `source` without
    /// the others would give.
    pub fn add_path_filtered(&self, source: &Path, name: &str, filter: PathFilter) -> Result<(StorePath, bool)> {
        let (hash, _) = nar::hash_path_filtered(source, filter)?;
        let path = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", hash.as_bytes(), name)?;
        self.add_temp_root(&path)?;
        if self.is_valid(&path) {
            return Ok((path, false));
        }
        let _lock = self.lock(&path)?;
        if self.is_valid(&path) {
            return Ok((path, false));
        }
        let staged = self.stage_copy(source, filter)?;
        self.install(&path, &staged, BTreeSet::new(), None)?;
        Ok((path, true))
    }

    /// Adds a text file (such as a derivation) that refers to `references`.
    pub fn add_text(&self, name: &str, text: &str, references: &BTreeSet<StorePath>) -> Result<StorePath> {
        let staged = self.staging_dir()?;
        let file = staged.join("file");
        write_synced(&file, text.as_bytes())?;
        let (hash, _) = nar::hash_path(&file)?;
        let refs: Vec<StorePath> = references.iter().cloned().collect();
        let path = StorePath::compute(&PathKind::Text { references: &refs }, "blake3", hash.as_bytes(), name)?;
        self.add_temp_root(&path)?;
        let _lock = self.lock(&path)?;
        if self.is_valid(&path) {
            discard_tree(&staged);
            return Ok(path);
        }
        self.install(&path, &file, references.clone(), None)?;
        discard_tree(&staged);
        Ok(path)
    }

    /// Adds many small text files (such as all the derivations of one
    /// evaluation) with one flush to disk for the lot instead of one each.
    /// Their paths are computed in memory, so nothing needs a lock: two
    /// writers of the same path write the same bytes and rename atomically.
    pub fn add_texts(&self, items: &[TextFile]) -> Result<Vec<StorePath>> {
        let mut paths = Vec::with_capacity(items.len());
        for item in items {
            let refs: Vec<StorePath> = item.references.iter().cloned().collect();
            let digest = crate::derivation::text_file_digest(&item.text);
            paths.push(StorePath::compute(
                &PathKind::Text { references: &refs },
                "blake3",
                digest.as_bytes(),
                &item.name,
            )?);
        }
        self.add_temp_roots(&paths)?;
        let staging = self.staging_dir()?;
        let mut fresh = Vec::new();
        for (item, path) in items.iter().zip(&paths) {
            if self.is_valid(path) || fresh.iter().any(|(p, _, _): &(StorePath, _, _)| p == path) {
                continue;
            }
            let file = staging.join(path.hash_part());
            write_store_file(&file, item.text.as_bytes())?;
            let target = self.physical_path(path);
            fs::rename(&file, &target).map_err(io_err("moving into the store", &target))?;
            let (hash, size) = text_archive_digest(&item.text);
            let record_tmp = staging.join(format!("{}.json", path.hash_part()));
            let info = PathInfo {
                path: path.clone(),
                references: item.references.clone(),
                deriver: None,
                nar_hash: hash,
                nar_size: size,
                registration_time: now_secs(),
            };
            fs::write(&record_tmp, render_record(&info)).map_err(io_err("writing", &record_tmp))?;
            fresh.push((path.clone(), record_tmp, info));
        }
        if !fresh.is_empty() {
            // Files and records durable first, then the records published.
            sync_filesystem(&staging)?;
            for (path, record_tmp, _) in &fresh {
                let record = self.record_path(path);
                fs::rename(record_tmp, &record).map_err(io_err("registering", &record))?;
            }
            sync_dir(&self.root.join("db"))?;
        }
        discard_tree(&staging);
        Ok(paths)
    }

    /// Records paths this process is about to use, in one write. Write the
    /// roots first and check validity after ([`Store::hold`]): a path valid
    /// once it is rooted stays valid until this process exits.
    pub fn add_temp_roots(&self, paths: &[StorePath]) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        // A GC holds `gc.lock` exclusively from reading the temporary roots
        // until its last deletion, so this write lands either before it reads
        // them (and the GC keeps the paths) or after it is done.
        let _gc = self.lock_file_shared("gc.lock")?;
        let file_path = self.root.join("temproots").join(std::process::id().to_string());
        let mut file =
            File::options().create(true).append(true).open(&file_path).map_err(io_err("opening", &file_path))?;
        // Readable by a GC run by another user of the store, whatever the
        // umask (best effort: the GC refuses to run on roots it cannot read).
        let _ = file.set_permissions(fs::Permissions::from_mode(0o644));
        let text: String = paths.iter().map(|p| format!("{p}\n")).collect();
        file.write_all(text.as_bytes()).map_err(io_err("writing", &file_path))
    }

    /// Adds a tree the caller built in one of this store's staging
    /// directories ([`Store::staging_dir`]) as a source path named `name`,
    /// moving it into place instead of copying it. The path is the one
    /// [`Store::add_path`] of the same tree gives. The staged tree is
    /// consumed either way.
    pub fn add_staged_source(&self, staged: &Path, name: &str) -> Result<StorePath> {
        normalise_tree(staged)?;
        let (hash, size) = nar::hash_path(staged)?;
        let path = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", hash.as_bytes(), name)?;
        self.add_temp_root(&path)?;
        if !self.is_valid(&path) {
            let _lock = self.lock(&path)?;
            if !self.is_valid(&path) {
                self.install_normalised(&path, staged, (hash, size), BTreeSet::new(), None)?;
                return Ok(path);
            }
        }
        discard_tree(staged);
        Ok(path)
    }

    /// Moves a finished tree at `staged` into place as `path` and registers
    /// it. The caller holds `path`'s lock.
    pub fn install(
        &self,
        path: &StorePath,
        staged: &Path,
        references: BTreeSet<StorePath>,
        deriver: Option<StorePath>,
    ) -> Result<PathInfo> {
        normalise_tree(staged)?;
        let hashed = nar::hash_path(staged)?;
        self.install_normalised(path, staged, hashed, references, deriver)
    }

    /// [`Store::install`] of a single regular file whose archive hash and
    /// size its writer computed from the bytes as it wrote them
    /// ([`nar::FileHasher`]), so that a large output is not read again.
    /// The file's type and length are checked against them.
    pub fn install_hashed(
        &self,
        path: &StorePath,
        staged: &Path,
        (hash, size): (blake3::Hash, u64),
        references: BTreeSet<StorePath>,
        deriver: Option<StorePath>,
    ) -> Result<PathInfo> {
        normalise_tree(staged)?;
        let meta = fs::symlink_metadata(staged).map_err(io_err("reading", staged))?;
        let executable = meta.permissions().mode() & 0o111 != 0;
        if !meta.is_file() || nar::FileHasher::archive_len(executable, meta.len()) != size {
            return Err(io_err("registering", staged)(io::Error::other("the file is not what its writer hashed")));
        }
        self.install_normalised(path, staged, (hash, size), references, deriver)
    }

    /// [`Store::install`] of a tree already normalised, whose archive hash
    /// and size are `hashed`.
    fn install_normalised(
        &self,
        path: &StorePath,
        staged: &Path,
        (hash, size): (blake3::Hash, u64),
        references: BTreeSet<StorePath>,
        deriver: Option<StorePath>,
    ) -> Result<PathInfo> {
        sync_tree(staged)?;
        let target = self.physical_path(path);
        if fs::symlink_metadata(&target).is_ok() {
            // An unregistered leftover of a killed process: ours to replace.
            discard_tree(&target);
        }
        // Moving a directory to a new parent rewrites its `..` entry, which
        // needs write access to it unless the caller is root.
        let is_dir = fs::symlink_metadata(staged).map_err(io_err("reading", staged))?.is_dir();
        if is_dir {
            fs::set_permissions(staged, fs::Permissions::from_mode(0o755)).map_err(io_err("preparing", staged))?;
        }
        fs::rename(staged, &target).map_err(io_err("moving into the store", &target))?;
        if is_dir {
            fs::set_permissions(&target, fs::Permissions::from_mode(0o555)).map_err(io_err("sealing", &target))?;
        }
        sync_dir(&self.store_dir())?;
        let info = PathInfo {
            path: path.clone(),
            references,
            deriver,
            nar_hash: *hash.as_bytes(),
            nar_size: size,
            registration_time: now_secs(),
        };
        self.write_record(&info)?;
        Ok(info)
    }

    fn write_record(&self, info: &PathInfo) -> Result<()> {
        let record = self.record_path(&info.path);
        let tmp = self.root.join("tmp").join(format!("{}.json.{}", info.path.hash_part(), std::process::id()));
        write_synced(&tmp, render_record(info).as_bytes())?;
        fs::rename(&tmp, &record).map_err(io_err("registering", &record))?;
        sync_dir(&self.root.join("db"))
    }

    /// Takes the lock of `path`, waiting for another process to finish it.
    pub fn lock(&self, path: &StorePath) -> Result<PathLock> {
        self.lock_file(&format!("{}.lock", path.hash_part()))
    }

    /// Takes the lock `locks/<name>`, waiting for its holder.
    fn lock_file(&self, name: &str) -> Result<PathLock> {
        let file_path = self.root.join("locks").join(name);
        let file = open_lock_file(&file_path).map_err(io_err("opening the lock", &file_path))?;
        file.lock().map_err(io_err("locking", &file_path))?;
        Ok(PathLock { _file: file })
    }

    /// Takes `locks/<name>` shared: it waits only for an exclusive holder.
    fn lock_file_shared(&self, name: &str) -> Result<PathLock> {
        let file_path = self.root.join("locks").join(name);
        let file = open_lock_file(&file_path).map_err(io_err("opening the lock", &file_path))?;
        file.lock_shared().map_err(io_err("locking", &file_path))?;
        Ok(PathLock { _file: file })
    }

    /// A fresh, empty directory under `tmp/`.
    pub fn staging_dir(&self) -> Result<PathBuf> {
        let tmp = self.root.join("tmp");
        for attempt in 0u32.. {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let dir = tmp.join(format!("stage-{}-{nanos}-{attempt}", std::process::id()));
            // Private: a build's root is assembled in it, and what a builder
            // leaves there must not be reachable by other users of the host.
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating", &dir)(e)),
            }
        }
        unreachable!("the loop returns or fails")
    }

    /// Copies what `filter` keeps of `source` into a staging directory
    /// through the canonical archive, so exactly what was hashed is what
    /// lands in the store.
    fn stage_copy(&self, source: &Path, filter: PathFilter) -> Result<PathBuf> {
        let staging = self.staging_dir()?;
        let dest = staging.join("tree");
        let (mut reader, mut writer) = io::pipe().map_err(io_err("creating a pipe for", source))?;
        let (dumped, restored) = std::thread::scope(|scope| {
            let dumper = scope.spawn(move || {
                let result = nar::dump_path_filtered(source, filter, &mut writer);
                drop(writer);
                result
            });
            let restored = nar::restore(&mut reader, &dest);
            // A failed restore stops reading: the dumper must not wait on a full pipe.
            drop(reader);
            (dumper.join(), restored)
        });
        let dumped = dumped.map_err(|_| StoreError::Io {
            action: "archiving",
            path: source.to_path_buf(),
            source: io::Error::other("the archiving thread panicked"),
        })?;
        dumped?;
        restored?;
        // Move the tree up so the staging directory itself is the tree.
        let tree = self.staging_dir()?;
        fs::remove_dir(&tree).map_err(io_err("preparing", &tree))?;
        fs::rename(&dest, &tree).map_err(io_err("staging", &tree))?;
        discard_tree(&staging);
        Ok(tree)
    }

    /// Removes staging leftovers, and store entries nobody registered
    /// (a process died between moving files in and writing the record).
    fn clean_leftovers(&self) -> Result<()> {
        let temproots = self.root.join("temproots");
        for entry in fs::read_dir(&temproots).map_err(io_err("reading", &temproots))?.flatten() {
            if !owner_is_alive(&entry.file_name().to_string_lossy()) {
                discard_tree(&entry.path());
            }
        }
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(io_err("reading", &tmp))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !owner_is_alive(&name) {
                discard_tree(&entry.path());
            }
        }
        // Roots another user's process made unreadable: leave every entry.
        let Ok(in_use) = self.live_temp_roots() else { return Ok(()) };
        let store = self.store_dir();
        for entry in fs::read_dir(&store).map_err(io_err("reading", &store))?.flatten() {
            let Ok(path) = StorePath::parse_base_name(&entry.file_name().to_string_lossy()) else { continue };
            if self.is_valid(&path) || in_use.contains(&path) {
                continue;
            }
            // Someone may be installing it right now: only take it if unlocked.
            let lock_path = self.root.join("locks").join(format!("{}.lock", path.hash_part()));
            if let Ok(file) = open_lock_file(&lock_path) {
                if file.try_lock().is_ok() && !self.is_valid(&path) {
                    discard_tree(&entry.path());
                }
            }
        }
        Ok(())
    }

    /// The metadata of each of `paths`, which must be valid.
    pub fn infos(&self, paths: &[StorePath]) -> Result<Vec<PathInfo>> {
        paths.iter().map(|p| self.require(p)).collect()
    }

    fn require(&self, path: &StorePath) -> Result<PathInfo> {
        self.query(path)?
            .ok_or_else(|| StoreError::BadRecord { path: path.to_string(), message: "not a valid path".into() })
    }

    /// The closure of `roots`: them and every path they refer to, directly
    /// or not, sorted by path.
    pub fn closure(&self, roots: &[StorePath]) -> Result<Vec<PathInfo>> {
        let mut seen: BTreeSet<StorePath> = BTreeSet::new();
        let mut todo: Vec<StorePath> = roots.to_vec();
        let mut infos = Vec::new();
        while let Some(path) = todo.pop() {
            if !seen.insert(path.clone()) {
                continue;
            }
            let info = self.require(&path)?;
            todo.extend(info.references.iter().filter(|r| !seen.contains(*r)).cloned());
            infos.push(info);
        }
        infos.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(infos)
    }

    /// The shortest chain of references from `from` to `to` (both included),
    /// or `None` if `from`'s closure does not contain `to`.
    pub fn why_depends(&self, from: &StorePath, to: &StorePath) -> Result<Option<Vec<StorePath>>> {
        let mut parent: std::collections::BTreeMap<StorePath, StorePath> = Default::default();
        let mut queue = std::collections::VecDeque::from([from.clone()]);
        let mut seen = BTreeSet::from([from.clone()]);
        while let Some(path) = queue.pop_front() {
            if &path == to {
                let mut chain = vec![path];
                while let Some(p) = parent.get(chain.last().expect("chain starts non-empty")) {
                    chain.push(p.clone());
                }
                chain.reverse();
                return Ok(Some(chain));
            }
            for r in self.require(&path)?.references {
                if seen.insert(r.clone()) {
                    parent.insert(r.clone(), path.clone());
                    queue.push_back(r);
                }
            }
        }
        Ok(None)
    }

    /// Every valid path.
    pub fn all_valid(&self) -> Result<Vec<StorePath>> {
        let db = self.root.join("db");
        let mut out = Vec::new();
        for entry in fs::read_dir(&db).map_err(io_err("reading", &db))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(text) = name.strip_suffix(".json").and_then(|_| fs::read_to_string(entry.path()).ok()) {
                if let Ok(info) = parse_record(&text) {
                    out.push(info.path);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Checks every valid path: present, every path it refers to valid, and
    /// (with `check_contents`) still hashing to its recorded archive hash.
    pub fn verify(&self, check_contents: bool) -> Result<Vec<Problem>> {
        let db = self.root.join("db");
        let mut problems = Vec::new();
        let mut entries: Vec<_> = fs::read_dir(&db).map_err(io_err("reading", &db))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        let mut infos = Vec::with_capacity(entries.len());
        for entry in entries {
            let text = fs::read_to_string(entry.path()).map_err(io_err("reading", &entry.path()))?;
            match parse_record(&text) {
                Ok(info) => infos.push(info),
                Err(message) => problems.push(Problem::BadRecord(format!("{}: {message}", entry.path().display()))),
            }
        }
        let valid: BTreeSet<&StorePath> = infos.iter().map(|i| &i.path).collect();
        for info in &infos {
            let physical = self.physical_path(&info.path);
            if fs::symlink_metadata(&physical).is_err() {
                problems.push(Problem::Missing(info.path.clone()));
            } else if check_contents {
                match nar::hash_path(&physical) {
                    Ok((hash, size)) if *hash.as_bytes() == info.nar_hash && size == info.nar_size => {}
                    _ => problems.push(Problem::Modified(info.path.clone())),
                }
            }
            for reference in info.references.iter().filter(|r| !valid.contains(r)) {
                problems.push(Problem::MissingReference { path: info.path.clone(), reference: reference.clone() });
            }
        }
        Ok(problems)
    }

    /// Makes `path` invalid and deletes its files (for repairs: GC does the
    /// same for each dead path). Nothing happens if it is neither.
    pub fn invalidate(&self, path: &StorePath) -> Result<()> {
        let _lock = self.lock(path)?;
        self.invalidate_locked(path)
    }

    /// [`Store::invalidate`]; the caller holds `path`'s lock. The record
    /// goes first, so no one ever sees a valid path without its files.
    fn invalidate_locked(&self, path: &StorePath) -> Result<()> {
        let record = self.record_path(path);
        match fs::remove_file(&record) {
            Ok(()) => sync_dir(&self.root.join("db"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("invalidating", &record)(e)),
        }
        let files = self.physical_path(path);
        discard_tree(&files);
        Ok(())
    }
}

/// What a garbage collection removed (or, dry, would remove).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcReport {
    pub deleted: Vec<StorePath>,
    /// Archive bytes of the deleted paths.
    pub bytes_freed: u64,
}

impl Store {
    /// Records a path this process is using, so a concurrent GC keeps it.
    /// Written before the path becomes valid, so a GC that sees the path
    /// also sees the root.
    pub fn add_temp_root(&self, path: &StorePath) -> Result<()> {
        self.add_temp_roots(std::slice::from_ref(path))
    }

    /// Makes `path` a temporary root of this process, then says whether it
    /// is valid: the way to start using a path already in the store, since
    /// a path found valid once rooted stays valid while this process runs.
    pub fn hold(&self, path: &StorePath) -> Result<bool> {
        self.add_temp_root(path)?;
        Ok(self.is_valid(path))
    }

    /// Makes `link` an out-link to `target` (pointing at its files) and a
    /// GC root: the path stays until the link is removed or changed.
    pub fn add_root(&self, link: &Path, target: &StorePath) -> Result<()> {
        let link = std::path::absolute(link).map_err(io_err("resolving", link))?;
        let physical = self.physical_path(target);
        let staged = link
            .with_file_name(format!(".{}.mini-tmp", link.file_name().map_or("link".into(), |n| n.to_string_lossy())));
        let _ = fs::remove_file(&staged);
        std::os::unix::fs::symlink(&physical, &staged).map_err(io_err("creating", &staged))?;
        fs::rename(&staged, &link).map_err(io_err("creating", &link))?;
        let entry = self.root.join("gcroots").join(blake3::hash(link.as_os_str().as_encoded_bytes()).to_hex().as_str());
        let _ = fs::remove_file(&entry);
        std::os::unix::fs::symlink(&link, &entry).map_err(io_err("registering the root", &entry))
    }

    /// The paths kept alive by out-links and by running processes. Roots
    /// whose link is gone or points elsewhere are dropped.
    pub fn roots(&self) -> Result<BTreeSet<StorePath>> {
        let mut roots = BTreeSet::new();
        let gcroots = self.root.join("gcroots");
        let store_dir = self.store_dir();
        for entry in fs::read_dir(&gcroots).map_err(io_err("reading", &gcroots))?.flatten() {
            let target = fs::read_link(entry.path()).and_then(fs::read_link).ok();
            let path = target
                .filter(|t| t.parent() == Some(store_dir.as_path()))
                .and_then(|t| t.file_name().and_then(|n| StorePath::parse_base_name(&n.to_string_lossy()).ok()));
            match path {
                Some(p) => {
                    roots.insert(p);
                }
                None => discard_tree(&entry.path()),
            }
        }
        roots.extend(self.live_temp_roots()?);
        Ok(roots)
    }

    /// Paths that running processes (this one included) said they use.
    fn live_temp_roots(&self) -> Result<BTreeSet<StorePath>> {
        let mut roots = BTreeSet::new();
        let temproots = self.root.join("temproots");
        for entry in fs::read_dir(&temproots).map_err(io_err("reading", &temproots))?.flatten() {
            if !owner_is_alive(&entry.file_name().to_string_lossy()) {
                continue;
            }
            // Roots that cannot be read would let a GC delete paths in use.
            let text = match fs::read_to_string(entry.path()) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("reading the temporary roots", &entry.path())(e)),
            };
            roots.extend(text.lines().filter_map(|l| StorePath::parse(l).ok()));
        }
        Ok(roots)
    }

    /// Deletes every valid path not reachable from the roots. Never deletes
    /// a live path: `gc.lock` is held from reading the roots to the last
    /// deletion, so no temporary root can be added in between
    /// ([`Store::add_temp_roots`]); each deletion first invalidates the
    /// record, under the path's lock; and paths made while the GC runs are
    /// not in its list.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport> {
        let _gc_lock = self.lock_file("gc.lock")?;
        let valid = self.all_valid()?;
        let live = self.reachable(self.roots()?)?;
        let mut report = GcReport::default();
        for path in valid.into_iter().filter(|p| !live.contains(p)) {
            let Some(info) = self.query(&path)? else { continue };
            if !dry_run {
                let _lock = self.lock(&path)?;
                self.invalidate_locked(&path)?;
            }
            report.bytes_freed += info.nar_size;
            report.deleted.push(path);
        }
        Ok(report)
    }

    /// `roots` and every path they refer to, directly or not, skipping
    /// paths that are not valid (a broken store still gets collected;
    /// `verify` reports what is broken).
    fn reachable(&self, roots: BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        let mut live = BTreeSet::new();
        let mut todo: Vec<StorePath> = roots.into_iter().collect();
        while let Some(path) = todo.pop() {
            if live.contains(&path) {
                continue;
            }
            if let Some(info) = self.query(&path)? {
                todo.extend(info.references.into_iter().filter(|r| !live.contains(r)));
            }
            live.insert(path);
        }
        Ok(live)
    }
}

/// A text file for [`Store::add_texts`].
#[derive(Debug, Clone)]
pub struct TextFile {
    pub name: String,
    pub text: String,
    pub references: BTreeSet<StorePath>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The archive digest and size of one regular file holding `text`.
fn text_archive_digest(text: &str) -> ([u8; 32], u64) {
    let mut hasher = blake3::Hasher::new();
    let file = nar::Node::Regular { executable: false, contents: text.as_bytes().to_vec() };
    let size = nar::encode(&file, &mut hasher).expect("hashing into memory cannot fail");
    (*hasher.finalize().as_bytes(), size)
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    File::options().create(true).truncate(false).write(true).open(path)
}

/// Held while a path is being produced; released on drop.
pub struct PathLock {
    _file: File,
}

/// Staging directories and temporary-root files are named with the owner's
/// pid; those of a live process (this one included: another thread may be
/// using them) stay.
fn owner_is_alive(name: &str) -> bool {
    let pid = name.split(['-', '.']).find_map(|part| part.parse::<u32>().ok());
    pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(io_err("creating", path))?;
    file.write_all(bytes).map_err(io_err("writing", path))?;
    file.sync_all().map_err(io_err("syncing", path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("syncing", dir))
}

/// Makes everything written under `path` durable before a rename publishes
/// it: one `syncfs` for the whole filesystem instead of an fsync per file,
/// which for a tree of 10 000 files is the difference between seconds and
/// a single flush.
fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(io_err("opening", path))?;
    rustix::fs::syncfs(&dir).map_err(|e| io_err("syncing the filesystem of", path)(e.into()))
}

/// Above this many entries, a tree is made durable with one `syncfs`
/// rather than an fsync each.
const FSYNC_EACH_UP_TO: usize = 64;

/// Makes the tree at `path` durable: a small tree (a typical build output,
/// a single large file) entry by entry, so unrelated dirty data elsewhere on
/// the filesystem (such as a freshly written layer cache) is not flushed
/// with it; a large tree with one `syncfs`.
fn sync_tree(path: &Path) -> Result<()> {
    let mut entries = Vec::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = fs::symlink_metadata(&p).map_err(io_err("reading", &p))?;
        if meta.is_dir() {
            for entry in fs::read_dir(&p).map_err(io_err("reading", &p))? {
                todo.push(entry.map_err(io_err("reading", &p))?.path());
            }
        }
        // A symlink cannot be synced by itself; its directory's sync covers it.
        if !meta.file_type().is_symlink() {
            entries.push(p);
        }
        if entries.len() + todo.len() > FSYNC_EACH_UP_TO {
            return sync_filesystem(path);
        }
    }
    for entry in entries {
        File::open(&entry).and_then(|f| f.sync_all()).map_err(io_err("syncing", &entry))?;
    }
    Ok(())
}

/// Creates a store file already normalised (0444, mtime 1) in as few
/// system calls as possible: many of these are written at once.
fn write_store_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        File::options().write(true).create_new(true).mode(0o444).open(path).map_err(io_err("creating", path))?;
    file.write_all(bytes).map_err(io_err("writing", path))?;
    file.set_modified(UNIX_EPOCH + Duration::from_secs(1)).map_err(io_err("setting the time of", path))
}

/// Store hygiene: files 0444 (0555 if executable), directories 0555, every
/// mtime (symlinks' too) 1 second after the epoch.
fn normalise_tree(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(io_err("reading", path))?;
    if meta.file_type().is_symlink() {
        // Symlinks have no mode to set, but they do have a time.
        let one = rustix::fs::Timespec { tv_sec: 1, tv_nsec: 0 };
        let times = rustix::fs::Timestamps { last_access: one, last_modification: one };
        return rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err("setting the time of", path)(e.into()));
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io_err("reading", path))? {
            normalise_tree(&entry.map_err(io_err("reading", path))?.path())?;
        }
    }
    let executable = meta.is_dir() || meta.permissions().mode() & 0o111 != 0;
    let mode = if executable { 0o555 } else { 0o444 };
    let one = UNIX_EPOCH + Duration::from_secs(1);
    let file = File::open(path).map_err(io_err("opening", path))?;
    file.set_modified(one).map_err(io_err("setting the time of", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("setting the mode of", path))
}

/// Removes a tree this process made, read-only parts included (a build's
/// scratch directory, a rejected output), never following a link in it:
/// see [`crate::teardown`]. Cleanup that fails leaves junk, never wrong data.
pub fn discard_tree(path: &Path) {
    let _ = crate::teardown::remove_tree(path);
}

fn render_record(info: &PathInfo) -> String {
    let refs: Vec<String> = info.references.iter().map(|r| format!("\"{r}\"")).collect();
    let deriver = info.deriver.as_ref().map_or("null".to_string(), |d| format!("\"{d}\""));
    format!(
        "{{\"deriver\":{deriver},\"narHash\":\"{}\",\"narSize\":{},\"path\":\"{}\",\"references\":[{}],\"registrationTime\":{}}}\n",
        nar_hash_text(&info.nar_hash),
        info.nar_size,
        info.path,
        refs.join(","),
        info.registration_time
    )
}

fn parse_record(text: &str) -> std::result::Result<PathInfo, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let field = |name: &str| v.get(name).ok_or_else(|| format!("no '{name}' field"));
    let path = StorePath::parse(field("path")?.as_str().ok_or("'path' is not a string")?).map_err(|e| e.to_string())?;
    let references = field("references")?
        .as_array()
        .ok_or("'references' is not a list")?
        .iter()
        .map(|r| {
            r.as_str()
                .ok_or("a reference is not a string".to_string())
                .and_then(|s| StorePath::parse(s).map_err(|e| e.to_string()))
        })
        .collect::<std::result::Result<BTreeSet<_>, _>>()?;
    let deriver = match field("deriver")? {
        serde_json::Value::Null => None,
        d => Some(StorePath::parse(d.as_str().ok_or("'deriver' is not a string")?).map_err(|e| e.to_string())?),
    };
    let nar_hash = field("narHash")?.as_str().and_then(parse_nar_hash).ok_or("'narHash' is not blake3:<hex>")?;
    let number = |name: &str| field(name).and_then(|n| n.as_u64().ok_or(format!("'{name}' is not a number")));
    Ok(PathInfo {
        path,
        references,
        deriver,
        nar_hash,
        nar_size: number("narSize")?,
        registration_time: number("registrationTime")?,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn problems_and_path_infos_read_as_the_cli_prints_them() {
        let (app, dep) =
            (crate::store_path::source_path_for_tests("app"), crate::store_path::source_path_for_tests("dep"));
        let broken = Problem::MissingReference { path: app.clone(), reference: dep.clone() };
        assert_eq!(broken.to_string(), format!("{app} refers to {dep}, which is missing"));
        assert_eq!(broken.to_json()["problem"], "missing reference");
        assert_eq!(Problem::Missing(dep.clone()).to_json()["path"], dep.to_string());
        let info = PathInfo {
            path: app.clone(),
            references: BTreeSet::from([dep.clone()]),
            deriver: None,
            nar_hash: [0; 32],
            nar_size: 120,
            registration_time: 1,
        };
        let json: serde_json::Value = serde_json::from_str(&info.to_json(Some(200))).unwrap();
        assert_eq!(json["references"][0], dep.to_string());
        assert_eq!((json["narSize"].as_u64(), json["closureSize"].as_u64()), (Some(120), Some(200)));
        assert!(json["deriver"].is_null() && json.get("registrationTime").is_none());
        assert!(!info.to_json(None).contains("closureSize"));
    }

    /// A scratch directory removed at the end of the test.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("mini-store-{name}-{}", std::process::id()));
            discard_tree(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            discard_tree(&self.0);
        }
    }

    fn sample_tree(at: &Path) {
        fs::create_dir_all(at.join("bin")).unwrap();
        fs::write(at.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(at.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(at.join("README"), "hello\n").unwrap();
        std::os::unix::fs::symlink("bin/tool", at.join("run")).unwrap();
    }

    #[test]
    fn adding_is_content_addressed_and_idempotent() {
        let s = Scratch::new("add");
        let store = Store::open(&s.0.join("root")).unwrap();
        sample_tree(&s.0.join("src"));
        let p1 = store.add_path(&s.0.join("src"), "sample").unwrap();
        let p2 = store.add_path(&s.0.join("src"), "sample").unwrap();
        assert_eq!(p1, p2);
        assert!(store.is_valid(&p1));
        let info = store.query(&p1).unwrap().unwrap();
        assert_eq!(info.path, p1);
        assert!(info.references.is_empty());
        let (hash, size) = nar::hash_path(&store.physical_path(&p1)).unwrap();
        assert_eq!((*hash.as_bytes(), size), (info.nar_hash, info.nar_size));
    }

    #[test]
    fn a_filtered_add_equals_adding_what_the_filter_keeps() {
        let s = Scratch::new("filtered");
        let store = Store::open(&s.0.join("root")).unwrap();
        sample_tree(&s.0.join("full"));
        fs::create_dir_all(s.0.join("full/target/debug")).unwrap();
        fs::write(s.0.join("full/target/debug/big"), "build output").unwrap();
        fs::write(s.0.join("full/bin/tool.log"), "noise").unwrap();
        // A socket, which could not be archived, is never looked at once excluded.
        let _socket = std::os::unix::net::UnixListener::bind(s.0.join("full/target/sock")).unwrap();
        sample_tree(&s.0.join("kept"));
        let filter = |rel: &Path, is_dir: bool| {
            assert!(rel.is_relative() && rel != Path::new(""), "{rel:?}");
            !(rel == Path::new("target") && is_dir) && rel.extension().is_none_or(|e| e != "log")
        };
        let (filtered, copied) = store.add_path_filtered(&s.0.join("full"), "sample", &filter).unwrap();
        assert!(copied);
        assert_eq!(filtered, store.add_path(&s.0.join("kept"), "sample").unwrap());
        let stored = store.physical_path(&filtered);
        assert!(stored.join("bin/tool").is_file() && !stored.join("target").exists());
        assert!(!stored.join("bin/tool.log").exists());
    }

    #[test]
    fn a_staged_tree_moves_in_as_the_path_adding_it_gives() {
        let s = Scratch::new("staged");
        let store = Store::open(&s.0.join("root")).unwrap();
        sample_tree(&s.0.join("src"));
        let staged = store.staging_dir().unwrap();
        sample_tree(&staged);
        let moved = store.add_staged_source(&staged, "sample").unwrap();
        assert!(!staged.exists(), "the staged tree was moved");
        assert_eq!(moved, Store::open(&s.0.join("other")).unwrap().add_path(&s.0.join("src"), "sample").unwrap());
        let meta = fs::symlink_metadata(store.physical_path(&moved).join("README")).unwrap();
        assert_eq!((meta.permissions().mode() & 0o7777, meta.mtime()), (0o444, 1));
        // Again: already valid, and the second staged copy is discarded.
        let again = store.staging_dir().unwrap();
        sample_tree(&again);
        assert_eq!(store.add_staged_source(&again, "sample").unwrap(), moved);
        assert!(!again.exists());
        assert_eq!(store.verify(true).unwrap(), []);
    }

    #[test]
    fn stored_files_are_read_only_with_mtime_one() {
        let s = Scratch::new("hygiene");
        let store = Store::open(&s.0.join("root")).unwrap();
        sample_tree(&s.0.join("src"));
        let p = store.add_path(&s.0.join("src"), "sample").unwrap();
        let root = store.physical_path(&p);
        for (rel, mode) in [("", 0o555), ("bin", 0o555), ("bin/tool", 0o555), ("README", 0o444)] {
            let meta = fs::symlink_metadata(root.join(rel)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, mode, "{rel}");
            assert_eq!(meta.mtime(), 1, "{rel}");
        }
        let link = fs::symlink_metadata(root.join("run")).unwrap();
        assert!(link.file_type().is_symlink());
        assert_eq!(link.mtime(), 1);
    }

    #[test]
    fn paths_do_not_depend_on_the_physical_root() {
        let s = Scratch::new("roots");
        sample_tree(&s.0.join("src"));
        let a = Store::open(&s.0.join("one")).unwrap().add_path(&s.0.join("src"), "sample").unwrap();
        let b = Store::open(&s.0.join("two/deeper")).unwrap().add_path(&s.0.join("src"), "sample").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn text_paths_depend_on_their_references() {
        let s = Scratch::new("text");
        let store = Store::open(&s.0.join("root")).unwrap();
        sample_tree(&s.0.join("src"));
        let dep = store.add_path(&s.0.join("src"), "dep").unwrap();
        let plain = store.add_text("note", "hello", &BTreeSet::new()).unwrap();
        let with_ref = store.add_text("note", "hello", &BTreeSet::from([dep.clone()])).unwrap();
        assert_ne!(plain, with_ref);
        assert_eq!(store.query(&with_ref).unwrap().unwrap().references, BTreeSet::from([dep.clone()]));
        let closure: Vec<StorePath> =
            store.closure(std::slice::from_ref(&with_ref)).unwrap().into_iter().map(|i| i.path).collect();
        let mut expected = vec![dep, with_ref];
        expected.sort();
        assert_eq!(closure, expected);
        assert_eq!(fs::read_to_string(store.physical_path(&plain)).unwrap(), "hello");
    }

    #[test]
    fn why_depends_finds_the_shortest_chain() {
        let s = Scratch::new("why");
        let store = Store::open(&s.0.join("root")).unwrap();
        let c = store.add_text("c", "leaf", &BTreeSet::new()).unwrap();
        let b = store.add_text("b", &format!("uses {c}"), &BTreeSet::from([c.clone()])).unwrap();
        let a = store.add_text("a", &format!("uses {b} and {c}"), &BTreeSet::from([b.clone(), c.clone()])).unwrap();
        assert_eq!(store.why_depends(&a, &c).unwrap(), Some(vec![a.clone(), c.clone()]));
        assert_eq!(store.why_depends(&b, &c).unwrap(), Some(vec![b.clone(), c.clone()]));
        assert_eq!(store.why_depends(&c, &a).unwrap(), None);
    }

    #[test]
    fn a_derivation_is_stored_at_its_computed_path() {
        use crate::derivation::{Derivation, Output};
        let s = Scratch::new("drv");
        let store = Store::open(&s.0.join("root")).unwrap();
        let src = store.add_text("builder.sh", "echo hi > $out", &BTreeSet::new()).unwrap();
        let mut drv = Derivation {
            name: "hello".into(),
            outputs: std::collections::BTreeMap::from([("out".to_string(), Output { path: None, fixed: None })]),
            input_drvs: Default::default(),
            input_srcs: BTreeSet::from([src.clone()]),
            system: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            args: vec![src.to_string()],
            env: Default::default(),
        };
        let modulo = drv.hash_modulo(&mut |_| unreachable!("no input derivations"));
        drv.fill_output_paths(modulo).unwrap();
        let stored = store.add_text("hello.drv", &drv.to_json(), &BTreeSet::from([src])).unwrap();
        assert_eq!(stored, drv.drv_path().unwrap());
    }

    #[test]
    fn batched_texts_match_single_adds() {
        let s = Scratch::new("batch");
        let store = Store::open(&s.0.join("root")).unwrap();
        let dep = store.add_text("dep", "d", &BTreeSet::new()).unwrap();
        let items: Vec<TextFile> = (0..50)
            .map(|i| TextFile {
                name: format!("t{i}"),
                text: format!("text {i} {dep}"),
                references: BTreeSet::from([dep.clone()]),
            })
            .collect();
        let batch = store.add_texts(&items).unwrap();
        let other = Store::open(&s.0.join("other")).unwrap();
        other.add_text("dep", "d", &BTreeSet::new()).unwrap();
        for (item, path) in items.iter().zip(&batch) {
            assert!(store.is_valid(path));
            assert_eq!(other.add_text(&item.name, &item.text, &item.references).unwrap(), *path);
        }
        assert_eq!(store.query(&batch[0]).unwrap().unwrap().references, BTreeSet::from([dep]));
        let meta = fs::metadata(store.physical_path(&batch[0])).unwrap();
        assert_eq!((meta.permissions().mode() & 0o7777, meta.mtime()), (0o444, 1));
        assert_eq!(store.verify(true).unwrap(), vec![]);
        assert_eq!(store.add_texts(&items).unwrap(), batch, "adding again changes nothing");
    }

    #[test]
    fn verify_reports_missing_and_modified_paths() {
        let s = Scratch::new("verify");
        let store = Store::open(&s.0.join("root")).unwrap();
        let a = store.add_text("a", "one", &BTreeSet::new()).unwrap();
        let b = store.add_text("b", "two", &BTreeSet::new()).unwrap();
        assert_eq!(store.verify(true).unwrap(), vec![]);
        let b_file = store.physical_path(&b);
        fs::set_permissions(&b_file, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&b_file, "tampered").unwrap();
        discard_tree(&store.physical_path(&a));
        let problems = store.verify(true).unwrap();
        assert!(problems.contains(&Problem::Missing(a)), "{problems:?}");
        assert!(problems.contains(&Problem::Modified(b.clone())), "{problems:?}");
        assert!(!store.verify(false).unwrap().contains(&Problem::Modified(b)));
    }

    #[test]
    fn leftovers_of_a_killed_process_are_cleaned() {
        let s = Scratch::new("leftovers");
        let root = s.0.join("root");
        let store = Store::open(&root).unwrap();
        let p = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", &[1; 32], "half").unwrap();
        fs::create_dir_all(store.physical_path(&p)).unwrap();
        fs::create_dir_all(root.join("tmp/stage-999999999-1-0")).unwrap();
        drop(store);
        let store = Store::open(&root).unwrap();
        assert!(!store.physical_path(&p).exists());
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn gc_keeps_rooted_closures_and_deletes_the_rest() {
        let s = Scratch::new("gc");
        let root = s.0.join("root");
        let store = Store::open(&root).unwrap();
        let dep = store.add_text("dep", "dependency", &BTreeSet::new()).unwrap();
        let app = store.add_text("app", "uses dep", &BTreeSet::from([dep.clone()])).unwrap();
        let junk = store.add_text("junk", "unreferenced", &BTreeSet::new()).unwrap();
        store.add_root(&s.0.join("result"), &app).unwrap();
        assert_eq!(fs::read_to_string(s.0.join("result")).unwrap(), "uses dep");
        // A new process: this one's temporary roots no longer count.
        let temproot = root.join("temproots").join(std::process::id().to_string());
        fs::remove_file(&temproot).unwrap();

        let dry = store.gc(true).unwrap();
        assert_eq!(dry.deleted, vec![junk.clone()]);
        assert!(store.is_valid(&junk));
        let report = store.gc(false).unwrap();
        assert_eq!(report.deleted, vec![junk.clone()]);
        assert_eq!(report.bytes_freed, dry.bytes_freed);
        assert!(report.bytes_freed > 0);
        assert!(!store.is_valid(&junk) && !store.physical_path(&junk).exists());
        assert!(store.is_valid(&app) && store.is_valid(&dep));

        fs::remove_file(s.0.join("result")).unwrap();
        let report = store.gc(false).unwrap();
        assert_eq!(report.deleted.len(), 2);
        assert_eq!(store.verify(true).unwrap(), vec![]);
    }

    #[test]
    fn verify_reports_references_to_paths_that_are_gone() {
        let s = Scratch::new("verify-refs");
        let root = s.0.join("root");
        let store = Store::open(&root).unwrap();
        let dep = store.add_text("dep", "dependency", &BTreeSet::new()).unwrap();
        let app = store.add_text("app", "uses dep", &BTreeSet::from([dep.clone()])).unwrap();
        store.invalidate(&dep).unwrap();
        assert!(!store.physical_path(&dep).exists());
        assert_eq!(store.verify(false).unwrap(), [Problem::MissingReference { path: app.clone(), reference: dep }]);
        // A broken store is still collected: nothing roots app any more.
        fs::remove_file(root.join("temproots").join(std::process::id().to_string())).unwrap();
        assert_eq!(store.gc(false).unwrap().deleted, [app]);
        assert_eq!(store.verify(true).unwrap(), []);
    }

    #[test]
    fn a_path_held_while_valid_survives_gc() {
        let s = Scratch::new("hold");
        let root = s.0.join("root");
        let store = Store::open(&root).unwrap();
        let dep = store.add_text("dep", "dependency", &BTreeSet::new()).unwrap();
        let app = store.add_text("app", "uses dep", &BTreeSet::from([dep.clone()])).unwrap();
        let ghost = StorePath::compute(&PathKind::Source { references: &[] }, "blake3", &[2; 32], "ghost").unwrap();
        fs::remove_file(root.join("temproots").join(std::process::id().to_string())).unwrap();
        assert!(store.hold(&app).unwrap());
        assert!(!store.hold(&ghost).unwrap());
        // Held: app, and dep through it.
        assert_eq!(store.gc(false).unwrap().deleted, []);
        assert!(store.is_valid(&app) && store.is_valid(&dep));
    }

    #[test]
    fn temporary_roots_wait_for_a_running_gc() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let s = Scratch::new("gc-lock");
        let store = Store::open(&s.0.join("root")).unwrap();
        let path = store.add_text("p", "x", &BTreeSet::new()).unwrap();
        let released = AtomicBool::new(false);
        std::thread::scope(|scope| {
            // As a GC does, from reading the roots to its last deletion.
            let gc = store.lock_file("gc.lock").unwrap();
            let adder = scope.spawn(|| {
                store.add_temp_roots(std::slice::from_ref(&path)).unwrap();
                released.load(Ordering::SeqCst)
            });
            std::thread::sleep(Duration::from_millis(200));
            released.store(true, Ordering::SeqCst);
            drop(gc);
            assert!(adder.join().unwrap(), "a temporary root was written while a GC held its lock");
        });
    }

    #[test]
    fn temporary_roots_keep_paths_alive() {
        let s = Scratch::new("temproots");
        let store = Store::open(&s.0.join("root")).unwrap();
        let p = store.add_text("in-use", "x", &BTreeSet::new()).unwrap();
        assert_eq!(store.gc(false).unwrap().deleted, vec![]);
        assert!(store.is_valid(&p));
    }

    #[test]
    fn concurrent_adders_agree() {
        let s = Scratch::new("concurrent");
        let root = s.0.join("root");
        Store::open(&root).unwrap();
        sample_tree(&s.0.join("src"));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (root, src) = (root.clone(), s.0.join("src"));
                std::thread::spawn(move || Store::open(&root).unwrap().add_path(&src, "sample").unwrap())
            })
            .collect();
        let paths: BTreeSet<StorePath> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(paths.len(), 1);
        let store = Store::open(&root).unwrap();
        assert_eq!(store.verify(true).unwrap(), vec![]);
    }
}
