//! A flake's inputs: where each declared URL leads, and bringing it into
//! the store — as it is now (to lock it) or exactly as `mini.lock` pins it
//! (to build). Every input arrives as a store copy, added by content, so
//! an input is the same bytes wherever and whenever it is fetched, and a
//! pinned input already in the store needs no git at all.
//!
//! URLs:
//! - `git+file:PATH[?rev=SHA|?ref=NAME][&dir=SUB]`: a git repository (a
//!   relative PATH starts at the flake's own directory on this machine),
//!   locked to a commit;
//! - `path:PATH`, or a path starting with `/`, `./` or `../`: a directory,
//!   locked to the hash of its contents. In a flake at a git revision a
//!   relative path is read from that revision's tree and may not leave it.
//!
//! A link in an input is copied as a link, never followed; one pointing
//! outside the input dangles in builds, so locking warns about it
//! ([`links_leaving`]).

use std::path::{Path, PathBuf};

use mini_lang::canonicalize_lexically;
use mini_store::encoding::{nar_hash_text, parse_nar_hash};
use mini_store::store::Store;
use mini_store::store_path::{PathKind, StorePath};

use crate::git::{self, GitUrl};
use crate::lock::{DeclaredInput, LockedInput};
use crate::FlakeError;

/// Where a flake is, for evaluating it and for finding its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlakeLocation {
    /// The directory evaluated (a working tree, or a store copy); canonical.
    pub dir: PathBuf,
    /// Where relative `git+file:` inputs start: the flake's directory on
    /// this machine (for a store copy, where it was copied from).
    pub origin: PathBuf,
    /// For a store copy, its top: relative path inputs must stay inside.
    pub copy_root: Option<PathBuf>,
    /// The commit, for a flake at a git revision.
    pub revision: Option<String>,
    /// Where the revision's source lives (see [`git::source_url`]).
    pub source_url: Option<String>,
    /// For a revision that is a clean working tree (see
    /// [`crate::worktree`]): that tree's flake directory, as messages name it.
    pub clean_tree: Option<PathBuf>,
    /// For a dirty working tree, the commit HEAD names (`self.dirtyRev`).
    pub dirty_rev: Option<String>,
}

impl FlakeLocation {
    /// A flake in a directory on this machine, as it is.
    pub fn working(dir: PathBuf) -> FlakeLocation {
        FlakeLocation {
            origin: dir.clone(),
            dir,
            copy_root: None,
            revision: None,
            source_url: None,
            clean_tree: None,
            dirty_rev: None,
        }
    }

    /// The flake in `sub` of a git checkout of `repo`.
    pub fn at_revision(repo: &Path, checkout: &git::Checkout, sub: Option<&Path>) -> FlakeLocation {
        let within = |dir: &Path| sub.map_or(dir.to_path_buf(), |sub| dir.join(sub));
        FlakeLocation {
            dir: within(&checkout.dir),
            origin: within(repo),
            copy_root: Some(checkout.dir.clone()),
            revision: Some(checkout.rev.clone()),
            source_url: git::source_url(repo),
            clean_tree: None,
            dirty_rev: None,
        }
    }

    /// How messages name the flake: its directory on this machine, and the
    /// revision when it is a store copy of one.
    pub fn shown(&self) -> PathBuf {
        if let Some(dir) = &self.clean_tree {
            return dir.clone();
        }
        match (&self.copy_root, &self.revision) {
            (None, _) => self.dir.clone(),
            (Some(_), Some(rev)) => PathBuf::from(format!("{} at revision {}", self.origin.display(), &rev[..12])),
            (Some(_), None) => self.origin.clone(),
        }
    }

    /// Whether this is a working tree, where `mini.lock` can be written.
    pub fn is_working_tree(&self) -> bool {
        self.copy_root.is_none()
    }
}

