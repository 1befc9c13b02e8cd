//! String context and the builtins that put things in the store:
//! `hasContext`, `getContext`, `unsafeDiscardStringContext`, `toFile` and
//! `path`. Each store addition yields a string whose context names the new
//! path, so whatever interpolates it depends on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{attrs, attrs_of, string};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::{store_error, Evaluator, ScopedFilter};
use crate::source::Span;
use crate::string::{ContextElem, NixStr};
use crate::value::{Attrs, Symbol, Thunk, Value};
use mini_store::store_path::StorePath;

/// A store path as a string that carries itself as context, so whatever
/// interpolates it depends on it.
pub fn store_path_value(path: &StorePath) -> Value {
    let text = path.to_string();
    Value::String(NixStr::with_context(text.clone(), vec![ContextElem::Path(text)]))
}

pub fn has_context(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    Ok(Value::Bool(!string(ev, &args[0], span)?.context().is_empty()))
}

pub fn unsafe_discard_string_context(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    Ok(Value::String(string(ev, &args[0], span)?.without_context()))
}

/// `{ "/mini/store/…" = { path = true; }; "/mini/store/….drv" = { outputs = [ "out" ]; }; }`
pub fn get_context(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    #[derive(Default)]
    struct Entry {
        path: bool,
        all_outputs: bool,
        outputs: BTreeSet<String>,
    }
    let s = string(ev, &args[0], span)?;
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for elem in s.context() {
        match elem {
            ContextElem::Path(p) => entries.entry(p.clone()).or_default().path = true,
            ContextElem::AllOutputs(d) => entries.entry(d.clone()).or_default().all_outputs = true,
            ContextElem::Output { drv, output } => {
                entries.entry(drv.clone()).or_default().outputs.insert(output.clone());
            }
        }
    }
    let attrs = entries
        .into_iter()
        .map(|(path, e)| {
            let mut fields = Vec::new();
            if e.path {
                fields.push(("path", Value::Bool(true)));
            }
            if e.all_outputs {
                fields.push(("allOutputs", Value::Bool(true)));
            }
            if !e.outputs.is_empty() {
                fields.push(("outputs", Value::list(e.outputs.into_iter().map(|o| Value::string(o).into()).collect())));
            }
            (Symbol::intern(&path), attrs_of(fields).into())
        })
        .collect();
    Ok(Value::attrs(Attrs::from_unsorted(attrs)))
}

/// `builtins.toFile name text`: a store file whose references are the
/// store paths in `text`'s context.
pub fn to_file(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let name = string(ev, &args[0], span)?;
    let text = string(ev, &args[1], span)?;
    let mut references = BTreeSet::new();
    for elem in text.context() {
        match elem {
            ContextElem::Path(p) => {
                references.insert(StorePath::parse(p).map_err(|e| store_error(e, span))?);
            }
            _ => {
                return Err(EvalError::at(
                    ErrorKind::Eval,
                    format!("in 'toFile': the file '{name}' cannot refer to derivation outputs"),
                    span,
                ))
            }
        }
    }
    let store = ev.store(span)?;
    let path = store.add_text(&name, &text, &references).map_err(|e| store_error(e, span))?;
    Ok(store_path_value(&path))
}

/// `builtins.path { path; name ? baseNameOf path; filter ? null; }`: copies
/// a path into the store, keeping only what `filter path type` accepts
/// (and, below a registered source filter's root, only sources: `filter`
/// is never asked about the rest).
pub fn path(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[0], span)?;
    for key in set.entries().iter().map(|a| a.name) {
        if !matches!(key.as_str(), "path" | "name" | "filter" | "recursive") {
            return Err(EvalError::at(
                ErrorKind::Eval,
                format!("unsupported argument '{key}' to 'builtins.path'"),
                span,
            ));
        }
    }
    let source = match set.get_str("path") {
        Some(t) => {
            let v = ev.force(&t.clone())?;
            PathBuf::from(&*ev.coerce_to_string(&v, span, false, false)?)
        }
        None => return Err(EvalError::at(ErrorKind::MissingAttribute, "attribute 'path' missing", span)),
    };
    ev.check_access(&source, Some(span))?;
    let name = match set.get_str("name") {
        Some(t) => string(ev, &t.clone(), span)?.to_string(),
        None => source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    let filter = match set.get_str("filter") {
        Some(t) => Some(ev.force(&t.clone())?),
        None => None,
    };
    let stored = match filter {
        None => ev.add_source(&source, &name, span)?,
        Some(filter) => {
            let sources = ev.source_filter_for(&source, span)?;
            let store = ev.store(span)?;
            let staging = store.staging_dir().map_err(|e| store_error(e, span))?;
            let copy = staging.join("filtered");
            let result = copy_filtered(ev, &filter, sources.as_ref(), &source, &copy, Path::new(""), span)
                .and_then(|()| store.add_path(&copy, &name).map_err(|e| store_error(e, span)));
            let _ = std::fs::remove_dir_all(&staging);
            result?
        }
    };
    Ok(store_path_value(&stored))
}

/// Copies `from` (`below` the copied root) to `to`, asking `filter` about
/// every entry below the root that is a source (`sources` keeps it).
fn copy_filtered(
    ev: &mut Evaluator,
    filter: &Value,
    sources: Option<&ScopedFilter>,
    from: &Path,
    to: &Path,
    below: &Path,
    span: Span,
) -> EvalResult<()> {
    let io = |e: std::io::Error| EvalError::at(ErrorKind::Io, format!("copying '{}': {e}", from.display()), span);
    let meta = std::fs::symlink_metadata(from).map_err(io)?;
    let kind = if meta.is_dir() {
        "directory"
    } else if meta.file_type().is_symlink() {
        "symlink"
    } else if meta.is_file() {
        "regular"
    } else {
        "unknown"
    };
    if below != Path::new("") {
        if sources.is_some_and(|sources| !sources.keeps(below, meta.is_dir())) {
            return Ok(());
        }
        let path_arg = Value::string(from.to_string_lossy().into_owned());
        let keep = super::call2(ev, filter, path_arg.into(), Value::string(kind).into(), span)?;
        if !super::expect_bool(keep, span)? {
            return Ok(());
        }
    }
    if meta.is_dir() {
        std::fs::create_dir(to).map_err(io)?;
        let mut names: Vec<_> = std::fs::read_dir(from)
            .map_err(io)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        names.sort();
        for n in names {
            copy_filtered(ev, filter, sources, &from.join(&n), &to.join(&n), &below.join(&n), span)?;
        }
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from).map_err(io)?, to).map_err(io)?;
    } else {
        std::fs::copy(from, to).map_err(io)?;
    }
    Ok(())
}
