//! The operators, with Nix's rules: integer wrap-around, int/float mixing,
//! `+` on strings and paths, coercion to strings, equality (with the
//! pointer shortcut inside lists and sets) and ordering.

use std::path::Path;
use std::rc::Rc;

use super::Evaluator;
use crate::compile::Expr;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::source_map::Span;
use crate::string::{ContextElem, NixStr};
use crate::syntax::ast::BinOp;
use crate::value::{Attrs, Env, Thunk, Value};

impl Evaluator {
    pub(super) fn binop(
        &mut self,
        op: BinOp,
        lhs: &'static Expr,
        rhs: &'static Expr,
        env: &Rc<Env>,
        span: Span,
    ) -> EvalResult<Value> {
        match op {
            BinOp::And => Ok(Value::Bool(self.eval_bool(lhs, env, span)? && self.eval_bool(rhs, env, span)?)),
            BinOp::Or => Ok(Value::Bool(self.eval_bool(lhs, env, span)? || self.eval_bool(rhs, env, span)?)),
            BinOp::Impl => Ok(Value::Bool(!self.eval_bool(lhs, env, span)? || self.eval_bool(rhs, env, span)?)),
            _ => {
                let a = self.eval_operand(lhs, env)?;
                let b = self.eval_operand(rhs, env)?;
                if let (Value::Int(x), Value::Int(y)) = (&a, &b) {
                    // The common case, without the general machinery.
                    if let Some(v) = total_int_op(op, *x, *y) {
                        return Ok(v);
                    }
                }
                self.apply_binop(op, a, b, span)
            }
        }
    }

    fn apply_binop(&mut self, op: BinOp, a: Value, b: Value, span: Span) -> EvalResult<Value> {
        match op {
            BinOp::Eq => Ok(Value::Bool(self.values_equal(&a, &b, span)?)),
            BinOp::Neq => Ok(Value::Bool(!self.values_equal(&a, &b, span)?)),
            BinOp::Lt => Ok(Value::Bool(self.less_than(&a, &b, span)?)),
            BinOp::Gt => Ok(Value::Bool(self.less_than(&b, &a, span)?)),
            BinOp::Leq => Ok(Value::Bool(!self.less_than(&b, &a, span)?)),
            BinOp::Geq => Ok(Value::Bool(!self.less_than(&a, &b, span)?)),
            BinOp::Update => {
                let (x, y) = (self.expect_attrs(a, span)?, self.expect_attrs(b, span)?);
                Ok(if y.is_empty() {
                    Value::Attrs(x)
                } else if x.is_empty() {
                    Value::Attrs(y)
                } else {
                    Value::attrs(x.update(&y))
                })
            }
            BinOp::Concat => {
                let (x, y) = (self.expect_list(a, span)?, self.expect_list(b, span)?);
                Ok(if y.is_empty() {
                    Value::List(x)
                } else if x.is_empty() {
                    Value::List(y)
                } else {
                    Value::list(x.iter().chain(y.iter()).cloned().collect())
                })
            }
            BinOp::Add => self.concat_strings(&[a, b], span),
            BinOp::Sub | BinOp::Mul | BinOp::Div => self.arith(op, a, b, span),
            BinOp::And | BinOp::Or | BinOp::Impl => unreachable!("short-circuit operators are handled in binop"),
        }
    }

