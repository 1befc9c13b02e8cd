//! From installables to what commands act on: a `.drv` (written to the
//! store) with the output paths it will produce, or a store path that is
//! already there. Output paths are read back from the `.drv` itself, so a
//! flake attribute and the `.drv` path it evaluates to resolve alike.

use std::collections::BTreeMap;
use std::path::Path;

use mini_lang::Evaluator;
use mini_store::store::Store;
use mini_store::store_path::StorePath;

use crate::flake::{FlakeDerivation, FlakeSession};
use crate::installable::{self, Installable};
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

/// Resolves installables in order, evaluating the flakes among them (if
/// any) on an evaluation thread of their own and writing their `.drv`s.
pub fn resolve(store_root: &Path, texts: &[String]) -> Result<Vec<Target>, FlakeError> {
    let installables = texts.iter().map(|t| installable::parse(t, store_root)).collect::<Result<Vec<_>, _>>()?;
    let store = Store::open(store_root)?;
    let without_evaluation: Option<Vec<Wanted>> = installables
        .iter()
        .map(|i| match i {
            Installable::StorePath(path) => Some(Wanted::store_path(path)),
            Installable::Flake { .. } | Installable::Git { .. } => None,
        })
        .collect();
    if let Some(wanted) = without_evaluation {
        return wanted.into_iter().map(|w| w.target(&store)).collect();
    }
    mini_lang::with_evaluator(move |ev| resolve_in(ev, &store, &installables)).map_err(FlakeError::Thread)?
}

/// [`resolve`] with the caller's evaluator (which this makes pure, and
/// restricted to each flake's directory while evaluating that flake).
pub fn resolve_in(ev: &mut Evaluator, store: &Store, installables: &[Installable]) -> Result<Vec<Target>, FlakeError> {
    let mut session = FlakeSession::new(ev, store);
    let mut wanted = Vec::with_capacity(installables.len());
    for installable in installables {
        wanted.push(match installable {
            Installable::Flake { dir, attr } => {
                let FlakeDerivation { drv_path, output } = session.derivation(dir, attr)?;
                Wanted::Outputs { drv_path, only: output }
            }
            Installable::Git { repo, rev, attr } => {
                let dir = crate::git::checkout(store, repo, rev.as_deref())?;
                let FlakeDerivation { drv_path, output } = session.derivation(&dir, attr)?;
                Wanted::Outputs { drv_path, only: output }
            }
            Installable::StorePath(path) => Wanted::store_path(path),
        });
    }
    session.flush()?;
    wanted.into_iter().map(|w| w.target(store)).collect()
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

/// The `outputs` of a `.drv` in the store: `{ "out": { "path": "…" }, … }`.
fn derivation_outputs(store: &Store, drv: &StorePath) -> Result<BTreeMap<String, StorePath>, FlakeError> {
    if !store.is_valid(drv) {
        return Err(FlakeError::InvalidDerivation { path: drv.clone(), root: store.root().to_path_buf() });
    }
    let file = store.physical_path(drv);
    let text =
        std::fs::read_to_string(&file).map_err(|source| FlakeError::Io { action: "reading", path: file, source })?;
    let bad = |message: String| FlakeError::BadDerivation { path: drv.clone(), message };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let Some(outputs) = json.get("outputs").and_then(|o| o.as_object()) else {
        return Err(bad("it has no 'outputs' object".into()));
    };
    let mut paths = BTreeMap::new();
    for (name, output) in outputs {
        let Some(path) = output.get("path").and_then(|p| p.as_str()) else {
            return Err(bad(format!("output '{name}' has no path")));
        };
        paths.insert(name.clone(), StorePath::parse(path).map_err(|e| bad(e.to_string()))?);
    }
    Ok(paths)
}
