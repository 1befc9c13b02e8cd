//! The evaluator: forces thunks, applies functions and implements the
//! operators with Nix's exact rules (int/float mixing, string and path
//! concatenation, equality with the pointer shortcut, list comparison).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::compile::{Compiler, Expr, Key, LambdaInfo, ParamInfo, SetExpr};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::source::{SourceMap, Span};
use crate::string::NixStr;
use crate::syntax::ast::BinOp;
use crate::value::{Attrs, Closure, Env, Lazy, PrimOpApp, Slots, Symbol, Thunk, Value};

/// How much stack an evaluator may use when the caller does not say.
const DEFAULT_STACK_BUDGET: usize = 1 << 20;
/// Kept free below the budget so error handling itself has room.
const STACK_MARGIN: usize = 128 << 10;

/// One evaluation session: sources, the import cache and the global scope.
pub struct Evaluator {
    pub sources: SourceMap,
    pub(crate) globals: HashMap<Symbol, Value>,
    imports: HashMap<PathBuf, Value>,
    pub(crate) regex_cache: HashMap<String, Rc<regex::Regex>>,
    /// Reused by string interpolation, so building a string allocates once.
    interpolation_buffer: String,
    stack_limit: usize,
    /// Pure evaluation: no environment variables, no clock.
    pub pure: bool,
    /// Compute cheap, total operations (`n - 1` on evaluated integers) at
    /// once instead of allocating a thunk. The value is the same either way;
    /// only whether it is still a thunk differs, which lazy printing shows
    /// as `<CODE>`, so `mini eval` without `--strict` turns this off.
    pub speculate: bool,
}

fn stack_pointer() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

impl Default for Evaluator {
    fn default() -> Self {
        Evaluator::new()
    }
}

impl Evaluator {
    /// An evaluator for a thread with an ordinary (small) stack.
    pub fn new() -> Evaluator {
        Evaluator::with_stack_budget(DEFAULT_STACK_BUDGET)
    }

    /// An evaluator that may use `bytes` of the current thread's stack below
    /// this call; deeper evaluation fails with a stack-overflow error.
    pub fn with_stack_budget(bytes: usize) -> Evaluator {
        let mut ev = Evaluator {
            sources: SourceMap::default(),
            globals: HashMap::new(),
            imports: HashMap::new(),
            regex_cache: HashMap::new(),
            interpolation_buffer: String::new(),
            stack_limit: stack_pointer().saturating_sub(bytes.saturating_sub(STACK_MARGIN)),
            pure: false,
            speculate: true,
        };
        ev.globals = crate::builtins::globals();
        ev
    }

    #[inline]
    pub(crate) fn check_stack(&self, span: Option<Span>) -> EvalResult<()> {
        if stack_pointer() < self.stack_limit {
            return Err(EvalError::new(ErrorKind::StackOverflow, "stack overflow (possible infinite recursion)", span));
        }
        Ok(())
    }