    /// `-`, `*` and `/` (and `builtins.sub`/`mul`/`div`): integers wrap as in
    /// Nix 2.8; mixing with a float gives a float.
    pub(crate) fn arith(&mut self, op: BinOp, a: Value, b: Value, span: Span) -> EvalResult<Value> {
        match (&a, &b) {
            (Value::Int(x), Value::Int(y)) => Ok(Value::Int(match op {
                BinOp::Sub => x.wrapping_sub(*y),
                BinOp::Mul => x.wrapping_mul(*y),
                _ => {
                    if *y == 0 {
                        return Err(EvalError::at(ErrorKind::DivisionByZero, "division by zero", span));
                    }
                    x.checked_div(*y)
                        .ok_or_else(|| EvalError::at(ErrorKind::Eval, "overflow in integer division", span))?
                }
            })),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                let (x, y) = (as_float(&a), as_float(&b));
                Ok(Value::Float(match op {
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    _ => {
                        if y == 0.0 {
                            return Err(EvalError::at(ErrorKind::DivisionByZero, "division by zero", span));
                        }
                        x / y
                    }
                }))
            }
            (Value::Int(_) | Value::Float(_), other) | (other, _) => {
                let expected = "an integer";
                Err(EvalError::type_error(format!("value is {} while {expected} was expected", other.describe()), span))
            }
        }
    }

    /// `+`, Nix's `ExprConcatStrings`: numbers, strings or paths, as the
    /// first operand decides.
    pub(super) fn concat_strings(&mut self, values: &[Value], span: Span) -> EvalResult<Value> {
        let first = &values[0];
        match first {
            Value::Int(_) | Value::Float(_) => {
                let mut int: i64 = 0;
                let mut float: Option<f64> = None;
                let first_desc = if matches!(first, Value::Int(_)) { "an integer" } else { "a float" };
                for v in values {
                    match (v, float.as_mut()) {
                        (Value::Int(n), None) => int = int.wrapping_add(*n),
                        (Value::Float(f), None) => float = Some(int as f64 + f),
                        (Value::Int(n), Some(acc)) => *acc += *n as f64,
                        (Value::Float(f), Some(acc)) => *acc += f,
                        (other, _) => {
                            let current = if float.is_some() && matches!(first, Value::Float(_)) {
                                "a float"
                            } else {
                                first_desc
                            };
                            return Err(EvalError::type_error(
                                format!("cannot add {} to {current}", other.describe()),
                                span,
                            ));
                        }
                    }
                }
                Ok(float.map_or(Value::Int(int), Value::Float))
            }
            Value::Path(_) => {
                let mut s = String::new();
                for v in values {
                    let part = self.coerce_to_string(v, span, false, false)?;
                    if !part.context().is_empty() {
                        return Err(EvalError::at(
                            ErrorKind::Eval,
                            "a string that refers to a store path cannot be appended to a path",
                            span,
                        ));
                    }
                    s.push_str(&part);
                }
                Ok(Value::Path(crate::compile::canonicalize_lexically(Path::new(&s)).into()))
            }
            _ => {
                let mut s = String::new();
                let mut context = Vec::new();
                for v in values {
                    let part = self.coerce_to_string(v, span, false, true)?;
                    s.push_str(&part);
                    context.extend_from_slice(part.context());
                }
                Ok(Value::String(NixStr::with_context(s, context)))
            }
        }
    }

    /// Nix's `coerceToString`. `more` is `toString`'s wider set of
    /// coercions; `copy_to_store` is what interpolating a path would do.
    pub fn coerce_to_string(&mut self, v: &Value, span: Span, more: bool, copy_to_store: bool) -> EvalResult<NixStr> {
        self.check_stack(Some(span))?;
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Path(p) if copy_to_store => {
                let stored = self.copy_to_store(p, span)?.to_string();
                Ok(NixStr::with_context(stored.clone(), vec![ContextElem::Path(stored)]))
            }
            Value::Path(p) => Ok(NixStr::from(p.as_str())),
            Value::Attrs(attrs) => {
                if let Some(f) = attrs.get_str("__toString") {
                    let f = self.force(&f.clone())?;
                    let result = self.call(f, Thunk::Ready(v.clone()), span)?;
                    return self.coerce_to_string(&result, span, more, copy_to_store);
                }
                if let Some(out) = attrs.get_str("outPath") {
                    let out = self.force(&out.clone())?;
                    return self.coerce_to_string(&out, span, more, copy_to_store);
                }
                Err(EvalError::type_error("cannot coerce a set to a string", span))
            }
            Value::Null if more => Ok(NixStr::from("")),
            Value::Bool(b) if more => Ok(NixStr::from(if *b { "1" } else { "" })),
            Value::Int(n) if more => Ok(NixStr::from(itoa::Buffer::new().format(*n))),
            Value::Float(f) if more => Ok(NixStr::from(format!("{f:.6}"))),
            Value::List(items) if more => {
                let mut out = String::new();
                let mut context = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let item = self.force(item)?;
                    let part = self.coerce_to_string(&item, span, more, copy_to_store)?;
                    out.push_str(&part);
                    context.extend_from_slice(part.context());
                    let empty_list = matches!(&item, Value::List(l) if l.is_empty());
                    if i + 1 < items.len() && !empty_list {
                        out.push(' ');
                    }
                }
                Ok(NixStr::with_context(out, context))
            }
            other => Err(EvalError::type_error(format!("cannot coerce {} to a string", other.describe()), span)),
        }
    }

    /// Nix's equality: ints and floats compare by value, sets by their
    /// attributes (derivations by `outPath`), functions never.
    pub fn values_equal(&mut self, a: &Value, b: &Value, span: Span) -> EvalResult<bool> {
        self.check_stack(Some(span))?;
        Ok(match (a, b) {
            (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => *x as f64 == *y,
            (Value::Int(x), Value::Int(y)) => x == y,
            (Value::Float(x), Value::Float(y)) => x == y,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Null, Value::Null) => true,
            (Value::String(x), Value::String(y)) => x == y,
            (Value::Path(x), Value::Path(y)) => x == y,
            (Value::List(x), Value::List(y)) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (p, q) in x.iter().zip(y.iter()) {
                    if !self.thunks_equal(p, q, span)? {
                        return Ok(false);
                    }
                }
                true
            }
            (Value::Attrs(x), Value::Attrs(y)) => {
                if self.is_derivation(x)? && self.is_derivation(y)? {
                    if let (Some(p), Some(q)) = (x.get_str("outPath"), y.get_str("outPath")) {
                        return self.thunks_equal(&p.clone(), &q.clone(), span);
                    }
                }
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (p, q) in x.entries().iter().zip(y.entries().iter()) {
                    if p.name != q.name || !self.thunks_equal(&p.value, &q.value, span)? {
                        return Ok(false);
                    }
                }
                true
            }
            _ => false,
        })
    }

    fn thunks_equal(&mut self, a: &Thunk, b: &Thunk, span: Span) -> EvalResult<bool> {
        if a.same_cell(b) {
            return Ok(true);
        }
        let (x, y) = (self.force(a)?, self.force(b)?);
        self.values_equal(&x, &y, span)
    }

    pub(crate) fn is_derivation(&mut self, attrs: &Attrs) -> EvalResult<bool> {
        match attrs.get_str("type") {
            Some(t) => Ok(matches!(self.force(&t.clone())?, Value::String(s) if &*s == "derivation")),
            None => Ok(false),
        }
    }

    /// `<` as Nix defines it: numbers, strings, paths, and lists lexicographically.
    pub fn less_than(&mut self, a: &Value, b: &Value, span: Span) -> EvalResult<bool> {
        self.check_stack(Some(span))?;
        match (a, b) {
            (Value::Int(x), Value::Int(y)) => Ok(x < y),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => Ok(as_float(a) < as_float(b)),
            (Value::String(x), Value::String(y)) => Ok(x.as_bytes() < y.as_bytes()),
            (Value::Path(x), Value::Path(y)) => Ok(x.as_bytes() < y.as_bytes()),
            (Value::List(x), Value::List(y)) => {
                for (p, q) in x.iter().zip(y.iter()) {
                    let (p, q) = (self.force(p)?, self.force(q)?);
                    if !self.values_equal(&p, &q, span)? {
                        return self.less_than(&p, &q, span);
                    }
                }
                Ok(x.len() < y.len())
            }
            _ => Err(EvalError::type_error(format!("cannot compare {} with {}", a.describe(), b.describe()), span)),
        }
    }
}

