//! String context and the builtins that put things in the store:
//! `hasContext`, `getContext`, `unsafeDiscardStringContext`, `toFile` and
//! `path`. Each store addition yields a string whose context names the new
//! path, so whatever interpolates it depends on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{attrs, attrs_of, string};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::{store_error, Evaluator, ScopedFilter};
use crate::source_map::Span;
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
    Ok(ev.made_store_path(&path))
}

/// `builtins.path { path; name ? baseNameOf path; filter ? null; }`: copies
/// a path into the store, keeping only what `filter path type` accepts
/// (and, below a registered source filter's root, only sources: `filter`
/// is never asked about the rest).
pub fn path(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[0], span)?;
    for key in set.entries().iter().map(|a| a.name) {
        if !matches!(key.as_str(), "path" | "name" | "filter" | "recursive" | "sha256") {
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
            PathBuf::from(ev.coerce_to_string(&v, span, false, false)?.as_str())
        }
        None => return Err(EvalError::at(ErrorKind::MissingAttribute, "attribute 'path' missing", span)),
    };
    if let Some(t) = set.get_str("recursive") {
        if !super::expect_bool(ev.force(&t.clone())?, span)? {
            return Err(EvalError::at(
                ErrorKind::Eval,
                "'recursive = false' in 'builtins.path' is not supported by mini: paths are added recursively \
                 (as archives); leave the attribute out",
                span,
            ));
        }
    }
    let name = match set.get_str("name") {
        Some(t) => Some(string(ev, &t.clone(), span)?.to_string()),
        None => None,
    };
    let filter = match set.get_str("filter") {
        Some(t) => Some(ev.force(&t.clone())?),
        None => None,
    };
    let stored = add_path(ev, &source, name, filter, span)?;
    if let Some(t) = set.get_str("sha256") {
        let expected = string(ev, &t.clone(), span)?;
        check_sha256(ev, &stored, &source, &expected, span)?;
    }
    Ok(ev.made_store_path(&stored))
}

/// `filterSource filter path`: `builtins.path { inherit path filter; }`.
pub fn filter_source(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let filter = super::function(ev, &args[0], span)?;
    let v = ev.force(&args[1])?;
    let source = PathBuf::from(ev.coerce_to_string(&v, span, false, false)?.as_str());
    let stored = add_path(ev, &source, None, Some(filter), span)?;
    Ok(ev.made_store_path(&stored))
}

