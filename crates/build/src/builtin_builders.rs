//! Builders that run inside mini instead of in a sandbox. A derivation whose
//! builder is `builtin:<name>` is built by the [`BuiltinBuilder`] of that
//! name: fetching a URL needs the network and TLS roots no sandbox has
//! (`fetchurl`, which also unpacks archives for `fetchzip`; `fetchpypi`,
//! through the host's pip, in [`crate::pypi`]), and merging store paths
//! into one tree of symlinks needs no process at all. The image crate
//! plugs its own builder in through the same trait.
//!
//! A builtin builder only creates its outputs; canonicalising them, checking
//! a fixed output's hash and registering are the scheduler's, exactly as
//! for a sandboxed build.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mini_store::derivation::Derivation;
use mini_store::store::{discard_tree, Store};
use mini_store::store_path::StorePath;
use mini_store::tree_writer::{Dir, TreeError};
use rustix::fs::{Mode, OFlags};

use crate::error::{io_err, BuildError, Result};
use crate::output::same_contents;
use crate::unpack;

/// How a derivation's builder names a builtin: `builtin:<name>`.
pub const PREFIX: &str = "builtin:";

/// A builder run inside mini instead of in a sandbox; derivations name it `builtin:<name>`.
pub trait BuiltinBuilder: Send + Sync {
    /// The name after `builtin:`.
    fn name(&self) -> &'static str;
    /// Creates every output of `job`.
    fn build(&self, job: &mut BuiltinJob<'_>) -> Result<()>;
}

/// One derivation for a builtin builder to build.
pub struct BuiltinJob<'a> {
    pub drv_path: &'a StorePath,
    pub drv: &'a Derivation,
    /// Output name -> where on the host that output must be created (does not exist yet).
    pub outputs: &'a BTreeMap<String, PathBuf>,
    /// For `store.physical_path` of the inputs.
    pub store: &'a Store,
    /// The build log, as a sandboxed builder's output would be.
    pub log: &'a mut dyn Write,
    /// The runtime references of an output, when the builder knows them
    /// exactly (the image builder does: it wrote every path it packed);
    /// outputs not named here are scanned as usual.
    pub references: BTreeMap<String, BTreeSet<StorePath>>,
    /// The archive hash and size of an output that is one regular file,
    /// when the builder computed them from the bytes as it wrote them
    /// (`mini_store::nar::FileHasher`); other outputs are hashed after
    /// the build as usual.
    pub archive_hashes: BTreeMap<String, (blake3::Hash, u64)>,
}

/// What a builtin builder declared about its outputs (see [`BuiltinJob`]).
#[derive(Debug, Default)]
pub struct Declared {
    pub references: BTreeMap<String, BTreeSet<StorePath>>,
    pub archive_hashes: BTreeMap<String, (blake3::Hash, u64)>,
}

impl BuiltinJob<'_> {
    /// A failure of this job's builder, explained by `message`.
    pub fn error(&self, message: impl Into<String>) -> BuildError {
        BuildError::Builtin {
            builder: self.drv.builder.clone(),
            drv: self.drv_path.to_string(),
            message: message.into(),
        }
    }

    /// Where output `name` must be created.
    pub fn output(&self, name: &str) -> Result<&Path> {
        self.outputs.get(name).map(PathBuf::as_path).ok_or_else(|| self.error(format!("no output named '{name}'")))
    }

    pub(crate) fn env(&self, name: &str) -> Option<&str> {
        self.drv.env.get(name).map(String::as_str)
    }
}

/// Runs `command` (a downloader a builtin drives: pip, apt) with its
/// stdout and stderr copied to `log` as they come; its exit status and its
/// last `tail_lines` non-empty lines, for an error to quote.
pub fn run_logged(
    mut command: std::process::Command,
    log: &mut dyn Write,
    tail_lines: usize,
) -> io::Result<(std::process::ExitStatus, Vec<String>)> {
    let (reader, writer) = io::pipe()?;
    command.stdout(writer.try_clone()?).stderr(writer);
    let mut child = command.spawn()?;
    // The child holds the only write ends now: reading ends when it exits.
    drop(command);
    let mut tail: Vec<String> = Vec::new();
    for line in io::BufRead::split(io::BufReader::new(reader), b'\n') {
        let line = line?;
        let _ = log.write_all(&line).and_then(|()| log.write_all(b"\n"));
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if !text.is_empty() {
            if tail.len() == tail_lines {
                tail.remove(0);
            }
            tail.push(text);
        }
    }
    Ok((child.wait()?, tail))
}

/// The builtins that need no settings: `buildenv`, and `fetchpypi` with
/// the pip `MINI_PIP` names ([`crate::pypi::Pip::from_env`]). `fetchurl`
/// reads local files for `file://` URLs, so whoever knows which
/// directories it may read adds it ([`fetchurl`]).
pub fn standard() -> Vec<Box<dyn BuiltinBuilder>> {
    vec![Box::new(BuildEnv), crate::pypi::fetchpypi(crate::pypi::Pip::from_env())]
}

