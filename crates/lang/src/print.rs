//! Printing values exactly as `nix-instantiate --eval` does, and showing
//! expressions as Nix's `Expr::show` does (used in `assert` messages).

use std::collections::HashSet;
use std::fmt::Write;

use crate::syntax::ast::{Ast, AttrKey, BinOp, Binding, Param, StrPart};
use crate::value::{Thunk, Value};

/// Prints an already evaluated value. Thunks that were never forced print
/// as `<CODE>`; a set or list met again prints as `«repeated»`.
pub fn print_value(v: &Value) -> String {
    let mut out = String::new();
    Printer { seen: HashSet::new(), out: &mut out }.value(v, None);
    out
}

struct Printer<'a> {
    seen: HashSet<usize>,
    out: &'a mut String,
}

impl Printer<'_> {
    fn thunk(&mut self, t: &Thunk) {
        match t.peek() {
            Some(v) => self.value(&v, Some(t)),
            None => self.out.push_str("<CODE>"),
        }
    }

    /// Nix remembers sets by their attribute storage and lists by their
    /// element storage, which for lists of one or two elements sits inside
    /// the value cell itself; we mirror that identity.
    fn identity(v: &Value, holder: Option<&Thunk>) -> Option<usize> {
        match v {
            Value::Attrs(a) if !a.is_empty() => Some(std::rc::Rc::as_ptr(a) as *const () as usize),
            Value::List(l) if l.len() > 2 => Some(l.as_ptr() as usize),
            Value::List(l) if !l.is_empty() => match holder {
                Some(Thunk::Lazy(cell)) => Some(std::rc::Rc::as_ptr(cell) as *const () as usize),
                _ => None,
            },
            _ => None,
        }
    }

    fn value(&mut self, v: &Value, holder: Option<&Thunk>) {
        if let Some(id) = Self::identity(v, holder) {
            if !self.seen.insert(id) {
                self.out.push_str("«repeated»");
                return;
            }
        }
        match v {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Int(n) => write!(self.out, "{n}").unwrap_or(()),
            Value::Float(f) => self.out.push_str(&format_float(*f)),
            Value::String(s) => self.out.push_str(&escape_string(s)),
            Value::Path(p) => self.out.push_str(p),
            Value::Attrs(attrs) => {
                self.out.push_str("{ ");
                for (name, t) in attrs.sorted_by_name() {
                    self.out.push_str(&attr_name(name));
                    self.out.push_str(" = ");
                    self.thunk(t);
                    self.out.push_str("; ");
                }
                self.out.push('}');
            }
            Value::List(items) => {
                self.out.push_str("[ ");
                for t in items.iter() {
                    self.thunk(t);
                    self.out.push(' ');
                }
                self.out.push(']');
            }
            Value::Lambda(_) => self.out.push_str("<LAMBDA>"),
            Value::PrimOp(_) => self.out.push_str("<PRIMOP>"),
            Value::PrimOpApp(_) => self.out.push_str("<PRIMOP-APP>"),
        }
    }
}

/// Whether `name` may be written bare, as Nix's printer decides it.
fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    let head_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_');
    head_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-')) && name != "if"
}

pub fn attr_name(name: &str) -> String {
    if is_plain_name(name) {
        name.to_string()
    } else {
        escape_string(name)
    }
}

/// The escapes Nix's printer and its JSON writer share.
pub(crate) fn common_escape(c: char) -> Option<&'static str> {
    Some(match c {
        '"' => "\\\"",
        '\\' => "\\\\",
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        _ => return None,
    })
}

