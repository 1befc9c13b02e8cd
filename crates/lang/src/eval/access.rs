//! Restricted evaluation. When [`Evaluator::allowed_paths`] is set (flakes,
//! `mini eval --pure`), every filesystem read the language can ask for —
//! `import`, `readFile`, `readDir`, `pathExists`, copying a path to the
//! store, `builtins.path` — is checked against it first, so an evaluation's
//! result depends only on the files it was given. Paths are resolved
//! through symlinks before the check: a link inside an allowed directory
//! cannot lead outside it.

use std::path::{Component, Path, PathBuf};

use super::Evaluator;
use crate::compile::canonicalize_lexically;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::source_map::Span;
use crate::value::Value;
use mini_store::store_path::StorePath;

impl Evaluator {
    /// Restricts filesystem reads to `dirs` and what is below them.
    pub fn restrict_to(&mut self, dirs: &[PathBuf]) -> EvalResult<()> {
        let mut allowed = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let canonical = std::fs::canonicalize(dir).map_err(|e| {
                EvalError::new(
                    ErrorKind::Io,
                    format!("cannot resolve '{}': {}", dir.display(), super::io_message(&e)),
                    None,
                )
            })?;
            allowed.push(canonical);
        }
        self.allowed_paths = Some(allowed);
        Ok(())
    }

    /// Where `path` is on disk. Values name store paths by the store's
    /// logical directory (`/mini/store/…`), which exists only inside builds;
    /// reading one (`import (fetchTarball …)`, `readFile` of a `toFile`)
    /// reads the store's real directory.
    pub(crate) fn on_disk(&self, path: &Path) -> PathBuf {
        if let (Some(store_dir), Ok(rest)) = (&self.store_dir, path.strip_prefix(mini_store::store_path::STORE_DIR)) {
            if rest.components().next().is_some() {
                return store_dir.join(rest);
            }
        }
        path.to_path_buf()
    }

    /// Records a store path this evaluation made or fetched and returns it
    /// as a string value that depends on it. In restricted evaluation its
    /// files may then be read: its contents are fixed by its hash. Only
    /// these: a store path named any other way (say with `appendContext`)
    /// grants nothing. A path that is itself a link is never allowed, and a
    /// link inside one is resolved before every check, like any other.
    pub(crate) fn made_store_path(&mut self, path: &StorePath) -> Value {
        self.allow_made(path);
        crate::primops::store_path_value(path)
    }

    /// [`Evaluator::made_store_path`]'s half that allows reading `path`.
    pub(crate) fn allow_made(&mut self, path: &StorePath) {
        if let (Some(store_dir), Some(allowed)) = (&self.store_dir, &mut self.allowed_paths) {
            let entry = store_dir.join(path.base_name());
            let is_link = std::fs::symlink_metadata(&entry).map_or(true, |m| m.file_type().is_symlink());
            if let (false, Ok(store_dir)) = (is_link, std::fs::canonicalize(store_dir)) {
                let dir = store_dir.join(path.base_name());
                if !allowed.contains(&dir) {
                    allowed.push(dir);
                }
            }
        }
    }

    /// Fails unless reading `path` is allowed in this evaluation.
    pub(crate) fn check_access(&self, path: &Path, span: Option<Span>) -> EvalResult<()> {
        let Some(allowed) = &self.allowed_paths else {
            return Ok(());
        };
        let resolved = resolve_physically(&self.on_disk(path));
        if allowed.iter().any(|dir| resolved.starts_with(dir)) {
            return Ok(());
        }
        let dirs: Vec<String> = allowed.iter().map(|d| d.display().to_string()).collect();
        let via =
            if resolved == path { String::new() } else { format!(" (which resolves to '{}')", resolved.display()) };
        Err(EvalError::new(
            ErrorKind::Eval,
            format!(
                "access to path '{}'{via} is forbidden in pure evaluation mode; only files under '{}' may be read",
                path.display(),
                dirs.join("', '")
            ),
            span,
        ))
    }
}

/// `path` with every symlink resolved. Of a path that does not exist, the
/// longest existing prefix is resolved and the rest appended (it cannot
/// hold symlinks, since it does not exist).
fn resolve_physically(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut missing: Vec<Component> = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            let mut full = canonical;
            full.extend(missing.iter().rev());
            return PathBuf::from(canonicalize_lexically(&full));
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                missing.push(last);
                existing = parent;
            }
            _ => return PathBuf::from(canonicalize_lexically(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tails_are_appended_to_the_resolved_prefix() {
        let dir = std::env::temp_dir().join(format!("mini-access-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("inside")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("inside/out")).unwrap();
        let real = std::fs::canonicalize(&dir).unwrap();
        assert_eq!(resolve_physically(&dir.join("inside/none/x")), real.join("inside/none/x"));
        assert_eq!(resolve_physically(&dir.join("inside/out/none")), PathBuf::from("/etc/none"));
        assert_eq!(resolve_physically(&dir.join("inside/none/../../..")), real.parent().unwrap());

        let mut ev = Evaluator::new();
        ev.restrict_to(&[dir.join("inside")]).unwrap();
        assert!(ev.check_access(&dir.join("inside/none"), None).is_ok());
        let refused = ev.check_access(&dir.join("inside/out/passwd"), None).unwrap_err();
        assert!(refused.message.contains("which resolves to '/etc/passwd'"), "{}", refused.message);
        assert!(ev.check_access(&dir, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
