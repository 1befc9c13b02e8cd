//! Type predicates, arithmetic, control (`seq`, `tryEval`, `throw`, `abort`,
//! `trace`) and the builtins that read the outside world (`import`,
//! `readFile`, `readDir`, `pathExists`, `getEnv`).

use std::path::PathBuf;

use super::{attrs_of, float, int, string};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::{io_message, Evaluator};
use crate::print::print_value;
use crate::source_map::Span;
use crate::syntax::ast::BinOp;
use crate::value::{Attrs, Symbol, Thunk, Value};

macro_rules! predicate {
    ($name:ident, $pat:pat) => {
        pub fn $name(ev: &mut Evaluator, args: &[Thunk], _span: Span) -> EvalResult<Value> {
            Ok(Value::Bool(matches!(ev.force(&args[0])?, $pat)))
        }
    };
}

predicate!(is_attrs, Value::Attrs(_));
predicate!(is_bool, Value::Bool(_));
predicate!(is_float, Value::Float(_));
predicate!(is_function, Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_));
predicate!(is_int, Value::Int(_));
predicate!(is_list, Value::List(_));
predicate!(is_null, Value::Null);
predicate!(is_path, Value::Path(_));
predicate!(is_string, Value::String(_));

pub fn type_of(ev: &mut Evaluator, args: &[Thunk], _span: Span) -> EvalResult<Value> {
    Ok(Value::string(ev.force(&args[0])?.type_name()))
}

/// `add`, `sub`, `mul`, `div`: floats if either side is one, else integers.
fn numeric(ev: &mut Evaluator, args: &[Thunk], op: BinOp, span: Span) -> EvalResult<Value> {
    let (a, b) = (ev.force(&args[0])?, ev.force(&args[1])?);
    let (a, b) = if matches!(a, Value::Float(_)) || matches!(b, Value::Float(_)) {
        (Value::Float(float(ev, &a.into(), span)?), Value::Float(float(ev, &b.into(), span)?))
    } else {
        (Value::Int(int(ev, &a.into(), span)?), Value::Int(int(ev, &b.into(), span)?))
    };
    match (op, &a, &b) {
        (BinOp::Add, Value::Int(x), Value::Int(y)) => Ok(Value::Int(x.wrapping_add(*y))),
        (BinOp::Add, Value::Float(x), Value::Float(y)) => Ok(Value::Float(x + y)),
        _ => ev.arith(op, a, b, span),
    }
}

pub fn add(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    numeric(ev, args, BinOp::Add, span)
}

pub fn sub(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    numeric(ev, args, BinOp::Sub, span)
}

pub fn mul(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    numeric(ev, args, BinOp::Mul, span)
}

pub fn div(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    numeric(ev, args, BinOp::Div, span)
}

pub fn less_than(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let (a, b) = (ev.force(&args[0])?, ev.force(&args[1])?);
    Ok(Value::Bool(ev.less_than(&a, &b, span)?))
}

pub fn bit_and(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    Ok(Value::Int(int(ev, &args[0], span)? & int(ev, &args[1], span)?))
}

pub fn bit_or(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    Ok(Value::Int(int(ev, &args[0], span)? | int(ev, &args[1], span)?))
}

pub fn bit_xor(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    Ok(Value::Int(int(ev, &args[0], span)? ^ int(ev, &args[1], span)?))
}

pub fn ceil(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    Ok(Value::Int(float(ev, &args[0], span)?.ceil() as i64))
}

pub fn floor(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    Ok(Value::Int(float(ev, &args[0], span)?.floor() as i64))
}

pub fn seq(ev: &mut Evaluator, args: &[Thunk], _span: Span) -> EvalResult<Value> {
    ev.force(&args[0])?;
    ev.force(&args[1])
}

pub fn deep_seq(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let v = ev.force(&args[0])?;
    ev.deep_force(&v, span)?;
    ev.force(&args[1])
}

pub fn throw(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let msg = string(ev, &args[0], span)?;
    Err(EvalError::at(ErrorKind::Throw, msg.to_string(), span))
}

pub fn abort(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let v = ev.force(&args[0])?;
    let msg = ev.coerce_to_string(&v, span, false, false)?;
    Err(EvalError::at(ErrorKind::Abort, format!("evaluation aborted with the following error message: '{msg}'"), span))
}

pub fn try_eval(ev: &mut Evaluator, args: &[Thunk], _span: Span) -> EvalResult<Value> {
    match ev.force(&args[0]) {
        Ok(v) => Ok(attrs_of(vec![("success", Value::Bool(true)), ("value", v)])),
        Err(e) if e.is_catchable() => {
            Ok(attrs_of(vec![("success", Value::Bool(false)), ("value", Value::Bool(false))]))
        }
        Err(e) => Err(e),
    }
}

pub fn trace(ev: &mut Evaluator, args: &[Thunk], _span: Span) -> EvalResult<Value> {
    let msg = ev.force(&args[0])?;
    match &msg {
        Value::String(s) => eprintln!("trace: {s}"),
        other => eprintln!("trace: {}", print_value(other)),
    }
    ev.force(&args[1])
}

