//! Parsing installables. `DIR#ATTR` is attribute `ATTR` (a dotted path,
//! components optionally quoted: `a."b.c"`) of the flake in `DIR`; a
//! directory holding a `flake.nixlike` alone means `DIR#default`. Anything
//! else must be a store path: logical (`/mini/store/<hash>-name`, or a path
//! inside one) or physical, such as a `result` link that resolves into the
//! store's directory on disk. `git+file:DIR[?rev=SHA|?ref=NAME][&dir=SUB][#ATTR]`
//! is the flake at the top of the git repository `DIR` (or in its
//! subdirectory `SUB`) as committed at that revision (HEAD by default),
//! working-tree changes ignored; see [`crate::git`].

use std::path::{Component, Path, PathBuf};

use mini_store::store::Store;
use mini_store::store_path::{StorePath, STORE_DIR};

use crate::FlakeError;

/// The file that makes a directory a flake.
pub(crate) const FLAKE_FILE: &str = "flake.nixlike";

/// What a command-line argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installable {
    /// An attribute of a flake; `dir` is absolute and canonical.
    Flake { dir: PathBuf, attr: Vec<String> },
    /// An attribute of the flake at the top of a git repository (or in its
    /// subdirectory `dir`), at a revision (`None`: HEAD); `repo` is
    /// absolute and canonical.
    Git { repo: PathBuf, rev: Option<String>, dir: Option<PathBuf>, attr: Vec<String> },
    /// A store path: a `.drv` to build, or anything else, already built.
    StorePath(StorePath),
}

/// The scheme of git installables.
const GIT_SCHEME: &str = "git+file:";

/// Parses an installable; `store_root` is the store's physical root, for
/// recognising paths that lead into it.
pub fn parse(text: &str, store_root: &Path) -> Result<Installable, FlakeError> {
    if let Some(rest) = text.strip_prefix(GIT_SCHEME) {
        return parse_git(text, rest);
    }
    if let Some((dir, attr)) = text.split_once('#') {
        let attr =
            parse_attr_path(attr).map_err(|reason| FlakeError::BadInstallable { text: text.to_string(), reason })?;
        let dir = if dir.is_empty() { "." } else { dir };
        return Ok(Installable::Flake { dir: flake_dir(Path::new(dir))?, attr });
    }
    if text.starts_with(&format!("{STORE_DIR}/")) {
        return StorePath::parse_prefix(text)
            .map(|(path, _)| Installable::StorePath(path))
            .map_err(|e| FlakeError::BadInstallable { text: text.to_string(), reason: e.to_string() });
    }
    let path = Path::new(text);
    if path.join(FLAKE_FILE).is_file() {
        return Ok(Installable::Flake { dir: flake_dir(path)?, attr: vec!["default".to_string()] });
    }
    if let Some(stored) = physical_store_path(path, store_root) {
        return Ok(Installable::StorePath(stored));
    }
    let reason = match StorePath::parse_prefix(text) {
        Err(e) => format!("{e}, and it has no {FLAKE_FILE}"),
        Ok(_) => format!("it has no {FLAKE_FILE}"),
    };
    Err(FlakeError::NotInstallable { text: text.to_string(), reason })
}

/// What follows `git+file:`: see [`crate::git::parse_url`], then `#ATTR`.
fn parse_git(text: &str, rest: &str) -> Result<Installable, FlakeError> {
    let bad = |reason: String| FlakeError::BadInstallable { text: text.to_string(), reason };
    let (rest, attr) = match rest.split_once('#') {
        Some((rest, attr)) => (rest, parse_attr_path(attr).map_err(bad)?),
        None => (rest, vec!["default".to_string()]),
    };
    let url = crate::git::parse_url(rest).map_err(bad)?;
    Ok(Installable::Git { repo: flake_dir(Path::new(&url.path))?, rev: url.rev, dir: url.dir, attr })
}

fn flake_dir(dir: &Path) -> Result<PathBuf, FlakeError> {
    std::fs::canonicalize(dir).map_err(|source| FlakeError::FlakeDir { dir: dir.to_path_buf(), source })
}

