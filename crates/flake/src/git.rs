//! Flakes at a git revision: `git+file:DIR?rev=…` / `?ref=…` (HEAD when
//! neither is given), with `&dir=SUB` for a flake in a subdirectory. The
//! revision's tree — exactly what it tracks, with no working-tree changes,
//! no `.git` and no file times — is extracted from `git archive` and added
//! to the store by content, and the flake is evaluated from that store
//! copy. Which store path a commit gave is remembered in
//! `<store root>/git-revs/<sha>`, so building a full commit hash again runs
//! no git at all.
//!
//! Git is run as a command rather than linked as a library: it is the
//! implementation every repository is written by, so there is no question
//! of which features (packed refs, worktrees, partial clones, new object
//! formats) a reimplementation understands, and `git archive` already
//! gives the committed tree as a stream.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use mini_store::store::{discard_tree, Store};
use mini_store::store_path::StorePath;
use mini_store::tree_writer::{TreeError, TreeWriter};

use crate::FlakeError;

/// The directory, under the store root, of the revision cache.
const CACHE_DIR: &str = "git-revs";

/// What follows `git+file:`: `[//]PATH[?rev=SHA|?ref=NAME][&dir=SUB]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitUrl {
    /// The repository's path as written (`.` when empty).
    pub path: String,
    /// A revision or ref; `None`: HEAD.
    pub rev: Option<String>,
    /// The flake's directory inside the repository, if not its top.
    pub dir: Option<PathBuf>,
}

/// Parses what follows `git+file:` (without any `#ATTR`).
pub(crate) fn parse_url(rest: &str) -> Result<GitUrl, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = match path.strip_prefix("//") {
        Some(absolute) if absolute.starts_with('/') => absolute,
        Some(_) => return Err("a git+file URL with '//' must name an absolute path: git+file:///PATH".into()),
        None if path.is_empty() => ".",
        None => path,
    };
    let (mut rev, mut dir) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("rev" | "ref", value)) if !value.is_empty() => {
                if rev.replace(value.to_string()).is_some() {
                    return Err("give one of 'rev' and 'ref', once".into());
                }
            }
            Some(("dir", value)) if !value.is_empty() => {
                let sub = PathBuf::from(value);
                if !sub.components().all(|c| matches!(c, Component::Normal(_))) {
                    return Err(format!("'dir={value}' must be a relative path inside the repository, without '..'"));
                }
                if dir.replace(sub).is_some() {
                    return Err("give 'dir' once".into());
                }
            }
            _ => {
                return Err(format!("unsupported parameter '{pair}' (only 'rev=SHA' or 'ref=NAME', and 'dir=SUBDIR')"))
            }
        }
    }
    Ok(GitUrl { path: path.to_string(), rev, dir })
}

/// A revision's tree in the store.
#[derive(Debug, Clone)]
pub(crate) struct Checkout {
    /// The full commit hash.
    pub rev: String,
    pub path: StorePath,
    /// Its canonical physical directory.
    pub dir: PathBuf,
}

/// The store copy of `repo`'s tree at `rev` (a commit hash, branch, tag…;
/// `None`: HEAD).
pub(crate) fn checkout(store: &Store, repo: &Path, rev: Option<&str>) -> Result<Checkout, FlakeError> {
    let bad = |message: String| FlakeError::BadFlake { dir: repo.to_path_buf(), message };
    let spec = rev.unwrap_or("HEAD");
    if spec.is_empty() || spec.starts_with('-') {
        return Err(bad(format!("'{spec}' is not a git revision")));
    }
    let known = if is_full_hash(spec) { cached(store, spec).map(|path| (spec.to_string(), path)) } else { None };
    let (rev, path) = match known {
        Some(known) => known,
        None => {
            if !repo.join(".git").exists() {
                return Err(bad("it is not the top level of a git repository (it has no .git)".into()));
            }
            let sha = rev_parse(repo, spec).map_err(bad)?;
            match cached(store, &sha) {
                Some(path) => (sha, path),
                None => {
                    let path = import(store, repo, &sha)?;
                    remember(store, &sha, &path)?;
                    (sha, path)
                }
            }
        }
    };
    store.add_temp_root(&path)?;
    Ok(Checkout { rev, dir: physical_dir(store, &path)?, path })
}