/// An input in the store.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub path: StorePath,
    /// The store copy's canonical physical directory.
    pub root: PathBuf,
    /// Where its flake is (in `root`, or a subdirectory of it).
    pub location: FlakeLocation,
    pub locked: LockedInput,
}

/// What an input URL names.
enum Source {
    Git { repo: PathBuf, url: GitUrl },
    Path { dir: PathBuf },
}

/// Fetches input `name` of the flake at `flake`: as `pin` says (checking
/// the content is what was pinned), or, without a pin, as it is now.
pub(crate) fn fetch(
    store: &Store,
    flake: &FlakeLocation,
    name: &str,
    declared: &DeclaredInput,
    pin: Option<&LockedInput>,
) -> Result<Fetched, FlakeError> {
    let bad = |message: String| FlakeError::Input { dir: flake.shown(), name: name.to_string(), message };
    match locate(&declared.url, flake).map_err(bad)? {
        Source::Git { repo, url } => {
            let pinned = pin.and_then(|p| Some((p.rev.clone()?, parse_nar_hash(&p.nar_hash)?)));
            let checkout = match &pinned {
                Some((rev, hash)) => {
                    let path = source_path(hash)?;
                    // A pinned tree already in the store needs no git.
                    if store.hold(&path)? {
                        git::Checkout { rev: rev.clone(), dir: git::physical_dir(store, &path)?, path }
                    } else {
                        git::checkout(store, &repo, Some(rev)).map_err(|e| bad(e.to_string()))?
                    }
                }
                None => git::checkout(store, &repo, url.rev.as_deref()).map_err(|e| bad(e.to_string()))?,
            };
            let hash = content_hash(store, &checkout.path)?;
            if let Some((rev, pinned_hash)) = &pinned {
                if hash != *pinned_hash {
                    return Err(bad(format!(
                        "revision {rev} of '{}' has content {}, but {} pins {}; was the history rewritten? \
                         `mini lock --update {name}` pins what is there now",
                        repo.display(),
                        nar_hash_text(&hash),
                        crate::lock::LOCK_FILE,
                        nar_hash_text(pinned_hash)
                    )));
                }
            }
            let within = |dir: &Path| url.dir.as_ref().map_or(dir.to_path_buf(), |sub| dir.join(sub));
            let location = FlakeLocation {
                dir: within(&checkout.dir),
                origin: within(&repo),
                copy_root: Some(checkout.dir.clone()),
                revision: Some(checkout.rev.clone()),
                source_url: None,
                clean_tree: None,
                dirty_rev: None,
            };
            let locked =
                LockedInput { declared: declared.clone(), rev: Some(checkout.rev), nar_hash: nar_hash_text(&hash) };
            Ok(Fetched { path: checkout.path, root: checkout.dir, location, locked })
        }
        Source::Path { dir } => {
            let filter = crate::flake_sources::source_filter(&dir)?;
            let filter: &dyn mini_lang::SourceFilter = &*filter;
            let keep = |relative: &Path, is_dir: bool| filter.keeps(relative, is_dir);
            // Adding also makes the path a temporary root of this process.
            let (path, _) = store.add_path_filtered(&dir, "source", &keep)?;
            let hash = content_hash(store, &path)?;
            if let Some(pin) = pin {
                if pin.nar_hash != nar_hash_text(&hash) {
                    return Err(bad(format!(
                        "'{}' changed since it was locked (its content is now {}, {} pins {}); \
                         `mini lock --update {name}` pins it as it is now",
                        dir.display(),
                        nar_hash_text(&hash),
                        crate::lock::LOCK_FILE,
                        pin.nar_hash
                    )));
                }
            }
            let root = git::physical_dir(store, &path)?;
            let location = FlakeLocation {
                dir: root.clone(),
                origin: dir,
                copy_root: Some(root.clone()),
                revision: None,
                source_url: None,
                clean_tree: None,
                dirty_rev: None,
            };
            let locked = LockedInput { declared: declared.clone(), rev: None, nar_hash: nar_hash_text(&hash) };
            Ok(Fetched { path, root, location, locked })
        }
    }
}