/// A string literal as Nix prints it: `"`, `\`, newline, return, tab and `${` escaped.
pub fn escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match common_escape(c) {
            Some(escaped) => out.push_str(escaped),
            None if c == '$' && chars.peek() == Some(&'{') => out.push_str("\\$"),
            None => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A float as C++ streams print it by default (`%g`, six significant digits).
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return if f.is_sign_negative() { "-nan".into() } else { "nan".into() };
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf".into() } else { "inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    const PRECISION: i32 = 6;
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..PRECISION).contains(&exp) {
        let decimals = (PRECISION - 1 - exp).max(0) as usize;
        trim_zeros(format!("{f:.decimals$}"))
    } else {
        let mantissa = trim_zeros(mantissa.to_string());
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Shows an expression the way Nix's `Expr::show` does, e.g. `(1 == 2)`.
pub fn show_ast(ast: &Ast) -> String {
    let mut s = String::new();
    show(ast, &mut s);
    s
}

fn show(ast: &Ast, out: &mut String) {
    match ast {
        Ast::Int(n) => write!(out, "{n}").unwrap_or(()),
        Ast::Float(f) => out.push_str(&format_float(*f)),
        Ast::Str(parts) => match parts.as_slice() {
            [] => out.push_str("\"\""),
            [StrPart::Literal(s)] => out.push_str(&escape_string(s)),
            _ => {
                out.push('(');
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" + ");
                    }
                    match p {
                        StrPart::Literal(s) => out.push_str(&escape_string(s)),
                        StrPart::Interpolation(e, _) => show(e, out),
                    }
                }
                out.push(')');
            }
        },
        Ast::Path(p) => out.push_str(&p.text),
        Ast::InterpolatedPath { lit, parts, .. } => {
            out.push('(');
            out.push_str(&lit.text);
            for p in parts {
                out.push_str(" + ");
                match p {
                    StrPart::Literal(s) => out.push_str(&escape_string(s)),
                    StrPart::Interpolation(e, _) => show(e, out),
                }
            }
            out.push(')');
        }
        Ast::SearchPath(p, _) => write!(out, "<{p}>").unwrap_or(()),
        Ast::Uri(u) => out.push_str(&escape_string(u)),
        Ast::Var(name, _) => out.push_str(name),
        Ast::Select { expr, path, default, .. } => {
            out.push('(');
            show(expr, out);
            out.push_str(").");
            show_attr_path(path, out);
            if let Some(d) = default {
                out.push_str(" or (");
                show(d, out);
                out.push(')');
            }
        }
        Ast::HasAttr { expr, path } => {
            out.push_str("((");
            show(expr, out);
            out.push_str(") ? ");
            show_attr_path(path, out);
            out.push(')');
        }
        Ast::List(items) => {
            out.push_str("[ ");
            for i in items {
                show(i, out);
                out.push(' ');
            }
            out.push(']');
        }
        Ast::Attrs { rec, bindings, .. } => {
            if *rec {
                out.push_str("rec ");
            }
            out.push_str("{ ");
            show_bindings(bindings, out);
            out.push('}');
        }
        Ast::Let { bindings, body } => {
            out.push_str("(let ");
            show_bindings(bindings, out);
            out.push_str("in ");
            show(body, out);
            out.push(')');
        }
        Ast::LegacyLet { bindings, .. } => {
            out.push_str("let { ");
            show_bindings(bindings, out);
            out.push('}');
        }
        Ast::With { env, body, .. } => {
            out.push_str("(with ");
            show(env, out);
            out.push_str("; ");
            show(body, out);
            out.push(')');
        }
        Ast::If { cond, then, els, .. } => {
            out.push_str("(if ");
            show(cond, out);
            out.push_str(" then ");
            show(then, out);
            out.push_str(" else ");
            show(els, out);
            out.push(')');
        }
        Ast::Assert { cond, body, .. } => {
            out.push_str("assert ");
            show(cond, out);
            out.push_str("; ");
            show(body, out);
        }
        Ast::Lambda(l) => {
            out.push('(');
            match &l.param {
                Param::Ident(x) => out.push_str(x),
                Param::Pattern { formals, ellipsis, bind } => {
                    out.push_str("{ ");
                    let mut first = true;
                    for f in formals {
                        if !first {
                            out.push_str(", ");
                        }
                        first = false;
                        out.push_str(&f.name);
                        if let Some(d) = &f.default {
                            out.push_str(" ? ");
                            show(d, out);
                        }
                    }
                    if *ellipsis {
                        out.push_str(if first { "..." } else { ", ..." });
                    }
                    out.push_str(" }");
                    if let Some(b) = bind {
                        write!(out, " @ {b}").unwrap_or(());
                    }
                }
            }
            out.push_str(": ");
            show(&l.body, out);
            out.push(')');
        }
        Ast::Apply { .. } => {
            let mut args = Vec::new();
            let mut f = ast;
            while let Ast::Apply { func, arg, .. } = f {
                args.push(arg);
                f = func;
            }
            out.push('(');
            show(f, out);
            for a in args.iter().rev() {
                out.push(' ');
                show(a, out);
            }
            out.push(')');
        }
        Ast::Not(e, _) => {
            out.push_str("(! ");
            show(e, out);
            out.push(')');
        }
        Ast::Negate(e, _) => {
            out.push_str("(__sub 0 ");
            show(e, out);
            out.push(')');
        }
        Ast::BinOp { op, lhs, rhs, .. } => {
            let call = |name: &str, a: &Ast, b: &Ast, out: &mut String| {
                write!(out, "({name} ").unwrap_or(());
                show(a, out);
                out.push(' ');
                show(b, out);
                out.push(')');
            };
            match op {
                BinOp::Sub => call("__sub", lhs, rhs, out),
                BinOp::Mul => call("__mul", lhs, rhs, out),
                BinOp::Div => call("__div", lhs, rhs, out),
                BinOp::Lt => call("__lessThan", lhs, rhs, out),
                BinOp::Gt => call("__lessThan", rhs, lhs, out),
                BinOp::Leq | BinOp::Geq => {
                    out.push_str("(! ");
                    if *op == BinOp::Leq {
                        call("__lessThan", rhs, lhs, out)
                    } else {
                        call("__lessThan", lhs, rhs, out)
                    }
                    out.push(')');
                }
                _ => {
                    out.push('(');
                    show(lhs, out);
                    write!(out, " {} ", op.symbol()).unwrap_or(());
                    show(rhs, out);
                    out.push(')');
                }
            }
        }
    }
}

