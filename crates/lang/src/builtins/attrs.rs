//! Attribute-set builtins. Names come out sorted, values stay lazy.

use indexmap::IndexMap;

use super::lists::strings_of;
use super::{attrs, list, string};
use crate::compile::ParamInfo;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source::Span;
use crate::value::{Attrs, Symbol, Thunk, Value};

pub fn attr_names(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[0], span)?;
    let mut names: Vec<(&str, Symbol)> = set.entries().iter().map(|(k, _)| (k.as_str(), *k)).collect();
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
    let entries = b.entries().iter().filter(|(k, _)| a.get(*k).is_some()).cloned().collect();
    Ok(Value::attrs(Attrs::from_sorted(entries)))
}

pub fn remove_attrs(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[0], span)?;
    let names: Vec<Symbol> = strings_of(ev, &args[1], span)?.iter().map(|n| Symbol::intern(n)).collect();
    let entries = set.entries().iter().filter(|(k, _)| !names.contains(k)).cloned().collect();
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
        entries.push((Symbol::intern(&name), value.clone()));
    }
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

pub fn map_attrs(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[1], span)?;
    let entries = set
        .entries()
        .iter()
        .map(|(k, t)| (*k, Thunk::apply2(args[0].clone(), k.to_value().into(), t.clone())))
        .collect();
    Ok(Value::attrs(Attrs::from_sorted(entries)))
}

pub fn zip_attrs_with(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let sets = list(ev, &args[1], span)?;
    let mut values: IndexMap<Symbol, Vec<Thunk>> = IndexMap::new();
    for s in sets.iter() {
        for (k, t) in attrs(ev, s, span)?.entries() {
            values.entry(*k).or_default().push(t.clone());
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
            ParamInfo::Pattern { formals, .. } => Ok(Value::attrs(Attrs::from_unsorted(
                formals.iter().map(|(n, d)| (*n, Value::Bool(d.is_some()).into())).collect(),
            ))),
        },
        Value::PrimOp(_) | Value::PrimOpApp(_) => Ok(Value::attrs(Attrs::default())),
        other => {
            Err(EvalError::type_error(format!("'functionArgs' requires a function, got {}", other.describe()), span))
        }
    }
}
