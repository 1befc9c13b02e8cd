//! Looking into a flake without building it: `mini flake show` (its
//! attributes as a tree, each with its type, as `nix flake show` draws
//! them) and `mini eval DIR#ATTR` (one attribute's value).
//!
//! Showing is lazy: a value is forced only to learn its type, and of a
//! derivation only `type`, `name` and `builder` are read; nothing is
//! built and no `.drv` is written. Top-level attribute sets are opened,
//! and below them the sets named after a system (`packages.x86_64-linux`),
//! as Nix's output schema nests them; other systems than this machine's
//! are only named unless asked for. Deeper sets are named, not opened.

use std::path::Path;

use mini_lang::{Evaluator, Value};
use mini_store::store::Store;

use crate::flake::FlakeSession;
use crate::inputs::FlakeLocation;
use crate::installable::{self, Installable};
use crate::resolve::{diagnostics, explain, locate};
use crate::FlakeError;

/// How `mini flake show` lists.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    /// Open the sets of every system, not only this machine's.
    pub all_systems: bool,
}

/// A flake's tree, drawn, and what to say on stderr about its working tree.
#[derive(Debug, Clone)]
pub struct Shown {
    pub text: String,
    pub diagnostics: Vec<String>,
}

/// One attribute's value, evaluated, and what to say on stderr.
pub struct Evaluated {
    pub value: Value,
    pub diagnostics: Vec<String>,
}

/// The tree of attributes of the flake `text` names (a directory or a
/// `git+file:` URL) as `nix flake show` draws it.
pub fn show(store: &Store, text: &str, options: &ShowOptions) -> Result<Shown, FlakeError> {
    let installable = flake_reference(store.root(), text)?;
    let (store, text, options) = (store.clone(), text.to_string(), options.clone());
    mini_lang::with_evaluator(move |ev| {
        let mut session = FlakeSession::new(ev, &store);
        session.evaluator().write_derivations = false;
        let mut named = Vec::new();
        let Some((flake, _)) = locate(&mut session, &store, &installable, false, &mut named)? else {
            return Err(FlakeError::NotInstallable { text: text.clone(), reason: "it is a store path".into() });
        };
        let outputs = session.top_outputs(&flake).map_err(|e| explain(&named, &flake, e))?;
        let mut lister = Lister { session: &mut session, options: &options, path: Vec::new() };
        let children = match lister.node(outputs).map_err(|e| explain(&named, &flake, e))? {
            Node::Branch(children) => children,
            Node::Leaf(kind) => vec![("(the outputs themselves)".to_string(), Node::Leaf(kind))],
        };
        let text = draw(&header(&text, &flake), &children);
        Ok(Shown { text, diagnostics: diagnostics(&session, &named) })
    })
    .map_err(FlakeError::Thread)?
}

/// Attribute `ATTR` of the flake `text` (`DIR#ATTR`, `git+file:…#ATTR`)
/// names, evaluated with `ev` (made pure and restricted to the flake), as
/// a build would find it: at the top level, else under `packages.<system>`.
pub fn eval_attribute(ev: &mut Evaluator, store: &Store, text: &str) -> Result<Evaluated, FlakeError> {
    let installable = installable::parse(text, store.root())?;
    let mut session = FlakeSession::new(ev, store);
    // As `mini eval` of a file: derivations are computed, not written.
    session.evaluator().write_derivations = false;
    let mut named = Vec::new();
    let Some((flake, attr)) = locate(&mut session, store, &installable, false, &mut named)? else {
        return Err(FlakeError::BadInstallable {
            text: text.to_string(),
            reason: "mini eval takes a flake attribute (DIR#ATTR), not a store path".into(),
        });
    };
    let value = session.attribute(&flake, attr).map_err(|e| explain(&named, &flake, e))?;
    Ok(Evaluated { value, diagnostics: diagnostics(&session, &named) })
}

/// `DIR` or `git+file:URL`, with no attribute.
fn flake_reference(store_root: &Path, text: &str) -> Result<Installable, FlakeError> {
    if text.contains('#') {
        return Err(FlakeError::BadInstallable {
            text: text.to_string(),
            reason: "give a flake (DIR or git+file:URL) without #ATTR; `mini eval DIR#ATTR` shows one attribute".into(),
        });
    }
    if text.starts_with("git+file:") {
        return installable::parse(text, store_root);
    }
    let dir = std::fs::canonicalize(text).map_err(|source| FlakeError::FlakeDir { dir: text.into(), source })?;
    Ok(Installable::Flake { dir, attr: Vec::new() })
}

/// The first line: the flake as given, and the revision it was taken at.
fn header(text: &str, flake: &FlakeLocation) -> String {
    match (&flake.revision, &flake.dirty_rev) {
        (Some(rev), _) => format!("{text} at revision {rev}"),
        (None, Some(head)) => format!("{text} at revision {}-dirty", &head[..7]),
        (None, None) => text.to_string(),
    }
}

/// An attribute in the tree: described, or opened.
#[derive(Debug, PartialEq)]
enum Node {
    Leaf(String),
    Branch(Vec<(String, Node)>),
}

struct Lister<'s, 'e> {
    session: &'s mut FlakeSession<'e>,
    options: &'s ShowOptions,
    /// The attribute path of the value being listed.
    path: Vec<String>,
}

