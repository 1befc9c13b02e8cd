//! `builtins.toXML`: a value, forced deeply, in the XML dialect Nix writes
//! (the format of `nix-instantiate --eval --xml`), byte for byte.

use std::collections::HashSet;

use crate::compile::ParamInfo;
use crate::error::EvalResult;
use crate::eval::Evaluator;
use crate::print::format_float;
use crate::source_map::Span;
use crate::string::{ContextElem, NixStr};
use crate::value::{Symbol, Thunk, Value};

pub fn to_xml(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let mut writer = XmlWriter { out: String::new(), context: Vec::new(), drvs_seen: HashSet::new() };
    writer.out.push_str("<?xml version='1.0' encoding='utf-8'?>\n<expr>\n");
    let value = ev.force(&args[0])?;
    writer.value(ev, &value, 1, span)?;
    writer.out.push_str("</expr>\n");
    let XmlWriter { out, mut context, .. } = writer;
    context.sort();
    context.dedup();
    Ok(Value::String(NixStr::with_context(out, context)))
}

struct XmlWriter {
    out: String,
    /// The context of every string written, which the document keeps.
    context: Vec<ContextElem>,
    /// Derivations already written in full: later ones are `<repeated />`.
    drvs_seen: HashSet<String>,
}

impl XmlWriter {
    fn indent(&mut self, depth: usize) {
        self.out.extend(std::iter::repeat_n("  ", depth));
    }

    fn empty(&mut self, depth: usize, element: &str, attrs: &[(&str, &str)]) {
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(element);
        for (name, value) in attrs {
            self.out.push(' ');
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push_str(" />\n");
    }

    fn open(&mut self, depth: usize, element: &str, attrs: &[(&str, &str)]) {
        self.empty(depth, element, attrs);
        // Turn the " />\n" just written into ">\n".
        self.out.truncate(self.out.len() - 4);
        self.out.push_str(">\n");
    }

    fn close(&mut self, depth: usize, element: &str) {
        self.indent(depth);
        self.out.push_str("</");
        self.out.push_str(element);
        self.out.push_str(">\n");
    }

    fn value(&mut self, ev: &mut Evaluator, value: &Value, depth: usize, span: Span) -> EvalResult<()> {
        ev.check_stack(Some(span))?;
        match value {
            Value::Null => self.empty(depth, "null", &[]),
            Value::Bool(b) => self.empty(depth, "bool", &[("value", if *b { "true" } else { "false" })]),
            Value::Int(n) => self.empty(depth, "int", &[("value", &n.to_string())]),
            Value::Float(f) => self.empty(depth, "float", &[("value", &format_float(*f))]),
            Value::String(s) => {
                self.context.extend_from_slice(s.context());
                self.empty(depth, "string", &[("value", s.as_str())]);
            }
            Value::Path(p) => self.empty(depth, "path", &[("value", p)]),
            Value::List(items) => {
                self.open(depth, "list", &[]);
                for item in items.iter() {
                    let item = ev.force(item)?;
                    self.value(ev, &item, depth + 1, span)?;
                }
                self.close(depth, "list");
            }
            Value::Attrs(attrs) => {
                let text_of = |ev: &mut Evaluator, name: &str| -> EvalResult<Option<String>> {
                    match attrs.get_str(name) {
                        Some(t) => match ev.force(&t.clone())? {
                            Value::String(s) => Ok(Some(s.to_string())),
                            _ => Ok(None),
                        },
                        None => Ok(None),
                    }
                };
                let element = if ev.is_derivation(attrs)? { "derivation" } else { "attrs" };
                let mut tag_attrs = Vec::new();
                let mut repeated = false;
                if element == "derivation" {
                    // As in Nix, only a derivation with a drvPath not yet
                    // written is written in full.
                    let drv_path = text_of(ev, "drvPath")?;
                    repeated = drv_path.as_ref().is_none_or(|d| d.is_empty() || !self.drvs_seen.insert(d.clone()));
                    if let Some(d) = &drv_path {
                        tag_attrs.push(("drvPath", d.clone()));
                    }
                    if let Some(o) = text_of(ev, "outPath")? {
                        tag_attrs.push(("outPath", o));
                    }
                }
                let tag: Vec<(&str, &str)> = tag_attrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.open(depth, element, &tag);
                if repeated {
                    self.empty(depth + 1, "repeated", &[]);
                } else {
                    for (name, t) in attrs.sorted_by_name() {
                        self.open(depth + 1, "attr", &[("name", name)]);
                        let v = ev.force(t)?;
                        self.value(ev, &v, depth + 2, span)?;
                        self.close(depth + 1, "attr");
                    }
                }
                self.close(depth, element);
            }
            Value::Lambda(closure) => {
                let info = closure.lambda;
                self.open(depth, "function", &[]);
                match &info.param {
                    ParamInfo::Idents(_) => {
                        let name = info.arg_names.get(closure.applied.len()).map_or("", |s| s.as_str());
                        self.empty(depth + 1, "varpat", &[("name", name)]);
                    }
                    ParamInfo::Pattern { formals, ellipsis, .. } => {
                        let mut attrs = Vec::new();
                        if *ellipsis {
                            attrs.push(("ellipsis", "1"));
                        }
                        if let Some(bind) = info.arg_names.first() {
                            attrs.push(("name", bind.as_str()));
                        }
                        self.open(depth + 1, "attrspat", &attrs);
                        let mut names: Vec<&str> = formals.iter().map(|(n, _)| Symbol::as_str(*n)).collect();
                        names.sort_unstable();
                        for name in names {
                            self.empty(depth + 2, "attr", &[("name", name)]);
                        }
                        self.close(depth + 1, "attrspat");
                    }
                }
                self.close(depth, "function");
            }
            Value::PrimOp(_) | Value::PrimOpApp(_) => self.empty(depth, "unevaluated", &[]),
        }
        Ok(())
    }
}

/// Nix's XML escaping: markup characters and newlines; nothing else.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#xA;"),
            c => out.push(c),
        }
    }
}
