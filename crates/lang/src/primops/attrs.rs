//! Attribute-set builtins. Names come out sorted, values stay lazy.

use indexmap::IndexMap;

use super::lists::strings_of;
use super::{attrs, attrs_of, list, string};
use crate::compile::ParamInfo;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source_map::{Pos, SourceMap, Span};
use crate::value::{Attr, Attrs, Symbol, Thunk, Value};

pub fn attr_names(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[0], span)?;
    let mut names: Vec<(&str, Symbol)> = set.entries().iter().map(|a| (a.name.as_str(), a.name)).collect();
    names.sort_unstable_by(|a, b| a.0.cmp(b.0));
    Ok(Value::list(names.into_iter().map(|(_, k)| k.to_value().into()).collect()))
}

pub fn attr_values(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[0], span)?;
    Ok(Value::list(set.sorted_by_name().into_iter().map(|(_, t)| t.clone()).collect()))
}

pub fn get_attr(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let name = string(ev, &args[0], span)?;
    let set = attrs(ev, &args[1], span)?;
    match set.get_str(&name) {
        Some(t) => ev.force(&t.clone()),
        None => Err(EvalError::at(ErrorKind::MissingAttribute, format!("attribute '{name}' missing"), span)),
    }
}

pub fn has_attr(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let name = string(ev, &args[0], span)?;
    let set = attrs(ev, &args[1], span)?;
    Ok(Value::Bool(set.get_str(&name).is_some()))
}

pub fn cat_attrs(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let name = Symbol::intern(&string(ev, &args[0], span)?);
    let sets = list(ev, &args[1], span)?;
    let mut out = Vec::new();
    for s in sets.iter() {
        if let Some(t) = attrs(ev, s, span)?.get(name) {
            out.push(t.clone());
        }
    }
    Ok(Value::list(out))
}

pub fn intersect_attrs(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let a = attrs(ev, &args[0], span)?;
    let b = attrs(ev, &args[1], span)?;
    let entries = b.entries().iter().filter(|e| a.get(e.name).is_some()).cloned().collect();
    Ok(Value::attrs(Attrs::from_sorted(entries)))
}

pub fn remove_attrs(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[0], span)?;
    let names: Vec<Symbol> = strings_of(ev, &args[1], span)?.iter().map(|n| Symbol::intern(n)).collect();
    let entries = set.entries().iter().filter(|a| !names.contains(&a.name)).cloned().collect();
    Ok(Value::attrs(Attrs::from_sorted(entries)))
}

pub fn list_to_attrs(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let items = list(ev, &args[0], span)?;
    let (name_sym, value_sym) = (Symbol::intern("name"), Symbol::intern("value"));
    let mut entries = Vec::with_capacity(items.len());
    for item in items.iter() {
        let pair = attrs(ev, item, span)?;
        let name = pair
            .get(name_sym)
            .ok_or_else(|| EvalError::at(ErrorKind::MissingAttribute, "attribute 'name' missing", span))?
            .clone();
        let name = string(ev, &name, span)?;
        let value = pair
            .get(value_sym)
            .ok_or_else(|| EvalError::at(ErrorKind::MissingAttribute, "attribute 'value' missing", span))?;
        // As in Nix, the attribute is placed where its `value` was written.
        let pos = pair.position(value_sym).unwrap_or(Pos::NONE);
        entries.push(Attr { name: Symbol::intern(&name), pos, value: value.clone() });
    }
    Ok(Value::attrs(Attrs::from_attrs(entries)))
}

pub fn map_attrs(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[1], span)?;
    let entries = set
        .entries()
        .iter()
        .map(|a| Attr::new(a.name, Thunk::apply2(args[0].clone(), a.name.to_value().into(), a.value.clone())))
        .collect();
    Ok(Value::attrs(Attrs::from_sorted(entries)))
}

pub fn zip_attrs_with(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let sets = list(ev, &args[1], span)?;
    let mut values: IndexMap<Symbol, Vec<Thunk>> = IndexMap::new();
    for s in sets.iter() {
        for a in attrs(ev, s, span)?.entries() {
            values.entry(a.name).or_default().push(a.value.clone());
        }
    }
    let entries = values
        .into_iter()
        .map(|(k, vs)| (k, Thunk::apply2(args[0].clone(), k.to_value().into(), Value::list(vs).into())))
        .collect();
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

pub fn function_args(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    match ev.force(&args[0])? {
        Value::Lambda(c) => match &c.lambda.param {
            ParamInfo::Idents(_) => Ok(Value::attrs(Attrs::default())),
            ParamInfo::Pattern { formals, positions, .. } => Ok(Value::attrs(Attrs::from_attrs(
                formals
                    .iter()
                    .zip(positions.iter())
                    .map(|((name, d), &pos)| Attr { name: *name, pos, value: Value::Bool(d.is_some()).into() })
                    .collect(),
            ))),
        },
        Value::PrimOp(_) | Value::PrimOpApp(_) => Ok(Value::attrs(Attrs::default())),
        other => {
            Err(EvalError::type_error(format!("'functionArgs' requires a function, got {}", other.describe()), span))
        }
    }
}

/// `unsafeGetAttrPos name set`: where the attribute was defined, as
/// `{ file; line; column; }`, or `null` when that is not known (attributes
/// made by `mapAttrs`, say, or a missing name).
pub fn unsafe_get_attr_pos(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let name = string(ev, &args[0], span)?;
    let set = attrs(ev, &args[1], span)?;
    Ok(match set.position(Symbol::intern(&name)).and_then(Pos::span) {
        Some(at) => position_value(&ev.sources, at),
        None => Value::Null,
    })
}

/// A position as Nix shows it to programs (`__curPos`, `unsafeGetAttrPos`):
/// the file's path (or its name, for text given on the command line), and
/// the 1-based line and column.
pub(crate) fn position_value(sources: &SourceMap, span: Span) -> Value {
    let location = sources.locate(span);
    let file = match &sources.file(span.file).path {
        Some(path) => path.to_string_lossy().into_owned(),
        None => location.file.clone(),
    };
    attrs_of(vec![
        ("column", Value::Int(location.column as i64)),
        ("file", Value::string(file)),
        ("line", Value::Int(location.line as i64)),
    ])
}
