//! Flakes at a git revision: `git+file:DIR?rev=…` / `?ref=…` (HEAD when
//! neither is given). The revision's tree — exactly what it tracks, with
//! no working-tree changes, no `.git` and no file times — is extracted
//! from `git archive` and added to the store by content, and the flake is
//! evaluated from that store copy. Which store path a commit gave is
//! remembered in `<store root>/git-revs/<sha>`, so building a full commit
//! hash again runs no git at all.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use mini_store::store::{discard_tree, Store};
use mini_store::store_path::StorePath;

use crate::FlakeError;

/// The directory, under the store root, of the revision cache.
const CACHE_DIR: &str = "git-revs";

/// The canonical physical directory of the store copy of `repo`'s tree at
/// `rev` (a commit hash, branch, tag…; `None`: HEAD).
pub(crate) fn checkout(store: &Store, repo: &Path, rev: Option<&str>) -> Result<PathBuf, FlakeError> {
    let bad = |message: String| FlakeError::BadFlake { dir: repo.to_path_buf(), message };
    if !repo.join(".git").exists() {
        return Err(bad("it is not the top level of a git repository (it has no .git)".into()));
    }
    let spec = rev.unwrap_or("HEAD");
    if spec.is_empty() || spec.starts_with('-') {
        return Err(bad(format!("'{spec}' is not a git revision")));
    }
    let known = if is_full_hash(spec) { cached(store, spec) } else { None };
    let path = match known {
        Some(path) => path,
        None => {
            let sha = rev_parse(repo, spec).map_err(bad)?;
            match cached(store, &sha) {
                Some(path) => path,
                None => {
                    let path = import(store, repo, &sha)?;
                    remember(store, &sha, &path)?;
                    path
                }
            }
        }
    };
    store.add_temp_root(&path)?;
    let physical = store.physical_path(&path);
    std::fs::canonicalize(&physical).map_err(|source| FlakeError::Io { action: "resolving", path: physical, source })
}

fn is_full_hash(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The store path a commit gave before, if it is still valid.
fn cached(store: &Store, sha: &str) -> Option<StorePath> {
    let text = std::fs::read_to_string(store.root().join(CACHE_DIR).join(sha)).ok()?;
    let path = StorePath::parse(text.trim()).ok()?;
    store.is_valid(&path).then_some(path)
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

/// Adds the tree of commit `sha` to the store as `source`.
fn import(store: &Store, repo: &Path, sha: &str) -> Result<StorePath, FlakeError> {
    let staging = store.staging_dir()?;
    let result = import_into(store, repo, sha, &staging);
    discard_tree(&staging);
    result
}

fn import_into(store: &Store, repo: &Path, sha: &str, staging: &Path) -> Result<StorePath, FlakeError> {
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
    let tree = staging.join("tree");
    let stdout = child.stdout.take().expect("stdout is piped");
    let extracted = extract(stdout, &tree);
    // Drain stderr after stdout so a blocked git cannot deadlock us.
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(|e| bad(format!("waiting for git archive: {e}")))?;
    if !status.success() {
        return Err(bad(format!("git archive of revision {sha} failed: {}", stderr.trim())));
    }
    extracted.map_err(|e| bad(format!("extracting git archive of revision {sha}: {e}")))?;
    Ok(store.add_path(&tree, "source")?)
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
    fn only_full_hashes_skip_git() {
        assert!(is_full_hash(&"a".repeat(40)));
        assert!(!is_full_hash(&"A".repeat(40)));
        assert!(!is_full_hash("main"));
    }
}