/// Where `url` leads from the flake at `flake`.
fn locate(url: &str, flake: &FlakeLocation) -> Result<Source, String> {
    if let Some(rest) = url.strip_prefix("git+file:") {
        let parsed = git::parse_url(rest).map_err(|e| format!("invalid URL '{url}': {e}"))?;
        let repo = lexically_joined(&flake.origin, Path::new(&parsed.path));
        // A repository gone from this machine may still be pinned in the store.
        let repo = std::fs::canonicalize(&repo).unwrap_or(repo);
        return Ok(Source::Git { repo, url: parsed });
    }
    let path = match url.strip_prefix("path:") {
        Some(path) if !path.is_empty() => path,
        None if url.starts_with('/') || url.starts_with("./") || url.starts_with("../") || url == "." => url,
        _ => {
            return Err(format!(
                "unsupported input URL '{url}': mini takes git+file:PATH (a git repository) and path:PATH (a directory)"
            ))
        }
    };
    let relative = !path.starts_with('/');
    let joined = lexically_joined(&flake.dir, Path::new(path));
    if let (Some(root), true) = (&flake.copy_root, relative) {
        if !joined.starts_with(root) {
            return Err(format!(
                "'{url}' leads outside the source tree the flake was taken from; \
                 a relative path input must stay inside it (use a git+file: input for another repository)"
            ));
        }
    }
    let dir = std::fs::canonicalize(&joined).map_err(|e| format!("cannot open '{}': {e}", joined.display()))?;
    if !dir.is_dir() {
        return Err(format!("'{}' is not a directory", dir.display()));
    }
    Ok(Source::Path { dir })
}

/// A symbolic link in an input that points outside it. The store copy
/// keeps the link as it is, so in a build (which sees only the store) it
/// dangles, and outside one it reads whatever the host has there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingLink {
    /// The link, relative to the input's top.
    pub link: PathBuf,
    pub target: PathBuf,
}

/// Every symbolic link in the tree at `root` (an input's store copy) whose
/// target is absolute or climbs out of `root` with `..`, sorted by link.
/// Links are read, never followed.
pub(crate) fn links_leaving(root: &Path) -> Result<Vec<LeavingLink>, FlakeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FlakeError::Io { action: "reading", path, source }
    };
    let mut found = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(relative) = todo.pop() {
        let full = root.join(&relative);
        let meta = std::fs::symlink_metadata(&full).map_err(io(&full))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).map_err(io(&full))?;
            if leaves(&relative, &target) {
                found.push(LeavingLink { link: relative, target });
            }
        } else if meta.is_dir() {
            for entry in std::fs::read_dir(&full).map_err(io(&full))? {
                todo.push(relative.join(entry.map_err(io(&full))?.file_name()));
            }
        }
    }
    found.sort_by(|a, b| a.link.cmp(&b.link));
    Ok(found)
}

