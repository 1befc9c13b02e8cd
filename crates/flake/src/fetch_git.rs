//! `builtins.fetchGit` of a local repository: a commit's tree in the
//! store, copied exactly as a `git+file:` flake at that revision is (the
//! same `git archive` unpacked through `TreeWriter`, the same revision
//! cache, so fetching a full hash again runs no `git archive`), with the
//! commit's facts Nix's `fetchGit` returns: its revision count and time.
//!
//! As in Nix, `rev` must be reachable from `ref` (HEAD when no `ref` is
//! given) unless `allRefs` says any ref will do. A working tree with
//! uncommitted changes is refused rather than taken: mini fetches commits.

use std::path::{Path, PathBuf};

use mini_store::store::Store;
use mini_store::store_path::StorePath;

use crate::git::{checkout, is_full_hash};
use crate::worktree;

/// What to fetch: `fetchGit`'s arguments, the URL made a local path.
#[derive(Debug, Clone, Copy)]
pub struct GitFetchRequest<'a> {
    pub repo: &'a Path,
    /// A full commit hash.
    pub rev: Option<&'a str>,
    pub git_ref: Option<&'a str>,
    pub name: &'a str,
    pub submodules: bool,
    pub shallow: bool,
    pub all_refs: bool,
}

/// A commit's tree in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitFetchedTree {
    pub path: StorePath,
    /// Its physical directory.
    pub dir: PathBuf,
    pub rev: String,
    /// Commits reachable from `rev`; 0 when shallow, as Nix reports it.
    pub rev_count: u64,
    /// The commit time, seconds since the epoch.
    pub last_modified: i64,
}

/// Adds the tree of the commit `request` names to `store`. Errors are
/// messages for the user.
pub fn fetch_git(store: &Store, request: &GitFetchRequest) -> Result<GitFetchedTree, String> {
    let repo = request.repo;
    if !repo.join(".git").exists() {
        return Err(format!("'{}' is not the top of a git working tree (it has no .git)", repo.display()));
    }
    if let Some(name) = request.git_ref.filter(|r| r.is_empty() || r.starts_with('-')) {
        return Err(format!("'{name}' is not a git ref"));
    }
    let rev = match (request.rev, request.git_ref) {
        (Some(rev), git_ref) => {
            if !is_full_hash(rev) || git(repo, &["cat-file", "-e", &format!("{rev}^{{commit}}")]).is_err() {
                return Err(format!("cannot find git revision '{rev}' in repository '{}'", repo.display()));
            }
            if !request.all_refs {
                let on = git_ref.unwrap_or("HEAD");
                if git(repo, &["merge-base", "--is-ancestor", rev, &commit(on)]).is_err() {
                    return Err(format!(
                        "cannot find git revision '{rev}' in ref '{on}' of repository '{}': make sure the rev is \
                         on the ref you gave, or add allRefs = true; to fetchGit",
                        repo.display()
                    ));
                }
            }
            rev.to_string()
        }
        (None, git_ref) => {
            if git_ref.is_none() {
                refuse_dirty(repo)?;
            }
            let spec = git_ref.unwrap_or("HEAD");
            let sha = git(repo, &["rev-parse", "--verify", "--quiet", &commit(spec)])
                .map_err(|_| format!("the git repository '{}' has no ref '{spec}'", repo.display()))?;
            if !is_full_hash(&sha) {
                return Err(format!("git rev-parse of '{spec}' gave '{sha}', not a commit hash"));
            }
            sha
        }
    };
    let tree = checkout(store, repo, Some(&rev)).map_err(|e| e.to_string())?;
    if request.submodules && tree.dir.join(".gitmodules").exists() {
        return Err(format!(
            "revision {rev} of '{}' has submodules, and fetchGit's submodules = true is not supported by mini",
            repo.display()
        ));
    }
    let (path, dir) = if request.name == "source" {
        (tree.path, tree.dir)
    } else {
        let path = store.add_path(&tree.dir, request.name).map_err(|e| e.to_string())?;
        (path.clone(), store.physical_path(&path))
    };
    let rev_count = if request.shallow {
        0
    } else {
        let count = git(repo, &["rev-list", "--count", &rev])?;
        count.parse().map_err(|_| format!("git rev-list --count gave '{count}'"))?
    };
    let time = git(repo, &["log", "-1", "--format=%ct", &rev])?;
    let last_modified = time.parse().map_err(|_| format!("git log gave '{time}' as the commit time"))?;
    Ok(GitFetchedTree { path, dir, rev, rev_count, last_modified })
}

/// `SPEC^{commit}`: what `SPEC` names, peeled to a commit.
fn commit(spec: &str) -> String {
    format!("{spec}^{{commit}}")
}

fn refuse_dirty(repo: &Path) -> Result<(), String> {
    let canonical = std::fs::canonicalize(repo).map_err(|e| format!("cannot resolve '{}': {e}", repo.display()))?;
    match worktree::inspect(&canonical).map_err(|e| e.to_string())? {
        Some(tree) if tree.dirty => Err(format!(
            "Git tree '{}' is dirty: fetchGit takes commits only; commit the changes, or give 'rev' or 'ref'",
            tree.top.display()
        )),
        _ => Ok(()),
    }
}

/// Runs `git -C repo ARGS`; its trimmed output, or why it failed.
fn git(repo: &Path, args: &[&str]) -> Result<String, String> {
    let out = crate::git::git_in(repo).args(args).output().map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!("git {} failed in '{}': {stderr}", args.join(" "), repo.display()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