/// Why a download failed, said for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// `builtin:fetchurl`, reading `file://` URLs only below `file_dirs`
/// (none: no local file at all).
pub fn fetchurl(file_dirs: Vec<PathBuf>) -> Box<dyn BuiltinBuilder> {
    Box::new(FetchUrl { file_dirs })
}

/// The builder among `builders` that a derivation's `builder` field names,
/// if it names a builtin at all.
pub fn find<'a>(builders: &'a [Box<dyn BuiltinBuilder>], builder: &str) -> Option<&'a dyn BuiltinBuilder> {
    let name = builder.strip_prefix(PREFIX)?;
    builders.iter().find(|b| b.name() == name).map(|b| b.as_ref())
}

// ---------------------------------------------------------------------------
// fetchurl

/// `builtin:fetchurl`: downloads env `url` (`file://`, `http://`,
/// `https://`) to the file `$out`, executable (0555) when env
/// `executable = "1"`. With env `unpack = "1"` (`fetchzip`), the download
/// goes to a private file instead and `$out` is the tree unpacked from it
/// ([`crate::unpack`]): its single top-level directory when env
/// `stripRoot = "1"`, in the format env `extension` names, else the one its
/// first bytes show. Only for fixed-output derivations: the declared hash
/// is what makes a download from the network reproducible.
///
/// It runs in mini's own process, with mini's rights, so a `file://` URL
/// could otherwise name any file the user can read (`file:///etc/shadow`,
/// `~/.ssh/id_ed25519`): a failed hash check prints the file's real hash,
/// and a right guess copies it into the store. So a local file is read
/// only below the directories the user allowed (`allowedFileUrls` in the
/// config file, `MINI_ALLOWED_FILE_URLS`), after resolving its links, and
/// is opened one component at a time with `O_NOFOLLOW` below the allowed
/// directory, so a link swapped in meanwhile is refused, not followed.
struct FetchUrl {
    /// The directories `file://` URLs may read below; none by default.
    file_dirs: Vec<PathBuf>,
}

/// The setting that allows `file://` URLs, as errors name it.
pub const FILE_URL_SETTING: &str = "\"allowedFileUrls\" in ~/.config/mini/config.json or MINI_ALLOWED_FILE_URLS";

/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next bytes of a stalled response; a whole download
/// may take as long as it keeps moving.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

impl BuiltinBuilder for FetchUrl {
    fn name(&self) -> &'static str {
        "fetchurl"
    }

    fn build(&self, job: &mut BuiltinJob<'_>) -> Result<()> {
        if job.drv.fixed_output().is_none() {
            return Err(job.error("builtin:fetchurl requires a fixed output hash (outputHash)"));
        }
        let url = job.env("url").ok_or_else(|| job.error("the derivation sets no 'url'"))?.to_string();
        let out = job.output("out")?.to_path_buf();
        if job.env("unpack") == Some("1") {
            return self.fetch_and_unpack(job, &url, &out);
        }
        let executable = job.env("executable") == Some("1");
        let fetched = fetch_url(&url, &self.file_dirs, &out, job.log).map_err(|e| job.error(e.0));
        let finished = fetched.and_then(|_| {
            let mode = if executable { 0o555 } else { 0o444 };
            fs::set_permissions(&out, Permissions::from_mode(mode)).map_err(io_err("setting the mode of", &out))
        });
        if finished.is_err() {
            let _ = fs::remove_file(&out);
        }
        finished
    }
}

impl FetchUrl {
    /// `fetchzip`: downloads `url` to a private file and unpacks it as `out`.
    fn fetch_and_unpack(&self, job: &mut BuiltinJob<'_>, url: &str, out: &Path) -> Result<()> {
        let format = match job.env("extension").filter(|e| !e.is_empty()) {
            Some(extension) => Some(unpack::Format::from_extension(extension).map_err(|e| job.error(e.to_string()))?),
            None => None,
        };
        let strip_root = job.env("stripRoot") == Some("1");
        let staging = job.store.staging_dir()?;
        let archive = staging.join("archive");
        let tree = staging.join("tree");
        let log = &mut *job.log;
        let result = fetch_url(url, &self.file_dirs, &archive, log)
            .map_err(|e| e.0)
            .and_then(|_| {
                let unpacked = unpack::unpack(&archive, format, &tree).map_err(|e| e.to_string())?;
                let _ = writeln!(log, "unpacked {unpacked} entries");
                unpack::place(&tree, out, strip_root).map_err(|e| e.to_string())
            })
            .map_err(|message| job.error(message));
        discard_tree(&staging);
        result
    }
}

