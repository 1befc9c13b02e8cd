//! Function application: lambdas (plain, multi-argument and with formals),
//! built-ins, partial applications and `__functor` sets; and, for callers
//! that give a function a set of named arguments, which names it takes and
//! how it can be given its own result ([`Fixpoint`]).

use std::rc::Rc;

use super::Evaluator;
use crate::compile::{Expr, LambdaInfo, ParamInfo};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::source_map::Span;
use crate::value::{Closure, Env, Lazy, LazyCell, PrimOpApp, Slots, Thunk, Value};

impl Evaluator {
    /// `f a b …`. Arguments go two at a time, so a multi-argument lambda
    /// (`x: y: …`) gets both in one frame.
    pub(super) fn eval_apply(
        &mut self,
        func: &'static Expr,
        args: &'static [Expr],
        env: &Rc<Env>,
        span: Span,
    ) -> EvalResult<Value> {
        let mut f = self.eval_operand(func, env)?;
        let mut rest = args;
        while let Some((first, tail)) = rest.split_first() {
            let a = self.thunk(first, env);
            match tail.split_first() {
                Some((second, tail)) => {
                    let b = self.thunk(second, env);
                    f = self.call2(f, a, b, span)?;
                    rest = tail;
                }
                None => {
                    f = self.call(f, a, span)?;
                    rest = tail;
                }
            }
        }
        Ok(f)
    }

    /// `f a b`: a two-argument lambda gets both at once, in one frame, and
    /// a built-in that these arguments complete is called directly (no
    /// partial application is made in between: `sort lessThan` calls its
    /// comparator millions of times).
    pub fn call2(&mut self, f: Value, a: Thunk, b: Thunk, span: Span) -> EvalResult<Value> {
        match &f {
            Value::Lambda(c) if matches!(c.lambda.param, ParamInfo::Idents(2)) && c.applied.is_empty() => {
                self.check_stack(Some(span))?;
                let frame = Env::new(Some(c.env.clone()), Slots::Two(a, b));
                return self.enter(c.lambda, &frame, span);
            }
            Value::PrimOp(op) if op.arity == 2 => {
                self.check_stack(Some(span))?;
                return (op.func)(self, &[a, b], span);
            }
            Value::PrimOpApp(app) if app.args.len() == 1 && app.op.arity == 3 => {
                self.check_stack(Some(span))?;
                return (app.op.func)(self, &[app.args[0].clone(), a, b], span);
            }
            _ => {}
        }
        let g = self.call(f, a, span)?;
        self.call(g, b, span)
    }

    /// Applies a function value to one argument.
    pub fn call(&mut self, f: Value, arg: Thunk, span: Span) -> EvalResult<Value> {
        self.check_stack(Some(span))?;
        match f {
            Value::Lambda(closure) => self.apply_closure(&closure, arg, span),
            Value::PrimOp(op) if op.arity == 1 => (op.func)(self, &[arg], span),
            Value::PrimOp(op) => Ok(Value::PrimOpApp(Rc::new(PrimOpApp { op, args: vec![arg] }))),
            // The last argument: the arguments go on the stack, not in a vector.
            Value::PrimOpApp(app) if app.args.len() + 1 == app.op.arity => match &app.args[..] {
                [x] => (app.op.func)(self, &[x.clone(), arg], span),
                [x, y] => (app.op.func)(self, &[x.clone(), y.clone(), arg], span),
                _ => {
                    let mut args = app.args.clone();
                    args.push(arg);
                    (app.op.func)(self, &args, span)
                }
            },
            Value::PrimOpApp(app) => {
                let mut args = Vec::with_capacity(app.op.arity);
                args.extend_from_slice(&app.args);
                args.push(arg);
                Ok(Value::PrimOpApp(Rc::new(PrimOpApp { op: app.op, args })))
            }
            Value::Attrs(attrs) => match attrs.get_str("__functor") {
                Some(functor) => {
                    let functor = self.force(&functor.clone())?;
                    let inner = self.call(functor, Thunk::Ready(Value::Attrs(attrs.clone())), span)?;
                    self.call(inner, arg, span)
                }
                None => Err(not_a_function(&Value::Attrs(attrs), span)),
            },
            other => Err(not_a_function(&other, span)),
        }
    }