fn show_attr_path(path: &[AttrKey], out: &mut String) {
    for (i, k) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match k {
            AttrKey::Static(s, _) => out.push_str(s),
            AttrKey::Dynamic(e, _) => {
                out.push_str("\"${");
                show(e, out);
                out.push_str("}\"");
            }
        }
    }
}

fn show_bindings(bindings: &[Binding], out: &mut String) {
    for b in bindings {
        match b {
            Binding::Assign { path, value, .. } => {
                show_attr_path(path, out);
                out.push_str(" = ");
                show(value, out);
                out.push_str("; ");
            }
            Binding::Inherit { from, names, .. } => {
                out.push_str("inherit ");
                if let Some(f) = from {
                    out.push('(');
                    show(f, out);
                    out.push_str(") ");
                }
                for (n, _) in names {
                    out.push_str(n);
                    out.push(' ');
                }
                out.push_str("; ");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_cpp_streams() {
        assert_eq!(format_float(1.0 / 3.0), "0.333333");
        assert_eq!(format_float(1e20), "1e+20");
        assert_eq!(format_float(1234567.0), "1.23457e+06");
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.00001), "1e-05");
        assert_eq!(format_float(9999995.0), "1e+07");
        assert_eq!(format_float(0.0001), "0.0001");
        assert_eq!(format_float(-2.5), "-2.5");
        assert_eq!(format_float(123456.0), "123456");
    }

    #[test]
    fn strings_escape_like_nix() {
        assert_eq!(escape_string("a\"b\\c\n\t${x}$y"), "\"a\\\"b\\\\c\\n\\t\\${x}$y\"");
        assert_eq!(attr_name("a b"), "\"a b\"");
        assert_eq!(attr_name("if"), "\"if\"");
        assert_eq!(attr_name("x-y'"), "x-y'");
    }
}