/// Downloads `url` (`file://` below one of `file_dirs`, `http://`,
/// `https://`) to the new file `out`, saying so in `log`; the number of
/// bytes. On failure nothing is left at `out`. `builtin:fetchurl` and
/// `mini fetch` download with this.
pub fn fetch_url(
    url: &str,
    file_dirs: &[PathBuf],
    out: &Path,
    log: &mut dyn Write,
) -> std::result::Result<u64, FetchError> {
    let _ = writeln!(log, "downloading '{url}'");
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(out)
        .map_err(|e| FetchError(format!("cannot create '{}': {e}", out.display())))?;
    let fetched = match url.split_once("://") {
        Some(("file", rest)) => copy_local(file_dirs, rest, url, &mut file, out),
        Some(("http" | "https", _)) => download(url, &mut file, out),
        Some(("mirror", rest)) => download_from_mirrors(rest, &mut file, out, log),
        _ => Err(FetchError(format!("unsupported URL '{url}': use file://, http://, https:// or mirror://debian/"))),
    };
    drop(file);
    match fetched {
        Ok(bytes) => {
            let _ = writeln!(log, "fetched {bytes} bytes");
            Ok(bytes)
        }
        Err(e) => {
            // No half-downloaded file is left for anything to mistake for the output.
            let _ = fs::remove_file(out);
            Err(e)
        }
    }
}

/// Copies the local file a `file://` URL names (`rest` is what follows
/// `file://`, percent-encoded), if it lies below one of `allowed`.
fn copy_local(
    allowed: &[PathBuf],
    rest: &str,
    url: &str,
    out: &mut File,
    out_path: &Path,
) -> std::result::Result<u64, FetchError> {
    let path = percent_decode(rest).ok_or_else(|| FetchError(format!("'{url}' has a bad %-escape")))?;
    let path = PathBuf::from(OsString::from_vec(path));
    if !path.is_absolute() {
        return Err(FetchError(format!("'{url}' is not an absolute file URL (write file:///absolute/path)")));
    }
    let mut source = open_allowed(&path, allowed).map_err(|refusal| {
        FetchError(match refusal {
            Refusal::Unreadable(e) => format!("cannot read '{}': {e}", path.display()),
            Refusal::NotAllowed(real) => {
                let resolved = if real == path { String::new() } else { format!(" (which is {})", real.display()) };
                let dirs = if allowed.is_empty() {
                    "none is allowed".to_string()
                } else {
                    let list: Vec<String> = allowed.iter().map(|d| d.display().to_string()).collect();
                    format!("only these are: {}", list.join(", "))
                };
                format!(
                    "'{url}'{resolved} is outside the directories file:// URLs may read ({dirs}); \
                     add its directory to {FILE_URL_SETTING} to allow it"
                )
            }
        })
    })?;
    copy_stream(&mut source, out, out_path, |e| FetchError(format!("cannot read '{}': {e}", path.display())))
}

/// Why a local file was not opened.
enum Refusal {
    Unreadable(io::Error),
    /// It resolves to this path, which is below no allowed directory.
    NotAllowed(PathBuf),
}

/// Opens `path` for reading if, links resolved, it is a regular file below
/// one of `allowed`. The rest of the path is opened below the allowed
/// directory's handle one component at a time with `O_NOFOLLOW`, so a link
/// put in place after the check is refused rather than followed.
fn open_allowed(path: &Path, allowed: &[PathBuf]) -> std::result::Result<File, Refusal> {
    // `allowed/../x` would pass the prefix test below unresolved, and the
    // answer would tell whether `x` exists.
    if path.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(Refusal::NotAllowed(path.to_path_buf()));
    }
    let dirs: Vec<PathBuf> = allowed.iter().filter_map(|dir| fs::canonicalize(dir).ok()).collect();
    let real = match fs::canonicalize(path) {
        Ok(real) => real,
        // Whether a file outside the allowed directories exists is not told.
        Err(_) if !dirs.iter().chain(allowed).any(|dir| path.starts_with(dir)) => {
            return Err(Refusal::NotAllowed(path.to_path_buf()))
        }
        Err(e) => return Err(Refusal::Unreadable(e)),
    };
    let (dir, inside) = dirs
        .into_iter()
        .find_map(|dir| {
            let inside = real.strip_prefix(&dir).ok()?.to_path_buf();
            Some((dir, inside))
        })
        .ok_or_else(|| Refusal::NotAllowed(real.clone()))?;
    let nofollow = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let unreadable = |e: rustix::io::Errno| Refusal::Unreadable(e.into());
    let mut handle = rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(unreadable)?;
    let parts: Vec<&std::ffi::OsStr> = inside.iter().collect();
    let Some((last, parents)) = parts.split_last() else {
        return Err(Refusal::Unreadable(io::Error::new(io::ErrorKind::InvalidInput, "it is a directory")));
    };
    for part in parents {
        handle = rustix::fs::openat(&handle, *part, nofollow | OFlags::DIRECTORY, Mode::empty()).map_err(unreadable)?;
    }
    // Non-blocking, so a fifo cannot hang the build before it is refused.
    let file =
        File::from(rustix::fs::openat(&handle, *last, nofollow | OFlags::NONBLOCK, Mode::empty()).map_err(unreadable)?);
    if !file.metadata().map_err(Refusal::Unreadable)?.is_file() {
        return Err(Refusal::Unreadable(io::Error::new(io::ErrorKind::InvalidInput, "it is not a regular file")));
    }
    Ok(file)
}