/// Copies `source` into the store as `name` (default: its base name),
/// through `filter` if there is one.
fn add_path(
    ev: &mut Evaluator,
    source: &Path,
    name: Option<String>,
    filter: Option<Value>,
    span: Span,
) -> EvalResult<StorePath> {
    ev.check_access(source, Some(span))?;
    let logical = source;
    let source = &ev.on_disk(logical);
    let name =
        name.unwrap_or_else(|| logical.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    match filter {
        None => ev.add_source(source, &name, span),
        Some(filter) => {
            let sources = ev.source_filter_for(source, span)?;
            let store = ev.store(span)?;
            let staging = store.staging_dir().map_err(|e| store_error(e, span))?;
            let copy = staging.join("filtered");
            let walk = Filtering { filter: &filter, sources: sources.as_ref(), root: logical };
            let result = copy_filtered(ev, &walk, source, &copy, Path::new(""), span)
                .and_then(|()| store.add_path(&copy, &name).map_err(|e| store_error(e, span)));
            let _ = std::fs::remove_dir_all(&staging);
            result
        }
    }
}

/// The fixed-output form of `builtins.path`: the added tree's archive
/// (NAR) must have the SHA-256 the recipe pinned.
fn check_sha256(ev: &mut Evaluator, stored: &StorePath, source: &Path, expected: &str, span: Span) -> EvalResult<()> {
    let want = mini_store::derivation::parse_hash("sha256", expected)
        .map_err(|e| EvalError::at(ErrorKind::Eval, e.to_string(), span))?;
    let store = ev.store(span)?;
    let got = mini_store::nar::sha256(&store.physical_path(stored))
        .map_err(|e| EvalError::at(ErrorKind::Io, format!("hashing '{stored}': {e}"), span))?;
    if got[..] != want[..] {
        let nix32 = |h: &[u8]| format!("sha256:{}", mini_store::base32::encode(h));
        return Err(EvalError::at(
            ErrorKind::Eval,
            format!(
                "store path mismatch in (possibly filtered) path added from '{}': the recipe pins {}, the path \
                 has {}; if the new contents are intended, update the recipe's sha256",
                source.display(),
                nix32(&want),
                nix32(&got)
            ),
            span,
        ));
    }
    Ok(())
}

/// `unsafeDiscardOutputDependency s`: `s` with a `.drv`'s "all outputs"
/// context turned into a dependency on the `.drv` file alone.
pub fn unsafe_discard_output_dependency(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let s = string(ev, &args[0], span)?;
    let context = s
        .context()
        .iter()
        .map(|elem| match elem {
            ContextElem::AllOutputs(drv) => ContextElem::Path(drv.clone()),
            other => other.clone(),
        })
        .collect();
    Ok(Value::String(NixStr::with_context(s.as_str(), context)))
}

/// `appendContext s { "/mini/store/…" = { path = true; allOutputs = true; outputs = [ … ]; }; }`:
/// the inverse of `getContext`.
pub fn append_context(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let s = string(ev, &args[0], span)?;
    let set = attrs(ev, &args[1], span)?;
    let mut context = s.context().to_vec();
    for entry in set.entries() {
        let key = entry.name.as_str();
        if StorePath::parse(key).is_err() {
            return Err(EvalError::at(ErrorKind::Eval, format!("Context key '{key}' is not a store path"), span));
        }
        let fields = attrs(ev, &entry.value, span)?;
        let not_drv = |what: &str| {
            EvalError::at(
                ErrorKind::Eval,
                format!("tried to add {what} context of {key}, which is not a derivation, to a string"),
                span,
            )
        };
        for field in fields.entries() {
            match field.name.as_str() {
                "path" => {
                    if super::expect_bool(ev.force(&field.value)?, span)? {
                        context.push(ContextElem::Path(key.to_string()));
                    }
                }
                "allOutputs" => {
                    if super::expect_bool(ev.force(&field.value)?, span)? {
                        if !key.ends_with(".drv") {
                            return Err(not_drv("all-outputs"));
                        }
                        context.push(ContextElem::AllOutputs(key.to_string()));
                    }
                }
                "outputs" => {
                    let outputs = super::lists::strings_of(ev, &field.value, span)?;
                    if !outputs.is_empty() && !key.ends_with(".drv") {
                        return Err(not_drv(&format!("'{}' output", outputs[0])));
                    }
                    for output in outputs.iter() {
                        context.push(ContextElem::Output { drv: key.to_string(), output: output.to_string() });
                    }
                }
                other => {
                    return Err(EvalError::at(
                        ErrorKind::Eval,
                        format!(
                        "unsupported context attribute '{other}' for '{key}' (expected path, allOutputs or outputs)"
                    ),
                        span,
                    ))
                }
            }
        }
    }
    context.sort();
    context.dedup();
    Ok(Value::String(NixStr::with_context(s.as_str(), context)))
}

/// `storePath "/mini/store/…"`: a path already in the store, as a string
/// that depends on it. Not in pure evaluation, where nothing may name a
/// store path it did not make.
pub fn store_path(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    if ev.pure {
        return Err(EvalError::at(
            ErrorKind::Eval,
            "'builtins.storePath' is not allowed in pure evaluation mode",
            span,
        ));
    }
    let v = ev.force(&args[0])?;
    let text = ev.coerce_to_string(&v, span, false, false)?;
    let (path, _rest) = StorePath::parse_prefix(&text).map_err(|_| {
        EvalError::at(ErrorKind::Eval, format!("path '{}' is not in the Nix store", text.as_str()), span)
    })?;
    let store = ev.store(span)?;
    if !store.is_valid(&path) {
        return Err(EvalError::at(
            ErrorKind::Eval,
            format!("path '{path}' is not valid in this store: build or add it first"),
            span,
        ));
    }
    let mut context = text.context().to_vec();
    context.push(ContextElem::Path(path.to_string()));
    Ok(Value::String(NixStr::with_context(text.as_str(), context)))
}

/// What a filtered copy asks: `filter`, about every entry that is a source
/// (`sources` keeps it), named below `root` as the recipe names the copied
/// path (a store path by its logical name, not where the store is).
struct Filtering<'a> {
    filter: &'a Value,
    sources: Option<&'a ScopedFilter>,
    root: &'a Path,
}

/// Copies `from` (`below` the copied root) to `to`, through `walk`.
fn copy_filtered(
    ev: &mut Evaluator,
    walk: &Filtering,
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
        if walk.sources.is_some_and(|sources| !sources.keeps(below, meta.is_dir())) {
            return Ok(());
        }
        let path_arg = Value::string(walk.root.join(below).to_string_lossy().into_owned());
        let keep = super::call2(ev, walk.filter, path_arg.into(), Value::string(kind).into(), span)?;
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
            copy_filtered(ev, walk, &from.join(&n), &to.join(&n), &below.join(&n), span)?;
        }
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from).map_err(io)?, to).map_err(io)?;
    } else {
        std::fs::copy(from, to).map_err(io)?;
    }
    Ok(())
}