    fn describe_lambda(&self, info: &LambdaInfo) -> String {
        match info.name {
            Some(name) => format!("function '{name}'"),
            None => format!("anonymous function at {}", self.sources.locate(info.span)),
        }
    }

    /// Applies a closure to one more argument: either its last, which runs
    /// the body, or an earlier one of a multi-argument lambda.
    pub(super) fn apply_closure(&mut self, closure: &Closure, arg: Thunk, span: Span) -> EvalResult<Value> {
        let info = closure.lambda;
        let parent = closure.env.clone();
        let frame = match (&info.param, closure.applied.len()) {
            (ParamInfo::Idents(1), _) => Env::new(Some(parent), Slots::One(arg)),
            (ParamInfo::Idents(n), applied) if applied + 1 < *n as usize => {
                let mut args = Vec::with_capacity(*n as usize);
                args.extend_from_slice(&closure.applied);
                args.push(arg);
                return Ok(Value::Lambda(Rc::new(Closure { lambda: info, env: parent, applied: args })));
            }
            (ParamInfo::Idents(_), 1) => Env::new(Some(parent), Slots::Two(closure.applied[0].clone(), arg)),
            (ParamInfo::Idents(_), _) => {
                let mut args = closure.applied.clone();
                args.push(arg);
                Env::new(Some(parent), Slots::Many(args.into_boxed_slice()))
            }
            (ParamInfo::Pattern { .. }, _) => self.bind_pattern(info, parent, arg, span)?,
        };
        self.enter(info, &frame, span)
    }

    /// Runs a lambda's body in its argument frame.
    fn enter(&mut self, info: &'static LambdaInfo, frame: &Rc<Env>, span: Span) -> EvalResult<Value> {
        self.eval(&info.body, frame).map_err(|mut e| {
            if e.span.is_some() {
                e.add_trace(span, || format!("while calling {}", self.describe_lambda(info)));
            }
            e
        })
    }

    /// Makes the frame of a `{ a, b ? …, ... }@args` lambda from its argument.
    fn bind_pattern(
        &mut self,
        info: &'static LambdaInfo,
        parent: Rc<Env>,
        arg: Thunk,
        span: Span,
    ) -> EvalResult<Rc<Env>> {
        let ParamInfo::Pattern { formals, ellipsis, bind, .. } = &info.param else {
            unreachable!("apply_closure binds only patterns here");
        };
        let attrs = self.force(&arg)?;
        let Value::Attrs(attrs) = attrs else {
            return Err(EvalError::type_error(format!("value is {} while a set was expected", attrs.describe()), span));
        };
        let frame = Env::recursive(parent);
        let mut slots = Vec::with_capacity(formals.len() + usize::from(*bind));
        let mut used = 0;
        for (name, default) in formals {
            match (attrs.get(*name), default) {
                (Some(t), _) => {
                    used += 1;
                    slots.push(t.clone());
                }
                (None, Some(d)) => {
                    let t = self.frame_thunk(d, &frame, &slots);
                    slots.push(t)
                }
                (None, None) => {
                    return Err(EvalError::at(
                        ErrorKind::Type,
                        format!("{} called without required argument '{name}'", self.describe_lambda(info)),
                        span,
                    ))
                }
            }
        }
        if !ellipsis && used < attrs.len() {
            let unexpected = attrs
                .sorted_by_name()
                .into_iter()
                .map(|(n, _)| n)
                .find(|n| !formals.iter().any(|(f, _)| f.as_str() == *n))
                .unwrap_or_default();
            return Err(EvalError::at(
                ErrorKind::Type,
                format!("{} called with unexpected argument '{unexpected}'", self.describe_lambda(info)),
                span,
            ));
        }
        if *bind {
            slots.push(arg);
        }
        frame.fill(slots);
        Ok(frame)
    }
}

fn not_a_function(v: &Value, span: Span) -> Box<EvalError> {
    EvalError::type_error(format!("attempt to call something which is not a function but {}", v.describe()), span)
}