/// Downloads `url` over HTTP(S), following redirects.
/// Downloads `mirror://<rest>` from the first of its mirrors that has it.
fn download_from_mirrors(
    rest: &str,
    out: &mut File,
    out_path: &Path,
    log: &mut dyn Write,
) -> std::result::Result<u64, FetchError> {
    let mut failures = Vec::new();
    for url in crate::mirrors::candidates(rest).map_err(FetchError)? {
        let _ = writeln!(log, "trying '{url}'");
        match download(&url, out, out_path) {
            Ok(bytes) => return Ok(bytes),
            Err(e) => {
                let _ = writeln!(log, "{}", e.0);
                failures.push(e.0);
                out.set_len(0)
                    .and_then(|()| out.seek(io::SeekFrom::Start(0)))
                    .map_err(|e| FetchError(format!("cannot start '{}' again: {e}", out_path.display())))?;
            }
        }
    }
    Err(FetchError(format!("no mirror has 'mirror://{rest}':\n  {}", failures.join("\n  "))))
}

fn download(url: &str, out: &mut File, out_path: &Path) -> std::result::Result<u64, FetchError> {
    let options =
        mini_http::ClientOptions { connect_timeout: CONNECT_TIMEOUT, read_timeout: READ_TIMEOUT, max_redirects: 10 };
    let agent = mini_http::agent(options).map_err(|e| FetchError(e.to_string()))?;
    let response = agent
        .get(url)
        .call()
        .map_err(|e| FetchError(format!("cannot download '{url}': {}", mini_http::explain(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError(format!("cannot download '{url}': the server answered {status}")));
    }
    let mut body = response.into_body().into_reader();
    copy_stream(&mut body, out, out_path, |e| FetchError(format!("cannot download '{url}': {e}")))
}

/// Streams `source` into `out` in fixed-size pieces, telling read errors
/// (the source's) from write errors (the output's).
fn copy_stream(
    source: &mut impl Read,
    out: &mut File,
    out_path: &Path,
    read_failed: impl Fn(io::Error) -> FetchError,
) -> std::result::Result<u64, FetchError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failed(e)),
        };
        out.write_all(&buf[..n]).map_err(|e| FetchError(format!("cannot write '{}': {e}", out_path.display())))?;
        total += n as u64;
    }
}

/// Decodes `%XX` escapes; `None` if one is malformed.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// buildenv

/// `builtin:buildenv`: merges the store paths in env `paths` (separated by
/// whitespace) into one tree at `$out`, as nixpkgs' `buildEnv` does:
/// directories are merged, and every file or symlink becomes a symlink to
/// its logical location (`/mini/store/<hash>-<name>/bin/foo`), which is
/// where it is in a sandbox and in an image. Unlike nixpkgs, a directory
/// only one input has is still a real directory, not a symlink to it: the
/// tree's shape then does not depend on which other inputs share it.
/// Symlinks inside the inputs are linked to, not followed. Two different
/// files at one place are a collision, unless env `ignoreCollisions = "1"`,
/// when the path listed first wins; files with identical contents do not
/// collide.
struct BuildEnv;

/// The merged tree being planned, before anything is written.
enum Node {
    /// A directory; `from` is the logical path of the first input's directory here.
    Dir { from: PathBuf, entries: BTreeMap<OsString, Node> },
    /// A symlink to `target` (logical), whose files are at `physical`.
    Link { target: PathBuf, physical: PathBuf },
}

impl BuiltinBuilder for BuildEnv {
    fn name(&self) -> &'static str {
        "buildenv"
    }

    fn build(&self, job: &mut BuiltinJob<'_>) -> Result<()> {
        let out = job.output("out")?.to_path_buf();
        let ignore_collisions = job.env("ignoreCollisions") == Some("1");
        let mut root = BTreeMap::new();
        for text in job.env("paths").unwrap_or("").split_whitespace() {
            let path = StorePath::parse(text).map_err(|e| job.error(format!("'{text}' in 'paths': {e}")))?;
            if !job.store.is_valid(&path) {
                return Err(job.error(format!("'{path}' is not a valid store path")));
            }
            let physical = job.store.physical_path(&path);
            let meta = fs::symlink_metadata(&physical).map_err(io_err("reading", &physical))?;
            if !meta.is_dir() {
                return Err(job.error(format!("'{path}' is a file, not a directory: only directories can be merged")));
            }
            let logical = PathBuf::from(path.to_string());
            merge(job, &mut root, &physical, &logical, ignore_collisions)?;
        }
        let dir = Dir::create(&out, 0o755).map_err(|e| job.error(e.to_string()))?;
        let links = write_tree(&root, &dir).map_err(|e| job.error(e.to_string()))?;
        let _ = writeln!(job.log, "created {links} symlinks in the environment");
        Ok(())
    }
}