impl Lister<'_, '_> {
    fn node(&mut self, value: Value) -> Result<Node, FlakeError> {
        let Value::Attrs(attrs) = &value else { return Ok(Node::Leaf(kind_of(&self.path, &value).into())) };
        if self.attr_is(&value, "type", "derivation")? {
            return self.derivation(&value).map(Node::Leaf);
        }
        if self.attr_is(&value, "type", "app")? {
            return Ok(Node::Leaf("app".into()));
        }
        let depth = self.path.len();
        let under_system = depth == 2 && is_system(&self.path[1]);
        if under_system && self.path[0] == "legacyPackages" {
            return Ok(Node::Leaf("omitted (legacyPackages are not listed)".into()));
        }
        if under_system && self.path[1] != self.session.system() && !self.options.all_systems {
            return Ok(Node::Leaf("omitted (use '--all-systems' to show)".into()));
        }
        if depth > 1 && !under_system {
            return Ok(Node::Leaf("attribute set".into()));
        }
        let mut children = Vec::new();
        for (name, thunk) in attrs.sorted_by_name() {
            let name = name.to_string();
            let value = self.session.force(thunk)?;
            self.path.push(name.clone());
            let child = self.node(value);
            self.path.pop();
            children.push((name, child?));
        }
        Ok(Node::Branch(children))
    }

    /// `package 'hello'`, or what Nix calls a derivation in that place;
    /// an image is named as one.
    fn derivation(&mut self, value: &Value) -> Result<String, FlakeError> {
        let name = match self.attr(value, "name")? {
            Some(Value::String(name)) => name.as_str().to_string(),
            _ => "?".to_string(),
        };
        let kind = match self.path.first().cloned().as_deref() {
            Some("checks") => "derivation",
            Some("devShells" | "devShell") => "development environment",
            _ if self.attr_is(value, "builder", "builtin:image")? => "image",
            _ => "package",
        };
        Ok(format!("{kind} '{name}'"))
    }

    fn attr(&mut self, value: &Value, name: &str) -> Result<Option<Value>, FlakeError> {
        match value {
            Value::Attrs(attrs) => match attrs.get_str(name).cloned() {
                Some(thunk) => self.session.force(&thunk).map(Some),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    fn attr_is(&mut self, value: &Value, name: &str, wanted: &str) -> Result<bool, FlakeError> {
        Ok(matches!(self.attr(value, name)?, Some(Value::String(s)) if s.as_str() == wanted))
    }
}

/// What a value that is neither a derivation nor an opened set is.
fn kind_of(path: &[String], value: &Value) -> &'static str {
    match value {
        _ if value.is_function() && matches!(path.first().map(String::as_str), Some("overlay" | "overlays")) => {
            "Nixpkgs overlay"
        }
        Value::Null => "null",
        Value::Bool(_) => "Boolean",
        Value::Int(_) => "integer",
        Value::Float(_) => "float",
        Value::String(_) => "string",
        Value::Path(_) => "path",
        Value::Attrs(_) => "attribute set",
        Value::List(_) => "list",
        Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_) => "function",
    }
}

/// Whether an attribute name is a Nix system (`x86_64-linux`,
/// `aarch64-darwin`, …): the level Nix's output schema puts below
/// `packages`, `checks` and the like.
fn is_system(name: &str) -> bool {
    let kernels = ["linux", "darwin", "freebsd", "netbsd", "openbsd", "windows", "cygwin", "none", "wasi", "genode"];
    match name.split_once('-') {
        Some((arch, kernel)) => {
            !arch.is_empty()
                && arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && kernels.contains(&kernel)
        }
        None => false,
    }
}

/// The tree as `nix flake show` draws it.
fn draw(header: &str, children: &[(String, Node)]) -> String {
    let mut out = format!("{header}\n");
    draw_children(&mut out, "", children);
    out
}

fn draw_children(out: &mut String, prefix: &str, children: &[(String, Node)]) {
    for (i, (name, node)) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let branch = if last { "└───" } else { "├───" };
        match node {
            Node::Leaf(description) => out.push_str(&format!("{prefix}{branch}{name}: {description}\n")),
            Node::Branch(grandchildren) => {
                out.push_str(&format!("{prefix}{branch}{name}\n"));
                let more = if last { "    " } else { "│   " };
                draw_children(out, &format!("{prefix}{more}"), grandchildren);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_drawn_as_nix_draws_them() {
        let leaf = |s: &str| Node::Leaf(s.to_string());
        let tree = vec![
            ("docker".to_string(), leaf("image 'svc.tar'")),
            (
                "packages".to_string(),
                Node::Branch(vec![
                    (
                        "x86_64-linux".to_string(),
                        Node::Branch(vec![
                            ("default".to_string(), leaf("package 'hello'")),
                            ("tool".to_string(), leaf("package 'tool'")),
                        ]),
                    ),
                    ("aarch64-linux".to_string(), leaf("omitted (use '--all-systems' to show)")),
                ]),
            ),
            ("version".to_string(), leaf("string")),
        ];
        let expected = "\
. at revision abc
├───docker: image 'svc.tar'
├───packages
│   ├───x86_64-linux
│   │   ├───default: package 'hello'
│   │   └───tool: package 'tool'
│   └───aarch64-linux: omitted (use '--all-systems' to show)
└───version: string
";
        assert_eq!(draw(". at revision abc", &tree), expected);
        assert_eq!(draw("x", &[]), "x\n");
    }

    #[test]
    fn systems_are_arch_dash_kernel() {
        for system in ["x86_64-linux", "aarch64-darwin", "i686-linux", "riscv64-linux", "wasm32-wasi"] {
            assert!(is_system(system), "{system}");
        }
        for name in ["default", "x86_64", "hello-world", "-linux", "x86_64-linux-gnu", "docker"] {
            assert!(!is_system(name), "{name}");
        }
    }
}