/// The canonical physical directory of a valid store path.
pub(crate) fn physical_dir(store: &Store, path: &StorePath) -> Result<PathBuf, FlakeError> {
    let physical = store.physical_path(path);
    std::fs::canonicalize(&physical).map_err(|source| FlakeError::Io { action: "resolving", path: physical, source })
}

/// Where the repository says its source lives: its `origin` remote, as a
/// URL that is the same for every clone (credentials dropped; ssh and scp
/// forms written as https; no trailing `.git`). A remote on this machine's
/// filesystem names no public place, so it gives `None`, as does a
/// repository without `origin`. The remote is read from `.git/config`
/// itself rather than through `git`, so a revision built before is built
/// again without running git at all.
pub(crate) fn source_url(repo: &Path) -> Option<String> {
    let dot_git = repo.join(".git");
    // A linked worktree's `.git` is a file: `gitdir: PATH`, whose
    // `commondir` leads to the shared config.
    let git_dir = if dot_git.is_file() {
        let text = std::fs::read_to_string(&dot_git).ok()?;
        let dir = repo.join(text.strip_prefix("gitdir:")?.trim());
        match std::fs::read_to_string(dir.join("commondir")) {
            Ok(common) => dir.join(common.trim()),
            Err(_) => dir,
        }
    } else {
        dot_git
    };
    let config = std::fs::read_to_string(git_dir.join("config")).ok()?;
    normalise_remote(&origin_url(&config)?)
}