    /// Parses and compiles source text; the compiled tree lives for the process.
    pub fn compile_source(&mut self, name: String, path: Option<PathBuf>, text: &str) -> EvalResult<&'static Expr> {
        let base_dir = match path.as_deref().and_then(Path::parent) {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir()
                .map_err(|e| EvalError::new(ErrorKind::Io, format!("cannot read the current directory: {e}"), None))?,
        };
        let file = self.sources.add(name, path, Rc::from(text));
        let ast = crate::syntax::parse(text, file).map_err(|e| EvalError::syntax(e, file))?;
        let expr = Compiler::new(&self.sources, &self.globals, base_dir).compile(&ast)?;
        Ok(Box::leak(Box::new(expr)))
    }

    /// Evaluates `--expr` text to weak head normal form.
    pub fn eval_text(&mut self, text: &str) -> EvalResult<Value> {
        let expr = self.compile_source("«string»".into(), None, text)?;
        self.eval(expr, &Env::new(None, Slots::Many(Box::new([]))))
    }

    /// Evaluates a file (or `dir/default.nixlike`) to weak head normal form.
    pub fn eval_file(&mut self, path: &Path) -> EvalResult<Value> {
        let absolute = std::path::absolute(path)
            .map_err(|e| EvalError::new(ErrorKind::Io, format!("cannot resolve '{}': {e}", path.display()), None))?;
        self.import(&absolute, None)
    }

    /// `import`: each file is parsed and evaluated once per session.
    pub fn import(&mut self, path: &Path, span: Option<Span>) -> EvalResult<Value> {
        let file = resolve_import(path);
        if let Some(v) = self.imports.get(&file) {
            return Ok(v.clone());
        }
        let text = std::fs::read_to_string(&file).map_err(|e| {
            EvalError::new(ErrorKind::Io, format!("cannot read '{}': {}", file.display(), io_message(&e)), span)
        })?;
        let expr = self.compile_source(file.display().to_string(), Some(file.clone()), &text)?;
        let value = self.eval(expr, &Env::new(None, Slots::Many(Box::new([]))))?;
        self.imports.insert(file, value.clone());
        Ok(value)
    }

    pub(crate) fn thunk(&self, expr: &'static Expr, env: &Rc<Env>) -> Thunk {
        match expr {
            Expr::Const(v) => Thunk::Ready(v.clone()),
            Expr::Var { level, index } => env.ancestor(*level).slot(*index).clone(),
            Expr::BinOp { op, lhs, rhs, .. } if self.speculate => match speculate_int_op(*op, lhs, rhs, env) {
                Some(v) => Thunk::Ready(v),
                None => Thunk::pending(expr, env.clone()),
            },
            _ => Thunk::pending(expr, env.clone()),
        }
    }

    /// Forces a thunk to weak head normal form, at most once.
    #[inline]
    pub fn force(&mut self, thunk: &Thunk) -> EvalResult<Value> {
        match thunk {
            Thunk::Ready(v) => Ok(v.clone()),
            Thunk::Lazy(cell) => {
                if let Lazy::Done(v) = &*cell.borrow() {
                    return Ok(v.clone());
                }
                self.force_lazy(cell)
            }
        }
    }

    #[inline(never)]
    fn force_lazy(&mut self, cell: &std::cell::RefCell<Lazy>) -> EvalResult<Value> {
        let state = std::mem::replace(&mut *cell.borrow_mut(), Lazy::Blackhole);
        let result = match &state {
            Lazy::Pending(expr, env) => self.eval(expr, env),
            Lazy::Apply(f, a) => self.force(f).and_then(|f| self.call(f, a.clone(), Span::default())),
            Lazy::Apply2(app) => {
                let (f, a, b) = &**app;
                self.force(f).and_then(|f| self.call2(f, a.clone(), b.clone(), Span::default()))
            }
            Lazy::Blackhole => {
                Err(EvalError::new(ErrorKind::InfiniteRecursion, "infinite recursion encountered", None))
            }
            Lazy::Done(v) => Ok(v.clone()),
        };
        match result {
            Ok(v) => {
                *cell.borrow_mut() = Lazy::Done(v.clone());
                Ok(v)
            }
            Err(e) => {
                // Like Nix, a failed thunk can be forced again (and fail again).
                if !matches!(state, Lazy::Blackhole) {
                    *cell.borrow_mut() = state;
                }
                Err(e)
            }
        }
    }

    /// Evaluates an expression to weak head normal form. The hot cases are
    /// handled here; the rest live in separate functions so that this one
    /// keeps a small stack frame, which bounds how deep recursion can go.
    pub fn eval(&mut self, expr: &'static Expr, env: &Rc<Env>) -> EvalResult<Value> {
        self.check_stack(None)?;
        match expr {
            Expr::Const(v) => Ok(v.clone()),
            Expr::Var { level, index } => self.force(env.ancestor(*level).slot(*index)),
            Expr::If { cond, then, els, span } => {
                if self.eval_bool(cond, env, *span)? {
                    self.eval(then, env)
                } else {
                    self.eval(els, env)
                }
            }
            Expr::Lambda(info) => {
                Ok(Value::Lambda(Rc::new(Closure { lambda: info, env: env.clone(), applied: Vec::new() })))
            }
            Expr::Apply { func, args, span } => self.eval_apply(func, args, env, *span),
            Expr::BinOp { op, lhs, rhs, span } => self.binop(*op, lhs, rhs, env, *span),
            Expr::Not(e, span) => Ok(Value::Bool(!self.eval_bool(e, env, *span)?)),
            Expr::List(items) => Ok(Value::list(items.iter().map(|i| self.thunk(i, env)).collect())),
            _ => self.eval_other(expr, env),
        }
    }

    /// [`Evaluator::eval`] with constants and variables handled inline: most
    /// operands are one or the other, and a call per operand adds up.
    #[inline(always)]
    fn eval_operand(&mut self, expr: &'static Expr, env: &Rc<Env>) -> EvalResult<Value> {
        match expr {
            Expr::Const(v) => Ok(v.clone()),
            Expr::Var { level, index } => self.force(env.ancestor(*level).slot(*index)),
            _ => self.eval(expr, env),
        }
    }

    #[inline(never)]
    fn eval_other(&mut self, expr: &'static Expr, env: &Rc<Env>) -> EvalResult<Value> {
        match expr {
            Expr::WithVar { name, withs, span } => self.eval_with_var(*name, withs, env, *span),
            Expr::Interpolate { parts, span } => self.interpolate(parts, env, *span),
            Expr::SearchPath { name, span } => Err(EvalError::at(
                ErrorKind::Eval,
                format!(
                    "file '{name}' was not found in the Nix search path (mini has no search path; use a relative path)"
                ),
                *span,
            )),
            Expr::Select { expr, path, default, span } => self.eval_select(expr, path, default.as_deref(), env, *span),
            Expr::HasAttr { expr, path } => {
                let mut value = self.eval_operand(expr, env)?;
                for key in path.iter() {
                    let name = self.key_symbol(key, env)?;
                    let found = match &value {
                        Value::Attrs(attrs) => attrs.get(name).cloned(),
                        _ => None,
                    };
                    match found {
                        Some(t) => value = self.force(&t)?,
                        None => return Ok(Value::Bool(false)),
                    }
                }
                Ok(Value::Bool(true))
            }
            Expr::Attrs(set) => self.build_set(set, env, env),
            Expr::RecAttrs(set) => {
                let frame = self.rec_frame(set, env);
                self.build_set(set, env, &frame)
            }
            Expr::Let { set, body } => {
                let frame = self.rec_frame(set, env);
                self.eval(body, &frame)
            }
            Expr::With { env: scope, body } => {
                let frame = Env::new(Some(env.clone()), Slots::One(self.thunk(scope, env)));
                self.eval(body, &frame)
            }
            Expr::Assert { cond, body, span, text } => {
                if self.eval_bool(cond, env, *span)? {
                    self.eval(body, env)
                } else {
                    Err(EvalError::at(ErrorKind::Assertion, format!("assertion '{text}' failed"), *span))
                }
            }
            Expr::Negate(e, span) => {
                let v = self.eval(e, env)?;
                self.arith(BinOp::Sub, Value::Int(0), v, *span)
            }
            _ => self.eval(expr, env),
        }
    }

    /// `"a${b}c"`. Parts are gathered in a buffer kept between calls, and
    /// `${toString n}` of an integer is written straight into it: both are
    /// the bulk of string building in real code.
    fn interpolate(&mut self, parts: &'static [Expr], env: &Rc<Env>, span: Span) -> EvalResult<Value> {
        let mut buf = std::mem::take(&mut self.interpolation_buffer);
        buf.clear();
        let result = self.interpolate_into(&mut buf, parts, env, span);
        let value = result.map(|()| Value::string(buf.as_str()));
        self.interpolation_buffer = buf;
        value
    }

    fn interpolate_into(
        &mut self,
        buf: &mut String,
        parts: &'static [Expr],
        env: &Rc<Env>,
        span: Span,
    ) -> EvalResult<()> {
        for part in parts {
            let value = match part {
                Expr::Apply { func, args, span } => match (&**func, &**args) {
                    (Expr::Const(Value::PrimOp(op)), [arg]) if op.name == "toString" => {
                        match self.eval_operand(arg, env)? {
                            Value::Int(n) => {
                                buf.push_str(itoa::Buffer::new().format(n));
                                continue;
                            }
                            other => self.call(Value::PrimOp(op), Thunk::Ready(other), *span)?,
                        }
                    }
                    _ => self.eval_operand(part, env)?,
                },
                _ => self.eval_operand(part, env)?,
            };
            match value {
                Value::String(part) => buf.push_str(&part),
                other => buf.push_str(&self.coerce_to_string(&other, span, false, true)?),
            }
        }
        Ok(())
    }

    fn eval_with_var(&mut self, name: Symbol, withs: &[u32], env: &Rc<Env>, span: Span) -> EvalResult<Value> {
        for &level in withs {
            let scope = env.ancestor(level).slot(0).clone();
            let attrs = self.force_attrs(&scope, span)?;
            if let Some(t) = attrs.get(name) {
                let t = t.clone();
                return self.force(&t);
            }
        }
        Err(EvalError::at(ErrorKind::UndefinedVariable, format!("undefined variable '{name}'"), span))
    }

    fn eval_select(
        &mut self,
        expr: &'static Expr,
        path: &'static [Key],
        default: Option<&'static Expr>,
        env: &Rc<Env>,
        span: Span,
    ) -> EvalResult<Value> {
        let mut value = self.eval_operand(expr, env)?;
        for key in path {
            let name = self.key_symbol(key, env)?;
            let next = match &value {
                Value::Attrs(attrs) => match attrs.get(name) {
                    Some(t) => Some(self.force(t).map_err(|mut e| {
                        e.add_trace(span, || format!("while evaluating the attribute '{name}'"));
                        e
                    })?),
                    None => None,
                },
                _ if default.is_some() => None,
                other => {
                    return Err(EvalError::type_error(
                        format!("value is {} while a set was expected", other.describe()),
                        span,
                    ))
                }
            };
            value = match (next, default) {
                (Some(v), _) => v,
                (None, Some(d)) => return self.eval(d, env),
                (None, None) => {
                    return Err(EvalError::at(ErrorKind::MissingAttribute, format!("attribute '{name}' missing"), span))
                }
            };
        }
        Ok(value)
    }

    /// `f a b …`. A curried lambda applied to two arguments at once is
    /// entered directly, without allocating the intermediate closure.
    fn eval_apply(
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

    /// `f a b`: a two-argument lambda gets both at once, in one frame.
    pub fn call2(&mut self, f: Value, a: Thunk, b: Thunk, span: Span) -> EvalResult<Value> {
        if let Value::Lambda(c) = &f {
            if let (ParamInfo::Idents(2), true) = (&c.lambda.param, c.applied.is_empty()) {
                self.check_stack(Some(span))?;
                let frame = Env::new(Some(c.env.clone()), Slots::Two(a, b));
                return self.enter(c.lambda, &frame, span);
            }
        }
        let g = self.call(f, a, span)?;
        self.call(g, b, span)
    }

    fn eval_bool(&mut self, expr: &'static Expr, env: &Rc<Env>, span: Span) -> EvalResult<bool> {
        match self.eval_operand(expr, env)? {
            Value::Bool(b) => Ok(b),
            other => {
                Err(EvalError::type_error(format!("value is {} while a Boolean was expected", other.describe()), span))
            }
        }
    }

    fn key_symbol(&mut self, key: &'static Key, env: &Rc<Env>) -> EvalResult<Symbol> {
        match key {
            Key::Static(s) => Ok(*s),
            Key::Dynamic(e, span) => match self.eval_operand(e, env)? {
                Value::String(s) => Ok(Symbol::intern(&s)),
                other => Err(EvalError::type_error(
                    format!("value is {} while a string was expected", other.describe()),
                    *span,
                )),
            },
        }
    }

    /// Creates the frame of a `rec` set or `let`, whose thunks see the frame itself.
    fn rec_frame(&mut self, set: &'static SetExpr, env: &Rc<Env>) -> Rc<Env> {
        let frame = Env::recursive(env.clone());
        let mut slots = Vec::with_capacity(set.statics.len());
        for (_, def) in &set.statics {
            let t =
                if def.inherited { self.thunk(&def.value, env) } else { self.frame_thunk(&def.value, &frame, &slots) };
            slots.push(t);
        }
        frame.fill(slots);
        frame
    }

    /// Like [`Evaluator::thunk`], for a frame whose slots are still being
    /// made: `built` holds those made so far.
    fn frame_thunk(&self, expr: &'static Expr, frame: &Rc<Env>, built: &[Thunk]) -> Thunk {
        match expr {
            Expr::Var { level: 0, index } => {
                built.get(*index as usize).cloned().unwrap_or_else(|| Thunk::pending(expr, frame.clone()))
            }
            _ => self.thunk(expr, frame),
        }
    }

    /// Builds a set's value; `frame` is where its values are evaluated (the
    /// recursive frame for `rec`, the current one otherwise).
    fn build_set(&mut self, set: &'static SetExpr, env: &Rc<Env>, frame: &Rc<Env>) -> EvalResult<Value> {
        let recursive = !Rc::ptr_eq(env, frame);
        let mut entries: Vec<(Symbol, Thunk)> = set
            .statics
            .iter()
            .enumerate()
            .map(|(i, (name, def))| {
                (*name, if recursive { frame.slot(i as u32).clone() } else { self.thunk(&def.value, frame) })
            })
            .collect();
        if set.dynamics.is_empty() {
            return Ok(Value::attrs(Attrs::from_sorted(entries)));
        }
        for (key, value, span) in &set.dynamics {
            let k = self.eval(key, frame)?;
            if matches!(k, Value::Null) {
                continue;
            }
            let Value::String(name) = k else {
                return Err(EvalError::type_error(
                    format!("value is {} while a string was expected", k.describe()),
                    *span,
                ));
            };
            let name = Symbol::intern(&name);
            if entries.iter().any(|(n, _)| *n == name) {
                let at = self.sources.locate(*span);
                return Err(EvalError::at(
                    ErrorKind::Eval,
                    format!("dynamic attribute '{name}' already defined at {at}"),
                    *span,
                ));
            }
            entries.push((name, self.thunk(value, frame)));
        }
        Ok(Value::attrs(Attrs::from_unsorted(entries)))
    }

    /// Applies a function value to one argument.
    pub fn call(&mut self, f: Value, arg: Thunk, span: Span) -> EvalResult<Value> {
        self.check_stack(Some(span))?;
        match f {
            Value::Lambda(closure) => self.apply_closure(&closure, arg, span),
            Value::PrimOp(op) if op.arity == 1 => (op.func)(self, &[arg], span),
            Value::PrimOp(op) => Ok(Value::PrimOpApp(Rc::new(PrimOpApp { op, args: vec![arg] }))),
            Value::PrimOpApp(app) => {
                let mut args = Vec::with_capacity(app.args.len() + 1);
                args.extend_from_slice(&app.args);
                args.push(arg);
                if args.len() == app.op.arity {
                    (app.op.func)(self, &args, span)
                } else {
                    Ok(Value::PrimOpApp(Rc::new(PrimOpApp { op: app.op, args })))
                }
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
    fn apply_closure(&mut self, closure: &Closure, arg: Thunk, span: Span) -> EvalResult<Value> {
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
        let ParamInfo::Pattern { formals, ellipsis, bind } = &info.param else {
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

    fn binop(
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
                    let (x, y) = (*x, *y);
                    match op {
                        BinOp::Add => return Ok(Value::Int(x.wrapping_add(y))),
                        BinOp::Sub => return Ok(Value::Int(x.wrapping_sub(y))),
                        BinOp::Mul => return Ok(Value::Int(x.wrapping_mul(y))),
                        BinOp::Lt => return Ok(Value::Bool(x < y)),
                        BinOp::Leq => return Ok(Value::Bool(x <= y)),
                        BinOp::Gt => return Ok(Value::Bool(x > y)),
                        BinOp::Geq => return Ok(Value::Bool(x >= y)),
                        BinOp::Eq => return Ok(Value::Bool(x == y)),
                        BinOp::Neq => return Ok(Value::Bool(x != y)),
                        _ => {}
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
            BinOp::Add => self.concat_strings([a, b], span),
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
    fn concat_strings(&mut self, values: [Value; 2], span: Span) -> EvalResult<Value> {
        let first = &values[0];
        match first {
            Value::Int(_) | Value::Float(_) => {
                let mut int: i64 = 0;
                let mut float: Option<f64> = None;
                let first_desc = if matches!(first, Value::Int(_)) { "an integer" } else { "a float" };
                for v in &values {
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
                for v in &values {
                    s.push_str(&self.coerce_to_string(v, span, false, false)?);
                }
                Ok(Value::Path(crate::compile::canonicalize_lexically(Path::new(&s)).into()))
            }
            _ => {
                let mut s = String::new();
                for v in &values {
                    s.push_str(&self.coerce_to_string(v, span, false, true)?);
                }
                Ok(Value::string(s))
            }
        }
    }

    /// Nix's `coerceToString`. `more` is `toString`'s wider set of
    /// coercions; `copy_to_store` is what interpolating a path would do.
    pub fn coerce_to_string(&mut self, v: &Value, span: Span, more: bool, copy_to_store: bool) -> EvalResult<NixStr> {
        self.check_stack(Some(span))?;
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Path(p) if copy_to_store => Err(EvalError::at(
                ErrorKind::Eval,
                format!("cannot copy '{p}' to the store: interpolating a path needs mini's store, which this build of mini does not have yet"),
                span,
            )),
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
                for (i, item) in items.iter().enumerate() {
                    let item = self.force(item)?;
                    out.push_str(&self.coerce_to_string(&item, span, more, copy_to_store)?);
                    let empty_list = matches!(&item, Value::List(l) if l.is_empty());
                    if i + 1 < items.len() && !empty_list {
                        out.push(' ');
                    }
                }
                Ok(NixStr::from(out))
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
                for ((kx, p), (ky, q)) in x.entries().iter().zip(y.entries().iter()) {
                    if kx != ky || !self.thunks_equal(p, q, span)? {
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

    /// Forces a value and everything inside it (`--strict`, `deepSeq`).
    pub fn deep_force(&mut self, v: &Value, span: Span) -> EvalResult<()> {
        let mut seen = std::collections::HashSet::new();
        self.deep_force_inner(v, span, &mut seen)
    }

    fn deep_force_inner(
        &mut self,
        v: &Value,
        span: Span,
        seen: &mut std::collections::HashSet<usize>,
    ) -> EvalResult<()> {
        self.check_stack(Some(span))?;
        match v {
            Value::Attrs(attrs) => {
                if !seen.insert(Rc::as_ptr(attrs) as *const () as usize) {
                    return Ok(());
                }
                for (name, t) in attrs.entries() {
                    let value = self.force(t).map_err(|mut e| {
                        e.add_trace(span, || format!("while evaluating the attribute '{name}'"));
                        e
                    })?;
                    self.deep_force_inner(&value, span, seen)?;
                }
            }
            Value::List(items) => {
                if !seen.insert(items.as_ptr() as usize) {
                    return Ok(());
                }
                for t in items.iter() {
                    let value = self.force(t)?;
                    self.deep_force_inner(&value, span, seen)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn force_attrs(&mut self, t: &Thunk, span: Span) -> EvalResult<Rc<Attrs>> {
        let v = self.force(t)?;
        self.expect_attrs(v, span)
    }

    pub(crate) fn expect_attrs(&mut self, v: Value, span: Span) -> EvalResult<Rc<Attrs>> {
        match v {
            Value::Attrs(a) => Ok(a),
            other => {
                Err(EvalError::type_error(format!("value is {} while a set was expected", other.describe()), span))
            }
        }
    }

    pub(crate) fn expect_list(&mut self, v: Value, span: Span) -> EvalResult<Rc<Vec<Thunk>>> {
        match v {
            Value::List(l) => Ok(l),
            other => {
                Err(EvalError::type_error(format!("value is {} while a list was expected", other.describe()), span))
            }
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
fn speculate_int_op(op: BinOp, lhs: &Expr, rhs: &Expr, env: &Rc<Env>) -> Option<Value> {
    let (x, y) = (known_int(lhs, env)?, known_int(rhs, env)?);
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

fn not_a_function(v: &Value, span: Span) -> Box<EvalError> {
    EvalError::type_error(format!("attempt to call something which is not a function but {}", v.describe()), span)
}

/// `import ./dir` loads `dir/default.nixlike`, falling back to `default.nix`.
fn resolve_import(path: &Path) -> PathBuf {
    if path.is_dir() {
        let nixlike = path.join("default.nixlike");
        if nixlike.exists() {
            return nixlike;
        }
        return path.join("default.nix");
    }
    path.to_path_buf()
}

/// The OS error text without Rust's "(os error N)" suffix.
pub(crate) fn io_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