pub fn get_env(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let name = string(ev, &args[0], span)?;
    if ev.pure {
        return Ok(Value::string(""));
    }
    Ok(Value::string(std::env::var(&*name).unwrap_or_default()))
}

/// A path argument: a path value, or a string holding an absolute path,
/// which this evaluation must be allowed to read.
pub(super) fn path_arg(ev: &mut Evaluator, t: &Thunk, span: Span) -> EvalResult<PathBuf> {
    let v = ev.force(t)?;
    let s = ev.coerce_to_string(&v, span, false, false)?;
    if !s.starts_with('/') {
        return Err(EvalError::at(ErrorKind::Eval, format!("string '{s}' doesn't represent an absolute path"), span));
    }
    let path = PathBuf::from(s.as_str());
    ev.check_access(&path, Some(span))?;
    Ok(path)
}

fn io_error(what: &str, path: &std::path::Path, e: &std::io::Error, span: Span) -> Box<EvalError> {
    EvalError::at(ErrorKind::Io, format!("{what} '{}': {}", path.display(), io_message(e)), span)
}

pub fn import(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let path = path_arg(ev, &args[0], span)?;
    ev.import(&path, Some(span))
}

pub fn read_file(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let path = path_arg(ev, &args[0], span)?;
    let bytes = std::fs::read(ev.on_disk(&path)).map_err(|e| io_error("opening file", &path, &e, span))?;
    Ok(Value::string(String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn path_exists(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let path = path_arg(ev, &args[0], span)?;
    Ok(Value::Bool(std::fs::symlink_metadata(ev.on_disk(&path)).is_ok()))
}

pub fn read_dir(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let path = path_arg(ev, &args[0], span)?;
    let entries = std::fs::read_dir(ev.on_disk(&path)).map_err(|e| io_error("reading directory", &path, &e, span))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("reading directory", &path, &e, span))?;
        let kind = match entry.file_type() {
            Ok(t) if t.is_dir() => "directory",
            Ok(t) if t.is_symlink() => "symlink",
            Ok(t) if t.is_file() => "regular",
            _ => "unknown",
        };
        out.push((Symbol::intern(&entry.file_name().to_string_lossy()), Value::string(kind).into()));
    }
    Ok(Value::attrs(Attrs::from_unsorted(out)))
}

/// `addErrorContext message value`: the value; if forcing it fails, the
/// error's trace gains `message` (shown with `--show-trace`).
pub fn add_error_context(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    ev.force(&args[1]).map_err(|mut e| {
        if let Some(Value::String(message)) = args[0].peek() {
            e.add_trace(span, || message.to_string());
        } else if let Ok(message) = string(ev, &args[0], span) {
            e.add_trace(span, || message.to_string());
        }
        e
    })
}

/// `scopedImport scope path`: `import` with extra variables in scope.
pub fn scoped_import(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let scope = super::attrs(ev, &args[0], span)?;
    let path = path_arg(ev, &args[1], span)?;
    ev.scoped_import(&path, &scope, span)
}

/// `findFile searchPath name` (what `<name>` calls): the first entry whose
/// `prefix` is empty or a leading path component of `name` and under whose
/// `path` the rest of `name` exists. Only in impure evaluation.
pub fn find_file(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let entries = super::list(ev, &args[0], span)?;
    let name = string(ev, &args[1], span)?;
    if ev.pure {
        return Err(EvalError::at(
            ErrorKind::Eval,
            format!("cannot look up '<{name}>' in pure evaluation mode (use '--impure' to override): flakes and `mini eval --pure` have no search path; use a flake input or a relative path instead"),
            span,
        ));
    }
    for entry in entries.iter() {
        let entry = super::attrs(ev, entry, span)?;
        let prefix = match entry.get_str("prefix") {
            Some(p) => string(ev, &p.clone(), span)?.to_string(),
            None => String::new(),
        };
        let Some(path) = entry.get_str("path").cloned() else {
            return Err(EvalError::at(ErrorKind::MissingAttribute, "attribute 'path' missing", span));
        };
        let path = ev.force(&path)?;
        let path = ev.coerce_to_string(&path, span, false, false)?.to_string();
        let rest = if prefix.is_empty() {
            Some(name.as_str())
        } else {
            match name.strip_prefix(prefix.as_str()) {
                Some("") => Some(""),
                Some(rest) if rest.starts_with('/') => Some(&rest[1..]),
                _ => None,
            }
        };
        let Some(rest) = rest else { continue };
        // Appended as text, as Nix does: an absolute rest stays below the entry.
        let candidate = if rest.is_empty() { path.clone() } else { format!("{path}/{rest}") };
        let canonical = crate::compile::canonicalize_lexically(std::path::Path::new(&candidate));
        if std::fs::symlink_metadata(ev.on_disk(std::path::Path::new(&canonical))).is_ok() {
            ev.check_access(std::path::Path::new(&canonical), Some(span))?;
            return Ok(Value::Path(canonical.into()));
        }
    }
    // Thrown, as in Nix, so `(builtins.tryEval <name>).success` can probe.
    Err(EvalError::at(
        ErrorKind::Throw,
        format!("file '{name}' was not found in the Nix search path (add it using $NIX_PATH or -I)"),
        span,
    ))
}