/// The store path `path` leads to, if it resolves into the store directory
/// of the store at `store_root`.
fn physical_store_path(path: &Path, store_root: &Path) -> Option<StorePath> {
    let resolved = std::fs::canonicalize(path).ok()?;
    let store_dir = std::fs::canonicalize(Store::store_dir_of(store_root)).ok()?;
    match resolved.strip_prefix(&store_dir).ok()?.components().next()? {
        Component::Normal(base) => StorePath::parse_base_name(base.to_str()?).ok(),
        _ => None,
    }
}

/// `a.b."c.d"` → `["a", "b", "c.d"]`; empty text is `default`.
fn parse_attr_path(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Ok(vec!["default".to_string()]);
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut in_quotes, mut was_quoted) = (false, false);
    let mut finish = |current: &mut String, was_quoted: &mut bool| {
        if current.is_empty() && !*was_quoted {
            return Err(format!("the attribute path '{text}' has an empty component"));
        }
        parts.push(std::mem::take(current));
        *was_quoted = false;
        Ok(())
    };
    for c in text.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                was_quoted = true;
            }
            '.' if !in_quotes => finish(&mut current, &mut was_quoted)?,
            c => current.push(c),
        }
    }
    if in_quotes {
        return Err(format!("the attribute path '{text}' has an unterminated quote"));
    }
    finish(&mut current, &mut was_quoted)?;
    Ok(parts)
}

/// An attribute path as written in the language, quoting where needed.
pub(crate) fn show_attr_path(attr: &[String]) -> String {
    let is_identifier = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || "_'-".contains(c))
    };
    let parts: Vec<String> =
        attr.iter().map(|a| if is_identifier(a) { a.clone() } else { format!("\"{a}\"") }).collect();
    parts.join(".")
}

/// Whether a command-line argument that could also be an image on disk
/// (`mini image`, `mini push`) names an installable: a `.drv` path,
/// `git+file:`, `DIR#ATTR` and store paths that are not on disk are; a
/// directory is one only if it holds a flake and is not an OCI layout;
/// other files and directories are images. Anything else is left for
/// reading to report.
pub fn names_installable_rather_than_image(arg: &str) -> bool {
    let path = Path::new(arg);
    let in_store = arg.starts_with(&format!("{}/", mini_store::STORE_DIR));
    if in_store && arg.ends_with(".drv") || arg.starts_with("git+file:") {
        return true;
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            path.join(FLAKE_FILE).is_file() && !path.join("index.json").exists() && !path.join("oci-layout").exists()
        }
        Ok(_) => false,
        Err(_) => arg.contains('#') || in_store,
    }
}