/// An already evaluated integer operand: a literal or a forced variable.
fn known_int(expr: &Expr, env: &Rc<Env>) -> Option<i64> {
    match expr {
        Expr::Const(Value::Int(n)) => Some(*n),
        Expr::Var { level, index } => match env.ancestor(*level).try_slot(*index)?.peek() {
            Some(Value::Int(n)) => Some(n),
            _ => None,
        },
        _ => None,
    }
}

/// The result of an integer operation that cannot fail, if both operands
/// are already known; division is left alone since it can.
pub(super) fn speculate_int_op(op: BinOp, lhs: &Expr, rhs: &Expr, env: &Rc<Env>) -> Option<Value> {
    total_int_op(op, known_int(lhs, env)?, known_int(rhs, env)?)
}

/// `x op y` on integers for the operators that cannot fail (division can).
#[inline]
fn total_int_op(op: BinOp, x: i64, y: i64) -> Option<Value> {
    Some(match op {
        BinOp::Add => Value::Int(x.wrapping_add(y)),
        BinOp::Sub => Value::Int(x.wrapping_sub(y)),
        BinOp::Mul => Value::Int(x.wrapping_mul(y)),
        BinOp::Lt => Value::Bool(x < y),
        BinOp::Leq => Value::Bool(x <= y),
        BinOp::Gt => Value::Bool(x > y),
        BinOp::Geq => Value::Bool(x >= y),
        BinOp::Eq => Value::Bool(x == y),
        BinOp::Neq => Value::Bool(x != y),
        _ => return None,
    })
}

pub(crate) fn as_float(v: &Value) -> f64 {
    match v {
        Value::Int(n) => *n as f64,
        Value::Float(f) => *f,
        _ => f64::NAN,
    }
}
