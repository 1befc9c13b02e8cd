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
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use mini_store::store::{discard_tree, Store};
use mini_store::store_path::StorePath;

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

/// `git rev-parse --verify SPEC^{commit}`: the full commit hash.
fn rev_parse(repo: &Path, spec: &str) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{spec}^{{commit}}"))
        .stdin(Stdio::null())
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
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", sha])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| bad(format!("cannot run git: {e}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let extracted = extract(stdout, dest);
    // Drain stderr after stdout so a blocked git cannot deadlock us.
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(|e| bad(format!("waiting for git archive: {e}")))?;
    if !status.success() {
        return Err(bad(format!("git archive of revision {sha} failed: {}", stderr.trim())));
    }
    extracted.map_err(|e| bad(format!("extracting git archive of revision {sha}: {e}")))
}

/// Unpacks a tar stream into `dest`: directories, regular files (keeping
/// only whether they are executable) and symlinks; nothing else.
fn extract(stream: impl Read, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let relative = entry.path()?.into_owned();
        if relative.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(std::io::Error::other(format!("unsafe path '{}' in the archive", relative.display())));
        }
        let target = dest.join(&relative);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if !(kind.is_file() || kind.is_symlink()) {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if kind.is_symlink() {
            let link = entry
                .link_name()?
                .ok_or_else(|| std::io::Error::other(format!("symlink '{}' has no target", relative.display())))?;
            std::os::unix::fs::symlink(link.as_ref(), &target)?;
        } else {
            let executable = entry.header().mode()? & 0o111 != 0;
            let mut file = std::fs::File::create(&target)?;
            std::io::copy(&mut entry, &mut file)?;
            let mode = if executable { 0o755 } else { 0o644 };
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction_keeps_modes_and_symlinks_and_refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("mini-git-extract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
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
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("bin/run"), 0o755);
        assert_eq!(mode("data.txt"), 0o644);
        assert_eq!(std::fs::read_link(dir.join("link")).unwrap(), Path::new("data.txt"));
        assert_eq!(std::fs::read_to_string(dir.join("link")).unwrap(), "hi");
        std::fs::remove_dir_all(&dir).unwrap();

        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(0);
        let name = b"../escape";
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b""[..]).unwrap();
        let bytes = builder.into_inner().unwrap();
        assert!(extract(bytes.as_slice(), &dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
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