/// Whether a link at `link` (relative to an input's top) to `target`
/// leads outside the input, judged by the text alone.
fn leaves(link: &Path, target: &Path) -> bool {
    use std::path::Component;
    // How deep the directory holding the link is.
    let mut depth = link.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

/// `base` (absolute) joined with `path`, `.` and `..` resolved without
/// the filesystem.
fn lexically_joined(base: &Path, path: &Path) -> PathBuf {
    PathBuf::from(canonicalize_lexically(&base.join(path)))
}

/// The store path of a source tree whose canonical archive hashes to `hash`.
fn source_path(hash: &[u8; 32]) -> Result<StorePath, FlakeError> {
    StorePath::compute(&PathKind::Source { references: &[] }, "blake3", hash, "source")
        .map_err(|e| FlakeError::Store(e.into()))
}

fn content_hash(store: &Store, path: &StorePath) -> Result<[u8; 32], FlakeError> {
    match store.query(path)? {
        Some(info) => Ok(info.nar_hash),
        None => Err(FlakeError::InvalidDerivation { path: path.clone(), root: store.root().to_path_buf() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn working(dir: &str) -> FlakeLocation {
        FlakeLocation::working(PathBuf::from(dir))
    }

    #[test]
    fn urls_lead_from_the_flake() {
        let flake = working("/nonexistent/shop");
        match locate("git+file:../lib?ref=v1&dir=nix", &flake) {
            Ok(Source::Git { repo, url }) => {
                assert_eq!(repo, Path::new("/nonexistent/lib"));
                assert_eq!(url.rev.as_deref(), Some("v1"));
                assert_eq!(url.dir.as_deref(), Some(Path::new("nix")));
            }
            _ => panic!("a git input"),
        }
        match locate("git+file:///srv/lib", &flake) {
            Ok(Source::Git { repo, .. }) => assert_eq!(repo, Path::new("/srv/lib")),
            _ => panic!("a git input"),
        }
        let unsupported = locate("github:acme/lib", &flake).err().unwrap();
        assert!(unsupported.contains("unsupported input URL 'github:acme/lib'"), "{unsupported}");
        assert!(locate("lib", &flake).is_err(), "a bare word is not a path");
        assert!(locate("path:../missing", &flake).err().unwrap().contains("cannot open '/nonexistent/missing'"));
    }

    #[test]
    fn relative_paths_stay_inside_a_copied_tree() {
        let root = std::env::temp_dir().join(format!("mini-inputs-{}", std::process::id()));
        std::fs::create_dir_all(root.join("copy/app")).unwrap();
        std::fs::create_dir_all(root.join("copy/assets")).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        let flake = FlakeLocation {
            dir: root.join("copy/app"),
            origin: PathBuf::from("/work/app"),
            copy_root: Some(root.join("copy")),
            revision: Some("a".repeat(40)),
            source_url: None,
            clean_tree: None,
            dirty_rev: None,
        };
        assert!(
            matches!(locate("path:../assets", &flake), Ok(Source::Path { dir }) if dir == root.join("copy/assets"))
        );
        let outside = locate("../../elsewhere", &flake).err().unwrap();
        assert!(outside.contains("leads outside the source tree"), "{outside}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_link_leaves_when_absolute_or_climbing_above_the_top() {
        let cases = [
            ("logo", "/home/u/logo.png", true),
            ("logo", "img/logo.png", false),
            ("logo", "./img/../logo.png", false),
            ("logo", "../logo.png", true),
            ("img/logo", "../logo.png", false),
            ("img/logo", "../../logo.png", true),
            ("img/logo", "a/../../..", true),
            ("a/b/c", "../../x", false),
            ("a/b/c", "../../../x", true),
            ("dot", ".", false),
        ];
        for (link, target, expected) in cases {
            assert_eq!(leaves(Path::new(link), Path::new(target)), expected, "{link} -> {target}");
        }
    }

    #[test]
    fn links_leaving_a_tree_are_found_and_not_followed() {
        use std::os::unix::fs::symlink;
        let root = std::env::temp_dir().join(format!("mini-inputs-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("img/deep")).unwrap();
        std::fs::write(root.join("img/logo.png"), "png").unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        symlink("logo.png", root.join("img/inside")).unwrap();
        symlink("../../../outside", root.join("img/deep/up")).unwrap();
        symlink("../../img/logo.png", root.join("img/deep/ok")).unwrap();
        let found = links_leaving(&root).unwrap();
        let link = |l: &str, t: &str| LeavingLink { link: l.into(), target: t.into() };
        assert_eq!(found, [link("etc", "/etc"), link("img/deep/up", "../../../outside")]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn lexical_joins_resolve_dots() {
        assert_eq!(lexically_joined(Path::new("/a/b"), Path::new("../c/./d")), Path::new("/a/c/d"));
        assert_eq!(lexically_joined(Path::new("/a"), Path::new("/x/../y")), Path::new("/y"));
    }
}
