//! `builtins.fromTOML`: a TOML document as a value. Tables become sets,
//! arrays lists; dates and times are refused, as Nix 2.8 refuses them.
//! Parsing is the `toml` crate's.

use super::string;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source_map::Span;
use crate::value::{Attrs, Symbol, Thunk, Value};

pub fn from_toml(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let text = string(ev, &args[0], span)?;
    let table: toml::Table = text.as_str().parse().map_err(|e: toml::de::Error| {
        // The crate's report spans lines (position, excerpt, message).
        let report = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('|'))
            .collect::<Vec<_>>()
            .join("; ");
        EvalError::at(ErrorKind::Eval, format!("while parsing a TOML string: {report}"), span)
    })?;
    convert_table(table, span)
}

fn convert_table(table: toml::Table, span: Span) -> EvalResult<Value> {
    let entries = table
        .into_iter()
        .map(|(k, v)| Ok((Symbol::intern(&k), Thunk::from(convert(v, span)?))))
        .collect::<EvalResult<Vec<_>>>()?;
    Ok(Value::attrs(Attrs::from_unsorted(entries)))
}

fn convert(value: toml::Value, span: Span) -> EvalResult<Value> {
    Ok(match value {
        toml::Value::String(s) => Value::string(s),
        toml::Value::Integer(n) => Value::Int(n),
        toml::Value::Float(f) => Value::Float(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Array(items) => {
            Value::list(items.into_iter().map(|v| convert(v, span).map(Thunk::from)).collect::<EvalResult<_>>()?)
        }
        toml::Value::Table(table) => convert_table(table, span)?,
        toml::Value::Datetime(_) => {
            return Err(EvalError::at(
                ErrorKind::Eval,
                "while parsing a TOML string: Dates and times are not supported",
                span,
            ))
        }
    })
}