/// The flake attribute `mini eval`'s argument names, if it names one
/// (`DIR#ATTR`, `git+file:URL#ATTR`) rather than a file that exists.
pub fn flake_attribute_of(file: &Path) -> Option<&str> {
    let text = file.to_str()?;
    let attribute = text.starts_with("git+file:") || text.contains('#');
    (attribute && !file.exists()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mini-installable-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::canonicalize(dir).unwrap()
    }

    #[test]
    fn attribute_paths_split_on_unquoted_dots() {
        assert_eq!(parse_attr_path("docker").unwrap(), ["docker"]);
        assert_eq!(parse_attr_path("a.b.c").unwrap(), ["a", "b", "c"]);
        assert_eq!(parse_attr_path("a.\"b.c\"").unwrap(), ["a", "b.c"]);
        assert_eq!(parse_attr_path("\"\"").unwrap(), [""]);
        assert_eq!(parse_attr_path("").unwrap(), ["default"]);
        assert!(parse_attr_path("a..b").is_err());
        assert!(parse_attr_path("a.").is_err());
        assert!(parse_attr_path("a.\"b").is_err());
        assert_eq!(show_attr_path(&["a".into(), "b.c".into(), "x86_64-linux".into()]), "a.\"b.c\".x86_64-linux");
    }

    #[test]
    fn flakes_store_paths_and_links_into_the_store() {
        let dir = scratch("parse");
        let root = dir.join("root");
        let flake = dir.join("proj");
        std::fs::create_dir_all(root.join("store/00000000000000000000000000000000-hello/bin")).unwrap();
        std::fs::create_dir_all(&flake).unwrap();
        std::fs::write(flake.join(FLAKE_FILE), "{ }").unwrap();
        std::os::unix::fs::symlink(root.join("store/00000000000000000000000000000000-hello"), dir.join("result"))
            .unwrap();

        let text = format!("{}#a.\"b.c\"", flake.display());
        assert_eq!(
            parse(&text, &root).unwrap(),
            Installable::Flake { dir: flake.clone(), attr: vec!["a".into(), "b.c".into()] }
        );
        let default = Installable::Flake { dir: flake.clone(), attr: vec!["default".into()] };
        assert_eq!(parse(flake.to_str().unwrap(), &root).unwrap(), default);
        assert_eq!(parse(&format!("{}#", flake.display()), &root).unwrap(), default);

        let hello = StorePath::parse("/mini/store/00000000000000000000000000000000-hello").unwrap();
        let logical = parse("/mini/store/00000000000000000000000000000000-hello/bin/sh", &root).unwrap();
        assert_eq!(logical, Installable::StorePath(hello.clone()));
        let link = format!("{}/result/bin", dir.display());
        assert_eq!(parse(&link, &root).unwrap(), Installable::StorePath(hello));

        let not_flake = parse(root.to_str().unwrap(), &root).unwrap_err().to_string();
        assert!(not_flake.contains("not in the store directory /mini/store"), "{not_flake}");
        assert!(matches!(parse("/no/such/dir#x", &root), Err(FlakeError::FlakeDir { .. })));
        assert!(matches!(parse("/mini/store/short", &root), Err(FlakeError::BadInstallable { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn git_installables() {
        let dir = scratch("git");
        let root = dir.join("root");
        let git = |text: &str| parse(text, &root);
        let expect = |rev: Option<&str>, attr: &str| Installable::Git {
            repo: dir.clone(),
            rev: rev.map(str::to_string),
            dir: None,
            attr: vec![attr.to_string()],
        };
        let url = format!("git+file://{}", dir.display());
        assert_eq!(git(&format!("{url}?rev=abc#docker")).unwrap(), expect(Some("abc"), "docker"));
        assert_eq!(git(&format!("{url}?ref=v1")).unwrap(), expect(Some("v1"), "default"));
        assert_eq!(git(&format!("git+file:{}#x", dir.display())).unwrap(), expect(None, "x"));
        assert!(matches!(git(&format!("{url}?rev=a&ref=b")), Err(FlakeError::BadInstallable { .. })));
        let sub = Installable::Git {
            repo: dir.clone(),
            rev: None,
            dir: Some(PathBuf::from("a/b")),
            attr: vec!["x".to_string()],
        };
        assert_eq!(git(&format!("{url}?dir=a/b#x")).unwrap(), sub);
        assert!(matches!(git(&format!("{url}?dir=../up")), Err(FlakeError::BadInstallable { .. })));
        assert!(matches!(git(&format!("{url}?depth=1")), Err(FlakeError::BadInstallable { .. })));
        assert!(matches!(git("git+file://host/x"), Err(FlakeError::BadInstallable { .. })));
        assert!(matches!(git("git+file:/no/such/dir"), Err(FlakeError::FlakeDir { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn images_on_disk_are_told_from_installables() {
        let dir = scratch("image-or-installable");
        let (flake, layout, file) = (dir.join("flake"), dir.join("layout"), dir.join("image.tar"));
        std::fs::create_dir_all(&flake).unwrap();
        std::fs::write(flake.join(FLAKE_FILE), "{ }").unwrap();
        std::fs::create_dir_all(&layout).unwrap();
        std::fs::write(layout.join(FLAKE_FILE), "{ }").unwrap();
        std::fs::write(layout.join("oci-layout"), "{}").unwrap();
        std::fs::write(&file, "").unwrap();
        let is = |p: &Path| names_installable_rather_than_image(p.to_str().unwrap());
        assert!(is(&flake) && !is(&layout) && !is(&file));
        assert!(is(Path::new("./missing#docker")) && is(Path::new("git+file:.")));
        assert!(names_installable_rather_than_image("/mini/store/00000000000000000000000000000000-x.drv"));
        assert!(!is(&dir.join("missing.tar")));
        assert_eq!(flake_attribute_of(Path::new("./missing#hello.name")), Some("./missing#hello.name"));
        assert_eq!(flake_attribute_of(&file), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