impl Value {
    /// Which of the `offered` argument names a function given a set takes:
    /// the names its pattern lists (every offered one with `...`), or all
    /// of them for a function that takes the set whole. `Err(name)`: the
    /// pattern requires `name`, and it is not offered.
    pub fn accepted_arguments<'a>(&self, offered: &[&'a str]) -> Result<Vec<&'a str>, String> {
        let Value::Lambda(closure) = self else { return Ok(offered.to_vec()) };
        let ParamInfo::Pattern { formals, ellipsis, .. } = &closure.lambda.param else {
            return Ok(offered.to_vec());
        };
        let required = formals.iter().find(|(name, default)| default.is_none() && !offered.contains(&name.as_str()));
        if let Some((name, _)) = required {
            return Err(name.to_string());
        }
        let takes = |arg: &&str| *ellipsis || formals.iter().any(|(name, _)| name.as_str() == *arg);
        Ok(offered.iter().copied().filter(takes).collect())
    }
}

/// A function applied to an argument that may hold the application's own
/// result, lazily: a knot, as a flake's outputs get themselves as `self`.
/// Forcing [`Fixpoint::result`] before [`Fixpoint::apply`] has returned
/// its value (the function being strict in it) is infinite recursion.
pub struct Fixpoint(Rc<LazyCell>);

impl Default for Fixpoint {
    fn default() -> Self {
        Fixpoint::new()
    }
}

impl Fixpoint {
    /// A knot not yet tied.
    pub fn new() -> Fixpoint {
        Fixpoint(Rc::new(LazyCell::new(Lazy::Blackhole)))
    }

    /// The result to be, to put in the argument.
    pub fn result(&self) -> Thunk {
        Thunk::Lazy(self.0.clone())
    }

    /// The result to be updated with the set `extra` (`result // extra`),
    /// lazily: to put in the argument instead of [`Fixpoint::result`].
    pub fn result_updated(&self, ev: &mut Evaluator, extra: Value) -> EvalResult<Thunk> {
        // Named for what it makes, should an error point into it.
        let update = ev.eval_source("«self»", "a: b: a // b")?;
        Ok(Thunk::apply2(update.into(), self.result(), extra.into()))
    }

    /// Ties the knot: applies `function` to `argument` and evaluates it.
    pub fn apply(self, ev: &mut Evaluator, function: Value, argument: Value) -> EvalResult<Value> {
        self.0.set(Lazy::Apply(function.into(), argument.into()));
        ev.force(&Thunk::Lazy(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_takes_the_offered_names_its_pattern_lists() {
        let mut ev = Evaluator::new();
        let offered = ["pkgs", "system", "self"];
        let mut accepted = |text: &str| ev.eval_text(text).unwrap().accepted_arguments(&offered);
        assert_eq!(accepted("{ pkgs, self }: 1"), Ok(vec!["pkgs", "self"]));
        assert_eq!(accepted("{ pkgs, ... }: 1"), Ok(offered.to_vec()));
        assert_eq!(accepted("args: 1"), Ok(offered.to_vec()));
        assert_eq!(accepted("{ pkgs, lib ? 1 }: 1"), Ok(vec!["pkgs"]));
        assert_eq!(accepted("{ pkgs, nixpkgs }: 1"), Err("nixpkgs".to_string()));
    }

    #[test]
    fn a_fixpoint_gives_a_function_its_own_result() {
        let mut ev = Evaluator::new();
        let function = ev.eval_text("{ self }: { a = 1; b = self.a + self.rev; }").unwrap();
        let knot = Fixpoint::new();
        let this = knot.result_updated(&mut ev, Value::attr_set([("rev", Value::Int(2).into())])).unwrap();
        let result = knot.apply(&mut ev, function, Value::attr_set([("self", this)])).unwrap();
        let Value::Attrs(attrs) = result else { panic!("not a set") };
        assert!(matches!(ev.force(attrs.get_str("b").unwrap()), Ok(Value::Int(3))));

        let strict = ev.eval_text("{ self }: self.a").unwrap();
        let knot = Fixpoint::new();
        let this = knot.result();
        let Err(err) = knot.apply(&mut ev, strict, Value::attr_set([("self", this)])) else { panic!("it ended") };
        assert!(err.message.contains("infinite recursion"), "{}", err.message);
    }
}