/// Adds the directory at `physical` (logically at `logical`) to `entries`.
fn merge(
    job: &BuiltinJob<'_>,
    entries: &mut BTreeMap<OsString, Node>,
    physical: &Path,
    logical: &Path,
    ignore_collisions: bool,
) -> Result<()> {
    let mut names = fs::read_dir(physical)
        .and_then(|dir| dir.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>())
        .map_err(io_err("reading", physical))?;
    names.sort();
    for name in names {
        let (p, l) = (physical.join(&name), logical.join(&name));
        let is_dir = fs::symlink_metadata(&p).map_err(io_err("reading", &p))?.is_dir();
        match entries.get_mut(&name) {
            None if is_dir => {
                let mut sub = BTreeMap::new();
                merge(job, &mut sub, &p, &l, ignore_collisions)?;
                entries.insert(name, Node::Dir { from: l, entries: sub });
            }
            None => {
                entries.insert(name, Node::Link { target: l, physical: p });
            }
            Some(Node::Dir { entries: sub, .. }) if is_dir => merge(job, sub, &p, &l, ignore_collisions)?,
            Some(existing) => {
                let first = match existing {
                    Node::Dir { from, .. } => from,
                    Node::Link { target, physical } => {
                        if !is_dir && identical(physical, target, &p, &l) {
                            continue;
                        }
                        target
                    }
                };
                if !ignore_collisions {
                    return Err(job.error(format!(
                        "collision between '{}' and '{}' (set ignoreCollisions = \"1\" to keep the first)",
                        first.display(),
                        l.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether two non-directories would be the same in the merged tree: the
/// same logical path, regular files with equal contents and executable
/// bit, or symlinks with the same absolute target.
fn identical(physical_a: &Path, logical_a: &Path, physical_b: &Path, logical_b: &Path) -> bool {
    if logical_a == logical_b {
        return true;
    }
    let (Ok(a), Ok(b)) = (fs::symlink_metadata(physical_a), fs::symlink_metadata(physical_b)) else { return false };
    if a.is_file() && b.is_file() {
        (a.mode() & 0o111 != 0) == (b.mode() & 0o111 != 0)
            && a.len() == b.len()
            && same_contents(physical_a, physical_b).unwrap_or(false)
    } else if a.file_type().is_symlink() && b.file_type().is_symlink() {
        match (fs::read_link(physical_a), fs::read_link(physical_b)) {
            (Ok(ta), Ok(tb)) => ta.is_absolute() && ta == tb,
            _ => false,
        }
    } else {
        false
    }
}

/// Creates the planned tree's entries inside the directory `dir`; returns
/// how many symlinks it made. Entries are made relative to the directory's
/// handle, so nothing in the build root can redirect them.
fn write_tree(entries: &BTreeMap<OsString, Node>, dir: &Dir) -> std::result::Result<usize, TreeError> {
    let mut links = 0;
    for (name, node) in entries {
        match node {
            Node::Dir { entries, .. } => {
                let sub = dir.create_dir(name.as_bytes(), 0o755)?;
                links += write_tree(entries, &sub)?;
            }
            Node::Link { target, .. } => {
                dir.symlink(name.as_bytes(), target.as_os_str().as_bytes())?;
                links += 1;
            }
        }
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::os::unix::fs::symlink;

    use mini_store::derivation::{FixedHash, HashMode, Output};
    use sha2::Digest;

    use super::*;
    use crate::output::verify_fixed;
    use crate::testing::Scratch;

    fn derivation(builder: &str, env: &[(&str, &str)], fixed: Option<FixedHash>) -> Derivation {
        Derivation {
            name: "test".into(),
            outputs: BTreeMap::from([("out".to_string(), Output { path: None, fixed })]),
            input_drvs: BTreeMap::new(),
            input_srcs: BTreeSet::new(),
            system: "x86_64-linux".into(),
            builder: builder.into(),
            args: vec![],
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn sha256_of(bytes: &[u8]) -> FixedHash {
        FixedHash { algo: "sha256".into(), mode: HashMode::Flat, digest: sha2::Sha256::digest(bytes).to_vec() }
    }

    /// Runs the builtin `drv.builder` names with `$out` at `out`, `file://`
    /// URLs allowed below the temporary directory.
    fn run(store: &Store, drv: &Derivation, out: &Path) -> Result<String> {
        run_allowing(store, drv, out, vec![std::env::temp_dir()])
    }

    /// [`run`], `file://` URLs allowed below `file_dirs`.
    fn run_allowing(store: &Store, drv: &Derivation, out: &Path, file_dirs: Vec<PathBuf>) -> Result<String> {
        let mut builders = standard();
        builders.push(fetchurl(file_dirs));
        let builder = find(&builders, &drv.builder).expect("a standard builtin");
        let drv_path = drv.drv_path().unwrap();
        let outputs = BTreeMap::from([("out".to_string(), out.to_path_buf())]);
        let mut log = Vec::new();
        builder.build(&mut BuiltinJob {
            drv_path: &drv_path,
            drv,
            outputs: &outputs,
            store,
            log: &mut log,
            references: BTreeMap::new(),
            archive_hashes: BTreeMap::new(),
        })?;
        Ok(String::from_utf8(log).unwrap())
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn find_looks_builtins_up_by_prefixed_name() {
        let mut builders = standard();
        builders.push(fetchurl(Vec::new()));
        assert_eq!(find(&builders, "builtin:fetchurl").map(|b| b.name()), Some("fetchurl"));
        assert_eq!(find(&builders, "builtin:buildenv").map(|b| b.name()), Some("buildenv"));
        assert!(find(&builders, "builtin:nope").is_none());
        assert!(find(&builders, "/bin/sh").is_none());
    }

    #[test]
    fn fetchurl_copies_file_urls() {
        let s = Scratch::new("file");
        let store = Store::open(&s.0.join("store")).unwrap();
        let source = s.0.join("some dir/source.txt");
        fs::create_dir_all(source.parent().unwrap()).unwrap();
        fs::write(&source, "contents").unwrap();
        let url = format!("file://{}", source.display()).replace(' ', "%20");
        let drv = derivation("builtin:fetchurl", &[("url", &url)], Some(sha256_of(b"contents")));
        let out = s.0.join("out");
        let log = run(&store, &drv, &out).unwrap();
        assert!(log.contains(&url) && log.contains("fetched 8 bytes"), "{log}");
        assert_eq!(fs::read_to_string(&out).unwrap(), "contents");
        assert_eq!(mode(&out), 0o444);
        verify_fixed("test", &out, drv.fixed_output().unwrap()).unwrap();

        let exe = derivation("builtin:fetchurl", &[("url", &url), ("executable", "1")], Some(sha256_of(b"x")));
        run(&store, &exe, &s.0.join("exe")).unwrap();
        assert_eq!(mode(&s.0.join("exe")), 0o555);

        let bad_escape = derivation("builtin:fetchurl", &[("url", "file:///x%+1")], Some(sha256_of(b"")));
        assert!(run(&store, &bad_escape, &s.0.join("esc")).unwrap_err().to_string().contains("bad %-escape"));
        let relative = derivation("builtin:fetchurl", &[("url", "file://relative/x")], Some(sha256_of(b"")));
        let err = run(&store, &relative, &s.0.join("rel")).unwrap_err();
        assert!(err.to_string().contains("not an absolute file URL"), "{err}");
        let missing_file = s.0.join("nonexistent");
        let missing_url = format!("file://{}", missing_file.display());
        let missing = derivation("builtin:fetchurl", &[("url", &missing_url)], Some(sha256_of(b"")));
        let err = run(&store, &missing, &s.0.join("missing")).unwrap_err();
        assert!(err.to_string().contains(&format!("cannot read '{}'", missing_file.display())), "{err}");
        assert!(fs::symlink_metadata(s.0.join("missing")).is_err(), "a failed fetch leaves no output");
    }

    #[test]
    fn fetchurl_reads_local_files_only_below_allowed_directories() {
        let s = Scratch::new("file-allowed");
        let store = Store::open(&s.0.join("store")).unwrap();
        let allowed = s.0.join("allowed");
        fs::create_dir_all(&allowed).unwrap();
        fs::write(allowed.join("ok.txt"), "ok").unwrap();
        fs::create_dir_all(s.0.join("outside")).unwrap();
        fs::write(s.0.join("outside/secret.txt"), "ok").unwrap();
        symlink(s.0.join("outside/secret.txt"), allowed.join("link.txt")).unwrap();
        symlink(s.0.join("outside"), allowed.join("dir-link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            allowed.join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let fetch = |path: &Path, dirs: &[&Path], out: &str| {
            let url = format!("file://{}", path.display());
            let drv = derivation("builtin:fetchurl", &[("url", &url)], Some(sha256_of(b"ok")));
            let out = s.0.join(out);
            let result = run_allowing(&store, &drv, &out, dirs.iter().map(|d| d.to_path_buf()).collect());
            assert!(result.is_ok() || fs::symlink_metadata(&out).is_err(), "a refused fetch leaves no output");
            result.map_err(|e| e.to_string())
        };
        let err = fetch(&allowed.join("ok.txt"), &[], "none").unwrap_err();
        assert!(err.contains("none is allowed") && err.contains(FILE_URL_SETTING), "{err}");
        fetch(&allowed.join("ok.txt"), &[&allowed], "ok").unwrap();
        assert_eq!(fs::read_to_string(s.0.join("ok")).unwrap(), "ok");
        for (path, what) in [
            (s.0.join("outside/secret.txt"), "a file elsewhere"),
            (allowed.join("link.txt"), "a link out"),
            (allowed.join("dir-link/secret.txt"), "a directory link out"),
            (allowed.join("../outside/secret.txt"), "climbing out"),
            // Refused before it is resolved: "missing" would tell it is not there.
            (allowed.join("../no-such-file"), "climbing out to a missing file"),
            (PathBuf::from("/nonexistent/mini"), "a missing file elsewhere"),
        ] {
            let err = fetch(&path, &[&allowed], "refused").unwrap_err();
            assert!(err.contains("is outside the directories file:// URLs may read"), "{what}: {err}");
            assert!(
                err.contains(&allowed.canonicalize().unwrap().display().to_string())
                    || err.contains(&allowed.display().to_string()),
                "{err}"
            );
        }
        let err = fetch(&allowed.join("link.txt"), &[&allowed], "refused").unwrap_err();
        assert!(err.contains(&format!("(which is {})", s.0.join("outside/secret.txt").display())), "{err}");
        let err = fetch(&allowed.join("fifo"), &[&allowed], "fifo").unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        let err = fetch(&allowed.join("missing"), &[&allowed], "missing").unwrap_err();
        assert!(err.contains("cannot read") && err.contains("No such file"), "{err}");
    }

    #[test]
    fn fetchurl_requires_a_fixed_output() {
        let s = Scratch::new("unfixed");
        let store = Store::open(&s.0.join("store")).unwrap();
        let drv = derivation("builtin:fetchurl", &[("url", "file:///etc/hostname")], None);
        let err = run(&store, &drv, &s.0.join("out")).unwrap_err();
        assert!(err.to_string().contains("builtin:fetchurl requires a fixed output hash"), "{err}");
        let no_url = derivation("builtin:fetchurl", &[], Some(sha256_of(b"")));
        assert!(run(&store, &no_url, &s.0.join("out")).unwrap_err().to_string().contains("no 'url'"));
        let ftp = derivation("builtin:fetchurl", &[("url", "ftp://example/x")], Some(sha256_of(b"")));
        assert!(run(&store, &ftp, &s.0.join("out")).unwrap_err().to_string().contains("unsupported URL"));
    }

    #[test]
    fn fetchurl_unpacks_archives_for_fetchzip() {
        let s = Scratch::new("unpack");
        let store = Store::open(&s.0.join("store")).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in [("pkg-1.0/bin/tool", &b"#!/bin/sh\n"[..]), ("pkg-1.0/README", b"read me")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(if path.ends_with("tool") { 0o755 } else { 0o644 });
            tar.append_data(&mut header, path, data).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        // No extension in the URL: the format comes from the first bytes.
        let archive = s.0.join("download");
        fs::write(&archive, gz.finish().unwrap()).unwrap();
        let url = format!("file://{}", archive.display());
        let fixed = FixedHash { algo: "sha256".into(), mode: HashMode::Recursive, digest: vec![0; 32] };
        let unpack = |extra: &[(&str, &str)], out: &str| {
            let mut env = vec![("url", url.as_str()), ("unpack", "1")];
            env.extend_from_slice(extra);
            let out = s.0.join(out);
            run(&store, &derivation("builtin:fetchurl", &env, Some(fixed.clone())), &out).map(|log| (log, out))
        };
        let (log, out) = unpack(&[("stripRoot", "1")], "stripped").unwrap();
        assert!(log.contains("unpacked 2 entries"), "{log}");
        assert_eq!(fs::read(out.join("README")).unwrap(), b"read me");
        assert_eq!(fs::metadata(out.join("bin/tool")).unwrap().mode() & 0o111, 0o111);
        let (_, out) = unpack(&[("stripRoot", "")], "whole").unwrap();
        assert!(out.join("pkg-1.0/bin/tool").is_file());
        let err = unpack(&[("extension", "zip")], "as-zip").unwrap_err().to_string();
        assert!(err.contains("cannot read the zip archive"), "{err}");
        let err = unpack(&[("extension", "rar")], "rar").unwrap_err().to_string();
        assert!(err.contains("unsupported archive extension 'rar'"), "{err}");
        let leftovers: Vec<_> = fs::read_dir(s.0.join("store/tmp")).unwrap().collect();
        assert!(leftovers.is_empty(), "the download and the unpacked tree are removed: {leftovers:?}");
    }

    /// Serves `/file` (the given body), `/redirect` (302 to `/file`) and a
    /// 404 for anything else, one request per connection, for `connections`
    /// connections; returns the base URL.
    fn serve(body: Vec<u8>, connections: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let Ok(mut stream) = stream else { continue };
                let mut reader = io::BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let target = request_line.split(' ').nth(1).unwrap_or("").to_string();
                let head = match target.as_str() {
                    "/file" => {
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                    }
                    "/redirect" => {
                        "HTTP/1.1 302 Found\r\nLocation: /file\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
                    }
                    _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found".into(),
                };
                let _ = stream.write_all(head.as_bytes());
                if target == "/file" {
                    let _ = stream.write_all(&body);
                }
            }
        });
        base
    }

    #[test]
    fn fetchurl_downloads_over_http_following_redirects() {
        let s = Scratch::new("http");
        let store = Store::open(&s.0.join("store")).unwrap();
        // Larger than one copy buffer, so the body streams in several pieces.
        let body: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let base = serve(body.clone(), 4);
        for (i, path) in ["/file", "/redirect"].into_iter().enumerate() {
            let url = format!("{base}{path}");
            let drv = derivation("builtin:fetchurl", &[("url", &url)], Some(sha256_of(&body)));
            let out = s.0.join(format!("out{i}"));
            run(&store, &drv, &out).unwrap();
            assert_eq!(fs::read(&out).unwrap(), body);
            verify_fixed("test", &out, drv.fixed_output().unwrap()).unwrap();
        }
        let url = format!("{base}/missing");
        let drv = derivation("builtin:fetchurl", &[("url", &url)], Some(sha256_of(b"")));
        let out = s.0.join("missing");
        let err = run(&store, &drv, &out).unwrap_err();
        assert!(matches!(err, BuildError::Builtin { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&url) && text.contains("404 Not Found"), "{text}");
        assert!(fs::symlink_metadata(&out).is_err(), "a failed download leaves no output");
    }

    /// Adds a tree of `files` (relative path, contents) to the store.
    fn add_package(store: &Store, scratch: &Path, name: &str, files: &[(&str, &str)]) -> StorePath {
        let dir = scratch.join(format!("src-{name}"));
        for (rel, contents) in files {
            let path = dir.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }
        store.add_path(&dir, name).unwrap()
    }

    fn buildenv(paths: &[&StorePath], extra: &[(&str, &str)]) -> Derivation {
        let paths = paths.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
        let mut env = vec![("paths", paths.as_str())];
        env.extend_from_slice(extra);
        derivation("builtin:buildenv", &env, None)
    }

    #[test]
    fn buildenv_merges_directories_into_logical_symlinks() {
        let s = Scratch::new("env");
        let store = Store::open(&s.0.join("store")).unwrap();
        let a = add_package(&store, &s.0, "a", &[("bin/a", "a"), ("share/doc/a/README", "a"), ("same", "x")]);
        let b = add_package(&store, &s.0, "b", &[("bin/b", "b"), ("share/doc/b/README", "b"), ("same", "x")]);
        let out = s.0.join("out");
        let log = run(&store, &buildenv(&[&a, &b, &a], &[]), &out).unwrap();
        assert!(log.contains("created 5 symlinks"), "{log}");
        assert!(fs::symlink_metadata(out.join("bin")).unwrap().is_dir());
        assert!(fs::symlink_metadata(out.join("share/doc")).unwrap().is_dir());
        assert_eq!(fs::read_link(out.join("bin/a")).unwrap(), PathBuf::from(format!("{a}/bin/a")));
        assert_eq!(fs::read_link(out.join("bin/b")).unwrap(), PathBuf::from(format!("{b}/bin/b")));
        // Directories are always real, even where one input alone has them.
        assert!(fs::symlink_metadata(out.join("share/doc/a")).unwrap().is_dir());
        let readme = fs::read_link(out.join("share/doc/a/README")).unwrap();
        assert_eq!(readme, PathBuf::from(format!("{a}/share/doc/a/README")));
        assert_eq!(fs::read_link(out.join("same")).unwrap(), PathBuf::from(format!("{a}/same")));
    }

    #[test]
    fn buildenv_reports_collisions_unless_told_to_ignore_them() {
        let s = Scratch::new("collide");
        let store = Store::open(&s.0.join("store")).unwrap();
        let a = add_package(&store, &s.0, "a", &[("bin/tool", "one")]);
        let c = add_package(&store, &s.0, "c", &[("bin/tool", "two")]);
        let err = run(&store, &buildenv(&[&a, &c], &[]), &s.0.join("out")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("collision between '{a}/bin/tool' and '{c}/bin/tool'")), "{text}");
        let out = s.0.join("out2");
        run(&store, &buildenv(&[&a, &c], &[("ignoreCollisions", "1")]), &out).unwrap();
        assert_eq!(fs::read_link(out.join("bin/tool")).unwrap(), PathBuf::from(format!("{a}/bin/tool")));

        // A directory where another input has a file collides too.
        let d = add_package(&store, &s.0, "d", &[("bin", "not a directory")]);
        let err = run(&store, &buildenv(&[&a, &d], &[]), &s.0.join("out3")).unwrap_err();
        assert!(err.to_string().contains(&format!("collision between '{a}/bin' and '{d}/bin'")), "{err}");
    }

    #[test]
    fn buildenv_rejects_files_and_unknown_paths() {
        let s = Scratch::new("envfile");
        let store = Store::open(&s.0.join("store")).unwrap();
        let file = s.0.join("single");
        fs::write(&file, "x").unwrap();
        let single = store.add_path(&file, "single").unwrap();
        let err = run(&store, &buildenv(&[&single], &[]), &s.0.join("out")).unwrap_err();
        assert!(err.to_string().contains("is a file, not a directory"), "{err}");
        let drv = derivation("builtin:buildenv", &[("paths", "/tmp/elsewhere")], None);
        assert!(run(&store, &drv, &s.0.join("out")).is_err());
        let out = s.0.join("empty");
        run(&store, &derivation("builtin:buildenv", &[("paths", "")], None), &out).unwrap();
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    }
}