/// `url` of `[remote "origin"]` in a git config file's text (the last one
/// given, as git reads it).
fn origin_url(config: &str) -> Option<String> {
    let mut in_origin = false;
    let mut url = None;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let header: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            in_origin = header.eq_ignore_ascii_case("[remote\"origin\"]");
        } else if in_origin {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim().eq_ignore_ascii_case("url") {
                    url = Some(value.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    url
}

/// See [`source_url`].
fn normalise_remote(remote: &str) -> Option<String> {
    let (host, path) = if let Some((scheme, rest)) = remote.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git" | "git+ssh") {
            return None;
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next().unwrap_or(authority);
        // An ssh port says how to connect, not where the source is.
        let host = if scheme == "ssh" || scheme == "git+ssh" { host.split(':').next().unwrap_or(host) } else { host };
        let host = if scheme == "http" { format!("http://{host}") } else { format!("https://{host}") };
        (host, path.to_string())
    } else {
        // scp-like: [user@]host:path (a local path has no ':' before its first '/').
        let (authority, path) = remote.split_once(':')?;
        if authority.contains('/') || authority.is_empty() {
            return None;
        }
        let host = authority.rsplit('@').next().unwrap_or(authority);
        (format!("https://{host}"), path.to_string())
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    if host.ends_with("://") || path.is_empty() {
        return None;
    }
    Some(format!("{host}/{path}"))
}

pub(crate) fn is_full_hash(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The store path a commit gave before, if it is still valid (and then
/// held: a temporary root of this process).
fn cached(store: &Store, sha: &str) -> Option<StorePath> {
    let text = std::fs::read_to_string(store.root().join(CACHE_DIR).join(sha)).ok()?;
    let path = StorePath::parse(text.trim()).ok()?;
    matches!(store.hold(&path), Ok(true)).then_some(path)
}

/// Forgets the revisions whose store copies are gone (after a GC), so the
/// cache never outlives what it points to; how many it forgot.
pub fn prune_revision_cache(store: &Store) -> usize {
    let Ok(entries) = std::fs::read_dir(store.root().join(CACHE_DIR)) else { return 0 };
    let mut forgotten = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_full_hash(&name) && cached(store, &name).is_none() && std::fs::remove_file(entry.path()).is_ok() {
            forgotten += 1;
        }
    }
    forgotten
}

fn remember(store: &Store, sha: &str, path: &StorePath) -> Result<(), FlakeError> {
    let dir = store.root().join(CACHE_DIR);
    fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> FlakeError + 'p {
        move |source| FlakeError::Io { action, path: path.to_path_buf(), source }
    }
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let temp = dir.join(format!(".{sha}.{}", std::process::id()));
    std::fs::write(&temp, format!("{path}\n")).map_err(io("writing", &temp))?;
    let file = dir.join(sha);
    std::fs::rename(&temp, &file).map_err(io("writing", &file))
}

/// `git -C repo`, kept from running what the repository's own configuration
/// names: repositories are untrusted. `core.fsmonitor` is a program `git
/// status` would run, and a filter driver's `clean`/`smudge`/`process`
/// programs run on `status` and `archive` for the paths `.gitattributes`
/// assigns them; every configured filter is emptied (git then passes the
/// bytes through as stored). Without the optional locks a read never writes.
pub(crate) fn git_in(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"]);
    for name in configured_filters(repo) {
        for key in ["clean", "smudge", "process"] {
            cmd.arg("-c").arg(format!("filter.{name}.{key}="));
        }
        cmd.arg("-c").arg(format!("filter.{name}.required=false"));
    }
    cmd.arg("-C").arg(repo).env("GIT_OPTIONAL_LOCKS", "0").stdin(Stdio::null());
    cmd
}

/// The filter drivers git's configuration for `repo` names (reading
/// configuration runs nothing).
fn configured_filters(repo: &Path) -> Vec<String> {
    let out = Command::new("git")
        .args(["-c", "core.fsmonitor=false", "-C"])
        .arg(repo)
        .args(["config", "--null", "--get-regexp", r"^filter\."])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else { return Vec::new() };
    let mut names: Vec<String> = filter_names(&out.stdout);
    names.sort();
    names.dedup();
    names
}

/// The driver names in `git config --null --get-regexp` output: each entry
/// is `filter.<name>.<key>`, a newline, the value and a NUL.
fn filter_names(output: &[u8]) -> Vec<String> {
    output
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let key = String::from_utf8_lossy(entry.split(|&b| b == b'\n').next()?).into_owned();
            let name = key.strip_prefix("filter.")?.rsplit_once('.')?.0;
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// `git rev-parse --verify SPEC^{commit}`: the full commit hash.
fn rev_parse(repo: &Path, spec: &str) -> Result<String, String> {
    let out = git_in(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{spec}^{{commit}}"))
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !is_full_hash(&sha) {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let detail = if stderr.is_empty() { String::new() } else { format!(" ({stderr})") };
        return Err(format!("the git repository has no revision or ref '{spec}'{detail}"));
    }
    Ok(sha)
}

/// Adds the tree of commit `sha` to the store as `source`, unpacked
/// straight into a staging directory that then moves into place.
fn import(store: &Store, repo: &Path, sha: &str) -> Result<StorePath, FlakeError> {
    let staging = store.staging_dir()?;
    let result = unpack_revision(repo, sha, &staging);
    if let Err(e) = result {
        discard_tree(&staging);
        return Err(e);
    }
    Ok(store.add_staged_source(&staging, "source")?)
}

/// Unpacks `git archive` of commit `sha` into the empty directory `dest`.
fn unpack_revision(repo: &Path, sha: &str, dest: &Path) -> Result<(), FlakeError> {
    let bad = |message: String| FlakeError::BadFlake { dir: repo.to_path_buf(), message };
    let mut child = git_in(repo)
        .args(["archive", "--format=tar", sha])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| bad(format!("cannot run git: {e}")))?;
    let extracted = match child.stdout.take() {
        Some(stdout) => extract(stdout, dest),
        None => Err(ExtractError::Tar(std::io::Error::other("git archive's output is not a pipe"))),
    };
    // Drain stderr after stdout so a blocked git cannot deadlock us.
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(|e| bad(format!("waiting for git archive: {e}")))?;
    // A refused entry stops reading, and git then dies of the closed pipe:
    // the refusal is the error to report.
    if let Err(refused @ ExtractError::Tree(_)) = extracted {
        return Err(bad(format!("the tree of revision {sha} cannot be unpacked safely: {refused}")));
    }
    if !status.success() {
        return Err(bad(format!("git archive of revision {sha} failed: {}", stderr.trim())));
    }
    extracted.map_err(|e| bad(format!("extracting git archive of revision {sha}: {e}")))
}

/// Why a `git archive` stream could not be unpacked.
#[derive(Debug, thiserror::Error)]
enum ExtractError {
    #[error("cannot read the archive: {0}")]
    Tar(#[from] std::io::Error),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("cannot write '{entry}': {source}")]
    Write { entry: String, source: std::io::Error },
}

/// Unpacks a tar stream into the empty directory `dest`: directories,
/// regular files (keeping only whether they are executable) and symlinks;
/// nothing else. The tree is untrusted (a commit can hold any tree object,
/// duplicate names included), so it is written with [`TreeWriter`]: an
/// entry below a symlink or a file, or one whose name was taken, is an
/// error, never a write through a link.
fn extract(stream: impl Read, dest: &Path) -> Result<(), ExtractError> {
    let mut writer = TreeWriter::open(dest)?;
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
            continue;
        }
        let path = entry.path_bytes().into_owned();
        // Directories are named with a trailing '/'.
        let relative = path.strip_suffix(b"/").filter(|_| kind.is_dir()).unwrap_or(&path);
        if kind.is_dir() {
            writer.dir(relative, 0o755)?;
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
            writer.symlink(relative, &target)?;
        } else {
            let mode = if entry.header().mode()? & 0o111 != 0 { 0o755 } else { 0o644 };
            let mut file = writer.file(relative, mode)?;
            let shown = || String::from_utf8_lossy(relative).into_owned();
            std::io::copy(&mut entry, &mut file).map_err(|source| ExtractError::Write { entry: shown(), source })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn filter_names_come_from_every_configured_driver_key() {
        let output = b"filter.lfs.smudge\ngit-lfs smudge -- %f\0filter.lfs.clean\nx\0filter.a b.c.process\ny\0";
        assert_eq!(filter_names(output), ["lfs", "lfs", "a b.c"]);
        assert!(filter_names(b"").is_empty());
    }

    use super::*;
    use mini_store::testing::{snapshot, Rng, Scratch};

    /// Appends a tar entry with exactly these bytes as its path and link
    /// (tar's own builder refuses hostile paths), with a GNU long-name
    /// record when the path needs one.
    fn raw_entry(tar: &mut tar::Builder<Vec<u8>>, path: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
        let field = |header: &mut tar::Header, f: fn(&mut tar::GnuHeader) -> &mut [u8; 100], bytes: &[u8]| {
            let n = bytes.len().min(100);
            f(header.as_gnu_mut().unwrap())[..n].copy_from_slice(&bytes[..n]);
        };
        if path.len() > 100 {
            let mut long = tar::Header::new_gnu();
            long.set_entry_type(tar::EntryType::GNULongName);
            field(&mut long, |g| &mut g.name, b"././@LongLink");
            let body = [path, b"\0"].concat();
            long.set_size(body.len() as u64);
            long.set_cksum();
            tar.append(&long, body.as_slice()).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(if kind.is_dir() { 0o775 } else { 0o664 });
        header.set_size(data.len() as u64);
        field(&mut header, |g| &mut g.name, path);
        field(&mut header, |g| &mut g.linkname, link);
        header.set_cksum();
        tar.append(&header, data).unwrap();
    }

    /// One tar entry: path, kind, link target, contents.
    type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

    fn tar_of(entries: &[RawEntry]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, kind, link, data) in entries {
            raw_entry(&mut tar, path, *kind, link, data);
        }
        tar.into_inner().unwrap()
    }

    use tar::EntryType::{Directory as D, Regular as F, Symlink as L};

    #[test]
    fn extraction_keeps_modes_and_symlinks_and_refuses_escapes() {
        let s = Scratch::new("extract");
        let dir = s.0.join("dest");
        std::fs::create_dir(&dir).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, mode: u32, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(data.len() as u64);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            builder.append_data(&mut header, path, data).unwrap();
        };
        add("bin/", 0o775, tar::EntryType::Directory, b"", None);
        add("bin/run", 0o775, tar::EntryType::Regular, b"#!/bin/sh\n", None);
        add("data.txt", 0o664, tar::EntryType::Regular, b"hi", None);
        add("link", 0o777, tar::EntryType::Symlink, b"", Some("data.txt"));
        let bytes = builder.into_inner().unwrap();
        extract(bytes.as_slice(), &dir).unwrap();
        let mode = |p: &str| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode("bin/run"), 0o755);
        assert_eq!(mode("data.txt"), 0o644);
        assert_eq!(std::fs::read_link(dir.join("link")).unwrap(), Path::new("data.txt"));
        assert_eq!(std::fs::read_to_string(dir.join("link")).unwrap(), "hi");

        for path in [&b"../escape"[..], b"/etc/escape", b"a/../../escape", b"./x"] {
            let fresh = s.0.join("fresh");
            std::fs::create_dir(&fresh).unwrap();
            let err = extract(tar_of(&[(path, F, b"", b"")]).as_slice(), &fresh).unwrap_err();
            assert!(matches!(err, ExtractError::Tree(TreeError::BadPath { .. })), "{err}");
            assert_eq!(std::fs::read_dir(&s.0).unwrap().count(), 2, "{}", path.escape_ascii());
            std::fs::remove_dir_all(&fresh).unwrap();
        }
    }

    /// The trees of issue 13: a symlink to a victim directory, then a file
    /// below it; a symlink to a victim file, then a file of the same name.
    #[test]
    fn extraction_never_writes_through_a_symlink_of_the_tree() {
        let s = Scratch::new("links");
        let victim = s.0.join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("existing.txt"), "keep").unwrap();
        let (victim_dir, victim_file) = (victim.to_str().unwrap(), victim.join("existing.txt"));
        let victim_file = victim_file.to_str().unwrap();
        let attacks: [&[RawEntry]; 4] = [
            &[(b"a", L, victim_dir.as_bytes(), b""), (b"a/pwn", F, b"", b"pwned")],
            &[(b"a", L, victim_dir.as_bytes(), b""), (b"a/", D, b"", b""), (b"a/pwn", F, b"", b"pwned")],
            &[(b"z", L, victim_file.as_bytes(), b""), (b"z", F, b"", b"pwned")],
            &[(b"a", L, b"..", b""), (b"a/victim/pwn", F, b"", b"pwned")],
        ];
        for (i, attack) in attacks.iter().enumerate() {
            let dest = s.0.join(format!("dest{i}"));
            std::fs::create_dir(&dest).unwrap();
            let err = extract(tar_of(attack).as_slice(), &dest).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("not a directory") || text.contains("duplicate entry"), "{text}");
            assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1, "attack {i}");
            assert_eq!(std::fs::read_to_string(victim.join("existing.txt")).unwrap(), "keep", "attack {i}");
        }
    }

    /// Random tar streams (symlinks aimed outside, absolute and `..`
    /// paths, duplicates, entries below links and files, deep paths) never
    /// write outside the destination and never panic.
    #[test]
    fn extraction_of_random_trees_stays_inside_its_destination() {
        let s = Scratch::new("fuzz");
        let sentinel = s.0.join("sentinel");
        std::fs::create_dir_all(sentinel.join("inner")).unwrap();
        std::fs::write(sentinel.join("keep.txt"), "keep").unwrap();
        let dest = s.0.join("dest");
        std::fs::create_dir(&dest).unwrap();
        let before = snapshot(&sentinel);
        let deep = vec!["d"; 300].join("/");
        let components: [&str; 9] = ["a", "b", "c", "a", "..", ".", "", "sentinel", "keep.txt"];
        let targets: [&[u8]; 6] = [sentinel.as_os_str().as_encoded_bytes(), b"../sentinel", b"..", b"/", b"a", b""];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d_u64);
        let mut next = |n: u64| rng.below(n);
        let (mut unpacked, mut refused) = (0, 0);
        for case in 0..500 {
            let mut tar = tar::Builder::new(Vec::new());
            for _ in 0..1 + next(6) {
                let mut path: Vec<&str> = (0..1 + next(3)).map(|_| components[next(9) as usize]).collect();
                if next(4) != 0 {
                    path.retain(|c| !matches!(*c, "" | "." | ".."));
                }
                let mut path = path.join("/");
                match next(12) {
                    0 => path.insert(0, '/'),
                    1 => path = format!("{deep}/{path}"),
                    _ => {}
                }
                let (kind, link): (tar::EntryType, &[u8]) = match next(3) {
                    0 => (D, b""),
                    1 => (L, targets[next(6) as usize]),
                    _ => (F, b""),
                };
                let path = if kind.is_dir() && next(2) == 0 { format!("{path}/") } else { path };
                raw_entry(&mut tar, path.as_bytes(), kind, link, b"pwned");
            }
            let bytes = tar.into_inner().unwrap();
            match std::panic::catch_unwind(|| extract(bytes.as_slice(), &dest)) {
                Ok(Ok(())) => unpacked += 1,
                Ok(Err(_)) => refused += 1,
                Err(_) => panic!("case {case}: extraction panicked"),
            }
            assert_eq!(snapshot(&sentinel), before, "case {case}: the sentinel changed");
            let beside: Vec<_> = std::fs::read_dir(&s.0).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(beside.len(), 2, "case {case}: something appeared beside the destination: {beside:?}");
            std::fs::remove_dir_all(&dest).unwrap();
            std::fs::create_dir(&dest).unwrap();
        }
        assert!(unpacked > 50 && refused > 50, "both outcomes reached: {unpacked} / {refused}");
    }

    #[test]
    fn urls_name_a_path_a_revision_and_a_directory() {
        let url = |rest: &str| parse_url(rest);
        let parsed = url("///srv/repo?rev=abc&dir=examples/quotes").unwrap();
        assert_eq!(parsed.path, "/srv/repo");
        assert_eq!(parsed.rev.as_deref(), Some("abc"));
        assert_eq!(parsed.dir.as_deref(), Some(Path::new("examples/quotes")));
        assert_eq!(url("").unwrap(), GitUrl { path: ".".into(), rev: None, dir: None });
        assert_eq!(url("../lib?ref=v1").unwrap().path, "../lib");
        assert!(url("//host/x").unwrap_err().contains("absolute path"));
        assert!(url(".?rev=a&ref=b").unwrap_err().contains("once"));
        assert!(url(".?dir=../x").unwrap_err().contains("without '..'"));
        assert!(url(".?dir=/x").is_err());
        assert!(url(".?shallow=1").unwrap_err().contains("unsupported parameter 'shallow=1'"));
    }

    #[test]
    fn remotes_become_the_same_url_for_every_clone() {
        let https = Some("https://github.com/acme/shop".to_string());
        for remote in [
            "https://github.com/acme/shop.git",
            "https://user:token@github.com/acme/shop",
            "git@github.com:acme/shop.git",
            "ssh://git@github.com:22/acme/shop.git",
            "git://github.com/acme/shop/",
        ] {
            assert_eq!(normalise_remote(remote), https, "{remote}");
        }
        assert_eq!(normalise_remote("http://gitea.lan:3000/a/b"), Some("http://gitea.lan:3000/a/b".into()));
        for local in ["/srv/git/shop.git", "file:///srv/git/shop", "../shop", "C", "https://"] {
            assert_eq!(normalise_remote(local), None, "{local}");
        }
    }

    #[test]
    fn the_origin_url_is_read_from_the_config() {
        let config = "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = https://a/b\n\
                      [remote \"origin\"]\n\turl = git@git.example:acme/shop.git\n\tfetch = +refs/heads/*\n";
        assert_eq!(origin_url(config).as_deref(), Some("git@git.example:acme/shop.git"));
        assert_eq!(origin_url("[core]\n"), None);
    }

    #[test]
    fn only_full_hashes_skip_git() {
        assert!(is_full_hash(&"a".repeat(40)));
        assert!(!is_full_hash(&"A".repeat(40)));
        assert!(!is_full_hash("main"));
    }
}
