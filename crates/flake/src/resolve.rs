//! From installables to what commands act on: a `.drv` (written to the
//! store) with the output paths it will produce, or a store path that is
//! already there. Output paths are read back from the `.drv` itself, so a
//! flake attribute and the `.drv` path it evaluates to resolve alike.
//!
//! A flake named by its directory in a git working tree is evaluated as
//! Nix does: a clean tree as its HEAD commit (see [`crate::worktree`]), a
//! dirty one as it is, with a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mini_lang::Evaluator;
use mini_store::store::{Store, StoreError};
use mini_store::store_path::StorePath;

use crate::flake::{FlakeDerivation, FlakeSession};
use crate::inputs::FlakeLocation;
use crate::installable::{self, Installable, FLAKE_FILE};
use crate::relock::{LockReport, LockUpdate};
use crate::worktree::{self, WorkTree};
use crate::FlakeError;

/// What an installable resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A derivation to build, and the paths of the outputs asked for (all
    /// of them, unless the installable named one output's path).
    Derivation { drv_path: StorePath, outputs: BTreeMap<String, StorePath> },
    /// A store path that is not a derivation: nothing to build.
    Opaque(StorePath),
}

/// How resolving treats the lock files of the flakes named.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Lock a flake whose `mini.lock` is missing or stale instead of
    /// refusing it (`--update-lock`).
    pub update_lock: bool,
}

/// What installables resolved to, and the locks made on the way.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub targets: Vec<Target>,
    /// Locks `update_lock` made or moved, for the caller to report.
    pub lock_updates: Vec<LockReport>,
    /// Lines for stderr, complete (`note: …`): untracked files the
    /// sources left out.
    pub diagnostics: Vec<String>,
}

/// Resolves installables in order, evaluating the flakes among them (if
/// any) on an evaluation thread of their own and writing their `.drv`s.
/// For commands that only inspect: [`Resolved::diagnostics`] go straight
/// to stderr.
pub fn resolve(store: &Store, texts: &[String]) -> Result<Vec<Target>, FlakeError> {
    let resolved = resolve_with(store, texts, &ResolveOptions::default())?;
    for line in &resolved.diagnostics {
        eprintln!("{line}");
    }
    Ok(resolved.targets)
}

/// [`resolve`], with options.
pub fn resolve_with(store: &Store, texts: &[String], options: &ResolveOptions) -> Result<Resolved, FlakeError> {
    let installables = texts.iter().map(|t| installable::parse(t, store.root())).collect::<Result<Vec<_>, _>>()?;
    let without_evaluation: Option<Vec<Wanted>> = installables
        .iter()
        .map(|i| match i {
            Installable::StorePath(path) => Some(Wanted::store_path(path)),
            Installable::Flake { .. } | Installable::Git { .. } => None,
        })
        .collect();
    if let Some(wanted) = without_evaluation {
        let targets = wanted.into_iter().map(|w| w.target(store)).collect::<Result<_, _>>()?;
        return Ok(Resolved { targets, lock_updates: Vec::new(), diagnostics: Vec::new() });
    }
    let (store, options) = (store.clone(), options.clone());
    mini_lang::with_evaluator(move |ev| resolve_in(ev, &store, &installables, &options)).map_err(FlakeError::Thread)?
}

/// [`resolve_with`] with the caller's evaluator (which this makes pure, and
/// restricted to each flake's directory while evaluating that flake).
pub fn resolve_in(
    ev: &mut Evaluator,
    store: &Store,
    installables: &[Installable],
    options: &ResolveOptions,
) -> Result<Resolved, FlakeError> {
    let mut session = FlakeSession::new(ev, store);
    session.update_lock = options.update_lock;
    let mut wanted = Vec::with_capacity(installables.len());
    let mut named = Vec::new();
    for installable in installables {
        let Some((flake, attr)) = locate(&mut session, store, installable, options.update_lock, &mut named)? else {
            if let Installable::StorePath(path) = installable {
                wanted.push(Wanted::store_path(path));
            }
            continue;
        };
        let derivation = session.derivation(&flake, attr).map_err(|e| explain(&named, &flake, e))?;
        let FlakeDerivation { drv_path, output } = derivation;
        wanted.push(Wanted::Outputs { drv_path, only: output });
    }
    session.flush()?;
    let diagnostics = diagnostics(&session, &named);
    let lock_updates = std::mem::take(&mut session.lock_updates);
    let targets = wanted.into_iter().map(|w| w.target(store)).collect::<Result<_, _>>()?;
    Ok(Resolved { targets, lock_updates, diagnostics })
}

/// A flake named by its directory in a git working tree, as located.
pub(crate) struct Named {
    pub location: FlakeLocation,
    pub tree: WorkTree,
}

/// Where the flake an installable names is evaluated from, and its
/// attribute path (`None` for a store path). A flake in a working tree is
/// added to `named`, for [`diagnostics`]; a dirty one warns on stderr
/// right away (once per tree), as Nix does, so the warning precedes any
/// evaluation error.
pub(crate) fn locate<'i>(
    session: &mut FlakeSession,
    store: &Store,
    installable: &'i Installable,
    update_lock: bool,
    named: &mut Vec<Named>,
) -> Result<Option<(FlakeLocation, &'i [String])>, FlakeError> {
    Ok(Some(match installable {
        Installable::StorePath(_) => return Ok(None),
        Installable::Flake { dir, attr } => {
            let (location, tree) = locate_working(session, store, dir, update_lock)?;
            if let Some(tree) = tree {
                if tree.dirty && !named.iter().any(|n| n.tree.top == tree.top) {
                    eprintln!("{}", tree.dirty_warning());
                }
                named.push(Named { location: location.clone(), tree });
            }
            (location, attr)
        }
        Installable::Git { repo, rev, dir, attr } => {
            let checkout = crate::git::checkout(store, repo, rev.as_deref())?;
            (FlakeLocation::at_revision(repo, &checkout, dir.as_deref()), attr)
        }
    }))
}

