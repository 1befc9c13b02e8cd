//! Copying source paths into the store: interpolating `./src`, a path in a
//! derivation's attributes, `builtins.path`. By default a path is copied
//! whole. A caller that knows better — the flake crate, which knows which
//! files a git repository tracks or a `.miniignore` leaves out — registers
//! [`SourceFilter`]s, and a path copied from below a filter's root then
//! takes only the entries it keeps, so files that are not sources (build
//! outputs, `result` links, untracked files) never change a store path.
//! The language itself knows nothing of git or ignore files.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{store_error, Evaluator};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::source_map::Span;
use mini_store::store_path::StorePath;

/// Which entries below a directory are sources.
pub trait SourceFilter: Sync {
    /// The directory the filter governs: absolute, with symlinks resolved.
    fn root(&self) -> &Path;

    /// Whether the entry at `relative` (to [`SourceFilter::root`], never
    /// empty) is a source; `is_dir` says whether it is a directory (a
    /// symlink never is). An excluded directory is left out whole.
    fn keeps(&self, relative: &Path, is_dir: bool) -> bool;

    /// Why the entry at `relative` is not a source, with what to do about
    /// it: the end of "path '…' is not a source: ".
    fn why_excluded(&self, relative: &Path) -> String;
}

/// A filter as it applies to one copied path, `relative` below its root.
pub(crate) struct ScopedFilter {
    filter: Rc<dyn SourceFilter>,
    relative: PathBuf,
}

impl ScopedFilter {
    /// Whether the entry `below` the copied path is a source.
    pub(crate) fn keeps(&self, below: &Path, is_dir: bool) -> bool {
        self.filter.keeps(&self.relative.join(below), is_dir)
    }
}

impl Evaluator {
    /// Makes paths copied from below `filter`'s root keep only what it
    /// keeps. Where roots nest, the innermost filter applies.
    pub fn add_source_filter(&mut self, filter: Rc<dyn SourceFilter>) {
        self.source_filters.push(filter);
    }

    /// Copies a path into the store (once per session) and returns its
    /// store path, as interpolating `./src` into a string does.
    pub(crate) fn copy_to_store(&mut self, path: &str, span: Span) -> EvalResult<StorePath> {
        let path = PathBuf::from(path);
        self.check_access(&path, Some(span))?;
        if let Some(p) = self.copied_paths.get(&path) {
            return Ok(p.clone());
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stored = self.add_source(&self.on_disk(&path), &name, span)?;
        self.allow_made(&stored);
        self.copied_paths.insert(path, stored.clone());
        Ok(stored)
    }

    /// Adds `path` to the store as `name`, through the filter it falls under.
    pub(crate) fn add_source(&mut self, path: &Path, name: &str, span: Span) -> EvalResult<StorePath> {
        let scoped = self.source_filter_for(path, span)?;
        let store = self.store(span)?;
        let added = match &scoped {
            None => store.add_path(path, name),
            Some(ScopedFilter { filter, relative }) => {
                let filter: &dyn SourceFilter = &**filter;
                let keep = |below: &Path, is_dir: bool| filter.keeps(&relative.join(below), is_dir);
                store.add_path_filtered(path, name, &keep).map(|(stored, _)| stored)
            }
        };
        added.map_err(|e| store_error(e, span))
    }

    /// The filter `path` falls under, if any; an error if the filter
    /// excludes `path` itself or a directory it is in.
    pub(crate) fn source_filter_for(&self, path: &Path, span: Span) -> EvalResult<Option<ScopedFilter>> {
        if self.source_filters.is_empty() {
            return Ok(None);
        }
        let located = physical_location(path);
        let Some(filter) = self
            .source_filters
            .iter()
            .filter(|f| located.starts_with(f.root()))
            .max_by_key(|f| f.root().components().count())
        else {
            return Ok(None);
        };
        let relative = located.strip_prefix(filter.root()).unwrap_or(Path::new("")).to_path_buf();
        let mut prefix = PathBuf::new();
        let mut components = relative.components().peekable();
        while let Some(component) = components.next() {
            prefix.push(component);
            // The copied path itself may be a file; every entry above it is a directory.
            let is_dir = components.peek().is_some() || std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
            if !filter.keeps(&prefix, is_dir) {
                return Err(EvalError::at(
                    ErrorKind::Eval,
                    format!("path '{}' is not a source: {}", path.display(), filter.why_excluded(&prefix)),
                    span,
                ));
            }
        }
        Ok(Some(ScopedFilter { filter: filter.clone(), relative }))
    }
}

/// Where `path` physically is: its directory with symlinks resolved, and
/// its own name (a symlink is copied as itself, not followed).
fn physical_location(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => match std::fs::canonicalize(parent) {
            Ok(parent) => parent.join(name),
            Err(_) => path.to_path_buf(),
        },
        _ => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use super::*;

    /// Keeps everything but entries named `skip` and directories named `out`.
    struct SkipFilter(PathBuf);

    impl SourceFilter for SkipFilter {
        fn root(&self) -> &Path {
            &self.0
        }
        fn keeps(&self, relative: &Path, is_dir: bool) -> bool {
            let name = relative.file_name().unwrap();
            name != "skip" && !(is_dir && name == "out")
        }
        fn why_excluded(&self, relative: &Path) -> String {
            format!("'{}' is skipped", relative.display())
        }
    }

    #[test]
    fn copies_below_a_root_keep_only_what_its_filter_keeps() {
        let dir = std::env::temp_dir().join(format!("mini-sources-{}", std::process::id()));
        // The store inside makes its files read-only.
        let remove = |dir: &Path| {
            let chmod =
                std::process::Command::new("chmod").arg("-R").arg("u+w").arg(dir).stderr(Stdio::null()).status();
            assert!(chmod.is_ok());
            let _ = std::fs::remove_dir_all(dir);
        };
        remove(&dir);
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("sub/out")).unwrap();
        std::fs::create_dir_all(dir.join("kept/sub")).unwrap();
        for (file, text) in [("a", "a"), ("skip", "s"), ("sub/b", "b"), ("sub/out/o", "o"), ("sub/skip", "s")] {
            std::fs::write(src.join(file), text).unwrap();
        }
        std::fs::write(dir.join("kept/a"), "a").unwrap();
        std::fs::write(dir.join("kept/sub/b"), "b").unwrap();
        let root = std::fs::canonicalize(&src).unwrap();
        std::os::unix::fs::symlink(&src, dir.join("link")).unwrap();

        let mut ev = Evaluator::new();
        ev.set_store(mini_store::store::Store::open(&dir.join("store")).unwrap());
        let whole = ev.add_source(&src, "src", Span::default()).unwrap();
        ev.add_source_filter(Rc::new(SkipFilter(root)));
        let filtered = ev.add_source(&src, "src", Span::default()).unwrap();
        let expected = ev.add_source(&dir.join("kept"), "src", Span::default()).unwrap();
        assert_ne!(whole, filtered);
        assert_eq!(filtered, expected);
        // Reached through a symlinked directory, the same files are the same sources.
        assert_eq!(ev.add_source(&dir.join("link/sub"), "sub", Span::default()).unwrap(), {
            ev.add_source(&dir.join("kept/sub"), "sub", Span::default()).unwrap()
        });
        let refused = ev.add_source(&src.join("sub/out/o"), "o", Span::default()).unwrap_err();
        assert!(refused.message.ends_with("is not a source: 'sub/out' is skipped"), "{}", refused.message);
        assert!(ev.add_source(&src.join("skip"), "skip", Span::default()).is_err());
        remove(&dir);
    }
}
