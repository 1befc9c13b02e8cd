//! `builtins.toJSON`, `builtins.fromJSON` and `mini eval --json`, with
//! Nix's output format: sorted keys, no spaces, `%g` floats.

use std::fmt::Write;

use super::string;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::print::{common_escape, format_float};
use crate::source_map::Span;
use crate::string::{ContextElem, NixStr};
use crate::value::{Attrs, Symbol, Thunk, Value};

/// `builtins.toJSON`: like Nix, the result keeps the context of every
/// string inside, so store paths in JSON still count as dependencies.
pub fn to_json_primop(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let v = ev.force(&args[0])?;
    let mut out = Json { text: String::new(), context: Vec::new() };
    write_json(ev, &v, span, &mut out)?;
    Ok(Value::String(NixStr::with_context(out.text, out.context)))
}

/// Serialises a value, forcing it deeply.
pub fn to_json(ev: &mut Evaluator, v: &Value, span: Span) -> EvalResult<String> {
    let mut out = Json { text: String::new(), context: Vec::new() };
    write_json(ev, v, span, &mut out)?;
    Ok(out.text)
}

/// JSON text being written, and the context of the strings in it.
struct Json {
    text: String,
    context: Vec<ContextElem>,
}

impl Json {
    fn push(&mut self, c: char) {
        self.text.push(c);
    }

    fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn string(&mut self, s: &NixStr) {
        self.context.extend_from_slice(s.context());
        escape_json(s, &mut self.text);
    }
}

fn write_json(ev: &mut Evaluator, v: &Value, span: Span, out: &mut Json) -> EvalResult<()> {
    ev.check_stack(Some(span))?;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => write!(out.text, "{n}").unwrap_or(()),
        Value::Float(f) => out.push_str(&format_float(*f)),
        Value::String(s) => out.string(s),
        Value::Path(_) => {
            let s = ev.coerce_to_string(v, span, false, true)?;
            out.string(&s);
        }
        Value::Attrs(attrs) => {
            if attrs.get_str("__toString").is_some() {
                let s = ev.coerce_to_string(v, span, false, false)?;
                out.string(&s);
                return Ok(());
            }
            if let Some(out_path) = attrs.get_str("outPath") {
                let inner = ev.force(&out_path.clone())?;
                return write_json(ev, &inner, span, out);
            }
            out.push('{');
            for (i, (name, t)) in attrs.sorted_by_name().into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                escape_json(name, &mut out.text);
                out.push(':');
                let value = ev.force(t)?;
                write_json(ev, &value, span, out)?;
            }
            out.push('}');
        }
        Value::List(items) => {
            out.push('[');
            for (i, t) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let value = ev.force(t)?;
                write_json(ev, &value, span, out)?;
            }
            out.push(']');
        }
        Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(_) => {
            return Err(EvalError::at(ErrorKind::Type, "cannot convert a function to JSON", span))
        }
    }
    Ok(())
}

fn escape_json(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match common_escape(c) {
            Some(escaped) => out.push_str(escaped),
            None if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap_or(()),
            None => out.push(c),
        }
    }
    out.push('"');
}

pub fn from_json(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let text = string(ev, &args[0], span)?;
    let parsed: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| EvalError::at(ErrorKind::Eval, format!("syntax error while parsing JSON: {e}"), span))?;
    Ok(json_value(parsed))
}

fn json_value(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::string(s),
        serde_json::Value::Array(items) => Value::list(items.into_iter().map(|i| json_value(i).into()).collect()),
        serde_json::Value::Object(map) => {
            // Later duplicates win in JSON objects; serde_json already keeps the last.
            Value::attrs(Attrs::from_unsorted(
                map.into_iter().map(|(k, v)| (Symbol::intern(&k), json_value(v).into())).collect(),
            ))
        }
    }
}