/// Where the flake in the working directory `dir` is evaluated from, as
/// Nix does it: a clean git tree is its HEAD commit, a dirty one is taken
/// as it is. A flake git does not track (or with `--update-lock`, one
/// whose lock is about to change) is taken as it is too.
fn locate_working(
    session: &mut FlakeSession,
    store: &Store,
    dir: &Path,
    update_lock: bool,
) -> Result<(FlakeLocation, Option<WorkTree>), FlakeError> {
    let working = FlakeLocation::working(dir.to_path_buf());
    let Some(tree) = worktree::inspect(dir)? else { return Ok((working, None)) };
    if tree.untracked.iter().any(|f| f == Path::new(FLAKE_FILE)) {
        return Ok((working, None));
    }
    if !tree.is_clean() {
        let dirty_rev = tree.head.clone();
        return Ok((FlakeLocation { dirty_rev, ..working }, Some(tree)));
    }
    if update_lock && !session.lock_is_current(&working)? {
        return Ok((working, Some(tree)));
    }
    let checkout = crate::git::checkout(store, &tree.top, tree.head.as_deref())?;
    let at_head = FlakeLocation::at_revision(&tree.top, &checkout, tree.sub.as_deref());
    if !at_head.dir.join(FLAKE_FILE).is_file() {
        // Not committed (git ignores it, say): the flake is not in git.
        return Ok((working, None));
    }
    Ok((FlakeLocation { clean_tree: Some(dir.to_path_buf()), ..at_head }, Some(tree)))
}

impl Named {
    /// The untracked files below the flake, but mini's own.
    fn untracked(&self) -> Vec<PathBuf> {
        let working = self.location.shown();
        self.tree.untracked.iter().filter(|f| !crate::flake_sources::is_mini_own(&working, f)).cloned().collect()
    }
}

/// An evaluation error of the flake at `flake`, with a note when it is a
/// clean working tree evaluated as its commit and files git does not
/// track are missing from that commit (a likely cause).
pub(crate) fn explain(named: &[Named], flake: &FlakeLocation, error: FlakeError) -> FlakeError {
    let (FlakeError::Eval(message), Some(rev)) = (&error, &flake.revision) else { return error };
    let Some(entry) = named.iter().find(|n| n.location.dir == flake.dir) else { return error };
    let what = format!("commit {}, which a clean tree is evaluated as", &rev[..7]);
    match worktree::untracked_note(&entry.untracked(), &what) {
        Some(note) => FlakeError::Eval(format!("{message}\n{note}")),
        None => error,
    }
}

/// What to say on stderr about the working trees of `named` once they
/// are evaluated: the untracked files their copies left out.
pub(crate) fn diagnostics(session: &FlakeSession, named: &[Named]) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in named {
        let left_out = session.left_out(&entry.location.dir, &entry.untracked());
        lines.extend(worktree::untracked_note(&left_out, "the flake's sources"));
    }
    let mut seen = std::collections::HashSet::new();
    lines.retain(|line| seen.insert(line.clone()));
    lines
}

/// Locks the inputs of the flake in `dir` (a working tree) as `update`
/// says, and writes its `mini.lock` (`mini lock`).
pub fn lock(store: &Store, dir: &Path, update: LockUpdate) -> Result<LockReport, FlakeError> {
    let dir = std::fs::canonicalize(dir).map_err(|source| FlakeError::FlakeDir { dir: dir.to_path_buf(), source })?;
    let store = store.clone();
    mini_lang::with_evaluator(move |ev| {
        let mut session = FlakeSession::new(ev, &store);
        session.lock(&FlakeLocation::working(dir), &update)
    })
    .map_err(FlakeError::Thread)?
}

/// A target before its `.drv` is read (which needs the `.drv` written).
enum Wanted {
    Outputs { drv_path: StorePath, only: Option<String> },
    Opaque(StorePath),
}

impl Wanted {
    fn store_path(path: &StorePath) -> Wanted {
        if path.name().ends_with(".drv") {
            Wanted::Outputs { drv_path: path.clone(), only: None }
        } else {
            Wanted::Opaque(path.clone())
        }
    }

    fn target(self, store: &Store) -> Result<Target, FlakeError> {
        match self {
            Wanted::Opaque(path) => Ok(Target::Opaque(path)),
            Wanted::Outputs { drv_path, only } => {
                let mut outputs = derivation_outputs(store, &drv_path)?;
                if let Some(only) = only {
                    outputs.retain(|name, _| *name == only);
                }
                Ok(Target::Derivation { drv_path, outputs })
            }
        }
    }
}

/// The output paths of a `.drv` in the store, which must be as written.
fn derivation_outputs(store: &Store, drv: &StorePath) -> Result<BTreeMap<String, StorePath>, FlakeError> {
    let bad = |message: String| FlakeError::BadDerivation { path: drv.clone(), message };
    let derivation = store.read_derivation(drv).map_err(|e| match e {
        StoreError::NotValid { path } => FlakeError::InvalidDerivation { path, root: store.root().to_path_buf() },
        StoreError::BadDerivation { source, .. } => bad(source.to_string()),
        other => FlakeError::Store(other),
    })?;
    let mut paths = BTreeMap::new();
    for (name, output) in derivation.outputs {
        let Some(path) = output.path else {
            return Err(bad(format!("output '{name}' has no path")));
        };
        paths.insert(name, path);
    }
    Ok(paths)
}
