//! The evaluator: forces thunks, applies functions and implements the
//! operators with Nix's exact rules (int/float mixing, string and path
//! concatenation, equality with the pointer shortcut, list comparison).

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::compile::{Compiler, DynamicDef, Expr, Key, SetExpr};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::fetch::Fetcher;
use crate::source_map::{SourceMap, Span};
use crate::string::{ContextElem, NixStr};
use crate::syntax::ast::BinOp;
use crate::value::{Attr, Attrs, Closure, Env, Lazy, LazyCell, Slots, Symbol, Thunk, Value};
use mini_store::derivation::ModuloHash;
use mini_store::store::Store;
use mini_store::store::TextFile;
use mini_store::store_path::StorePath;

mod access;
mod call;
mod ops;
mod store_copy;

pub use call::Fixpoint;
pub(crate) use store_copy::ScopedFilter;
pub use store_copy::SourceFilter;

use ops::speculate_int_op;

/// How much stack an evaluator may use when the caller does not say.
const DEFAULT_STACK_BUDGET: usize = 1 << 20;
/// Kept free below the budget so error handling itself has room.
const STACK_MARGIN: usize = 128 << 10;

/// One evaluation session: sources, the import cache and the global scope.
pub struct Evaluator {
    pub(crate) sources: SourceMap,
    pub(crate) globals: HashMap<Symbol, Value>,
    imports: HashMap<PathBuf, Value>,
    pub(crate) regex_cache: HashMap<String, Rc<regex::Regex>>,
    /// Reused by string interpolation, so building a string allocates once.
    interpolation_buffer: String,
    /// The store, for the things evaluation puts in it (interpolated
    /// paths, `toFile`, `builtins.path`, derivations), given by the caller
    /// with [`Evaluator::set_store`]. `None`: no store.
    store: Option<Store>,
    /// Where a store not yet opened is ([`Evaluator::set_store_root`]).
    store_root: Option<PathBuf>,
    /// The physical directory of store paths, to read them from.
    store_dir: Option<PathBuf>,
    /// Paths already copied to the store in this session.
    pub(crate) copied_paths: HashMap<PathBuf, StorePath>,
    /// What copied paths keep, by directory; see [`Evaluator::add_source_filter`].
    source_filters: Vec<Rc<dyn SourceFilter>>,
    /// Hash modulo and output names of every derivation made so far, so
    /// a derivation's inputs are hashed once however deep the graph.
    pub(crate) drv_hashes: FxHashMap<StorePath, ModuloHash>,
    pub(crate) drv_outputs: FxHashMap<StorePath, Vec<String>>,
    /// Whether derivations are written to the store (`mini instantiate`,
    /// builds) or only computed (`mini eval`, like `nix-instantiate --eval`).
    pub write_derivations: bool,
    /// Derivations made but not yet written; see [`Evaluator::flush_derivations`].
    pub(crate) pending_derivations: Vec<TextFile>,
    stack_limit: usize,
    /// Pure evaluation: no environment variables, no clock.
    pub pure: bool,
    /// Restricted evaluation: the only directories (canonical) whose files
    /// may be read; `None` reads anything. Set with [`Evaluator::restrict_to`].
    pub allowed_paths: Option<Vec<PathBuf>>,
    /// Compute cheap, total operations (`n - 1` on evaluated integers) at
    /// once instead of allocating a thunk. The value is the same either way;
    /// only whether it is still a thunk differs, which lazy printing shows
    /// as `<CODE>`, so `mini eval` without `--strict` turns this off.
    pub speculate: bool,
    /// Downloads for the fetch builtins; see [`crate::fetch`].
    pub(crate) fetcher: Option<Arc<dyn Fetcher>>,
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
            store: None,
            store_root: None,
            store_dir: None,
            copied_paths: HashMap::new(),
            source_filters: Vec::new(),
            drv_hashes: FxHashMap::default(),
            drv_outputs: FxHashMap::default(),
            write_derivations: true,
            pending_derivations: Vec::new(),
            stack_limit: stack_pointer().saturating_sub(bytes.saturating_sub(STACK_MARGIN)),
            pure: false,
            allowed_paths: None,
            speculate: true,
            fetcher: crate::fetch::default_fetcher(),
        };
        ev.globals = crate::primops::globals();
        ev.define_derivation();
        ev.set_search_path(&[]);
        ev
    }

    /// Lets the fetch builtins download through `fetcher`.
    pub fn set_fetcher(&mut self, fetcher: Arc<dyn Fetcher>) {
        self.fetcher = Some(fetcher);
    }

    /// Writes the derivations made so far to the store, all with one flush.
    pub fn flush_derivations(&mut self) -> EvalResult<()> {
        if self.pending_derivations.is_empty() {
            return Ok(());
        }
        let store = self.store(Span::default())?;
        let pending = std::mem::take(&mut self.pending_derivations);
        store.add_texts(&pending).map_err(|e| store_error(e, Span::default()))?;
        Ok(())
    }

    /// Binds `derivation`, which is written in the language.
    fn define_derivation(&mut self) {
        let expr = self
            .compile_in("«derivation»".into(), None, crate::primops::DERIVATION_NIX, PathBuf::from("/"))
            .expect("the built-in derivation function compiles");
        let value = self.eval(expr, &Env::new(None, Slots::Many(Box::new([])))).expect("it is a lambda");
        self.set_builtin("derivation", "derivation", value);
    }

    /// `e` as Nix prints an error: the message, then each place in the
    /// sources this evaluation read, with the lines around it.
    pub fn render_error(&self, e: &EvalError) -> String {
        e.render(&self.sources)
    }

    /// Gives evaluation the store to put things in (and read store paths
    /// from): the caller's handle, when the caller has one open.
    pub fn set_store(&mut self, store: Store) {
        self.store_dir = Some(store.store_dir());
        self.store = Some(store);
    }

    /// Names the store at `root` without opening it: it is opened, once,
    /// the first time evaluation puts something in it (`mini eval`, which
    /// may need no store at all, and must not make one it does not need).
    /// Store paths are read from it meanwhile.
    pub fn set_store_root(&mut self, root: &Path) {
        self.store_dir = Some(Store::store_dir_of(root));
        self.store_root = Some(root.to_path_buf());
    }

    /// The store handle evaluation was given, or the one it opened.
    pub(crate) fn store(&mut self, span: Span) -> EvalResult<Store> {
        if let Some(store) = &self.store {
            return Ok(store.clone());
        }
        let Some(root) = &self.store_root else {
            return Err(EvalError::at(ErrorKind::Eval, "this needs the store, and this evaluation has none", span));
        };
        let store = Store::open(root).map_err(|e| store_error(e, span))?;
        self.store = Some(store.clone());
        Ok(store)
    }

    #[inline]
    pub(crate) fn check_stack(&self, span: Option<Span>) -> EvalResult<()> {
        if stack_pointer() < self.stack_limit {
            return Err(EvalError::new(ErrorKind::StackOverflow, "stack overflow (possible infinite recursion)", span));
        }
        Ok(())
    }

    /// Parses and compiles source text; the compiled tree lives for the process.
    pub(crate) fn compile_source(
        &mut self,
        name: String,
        path: Option<PathBuf>,
        text: &str,
    ) -> EvalResult<&'static Expr> {
        let base_dir = match path.as_deref().and_then(Path::parent) {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir()
                .map_err(|e| EvalError::new(ErrorKind::Io, format!("cannot read the current directory: {e}"), None))?,
        };
        self.compile_in(name, path, text, base_dir)
    }

    fn compile_in(
        &mut self,
        name: String,
        path: Option<PathBuf>,
        text: &str,
        base_dir: PathBuf,
    ) -> EvalResult<&'static Expr> {
        self.compile_scoped(name, path, text, base_dir, &[])
    }

    /// Compiles with `scope` as the outermost frame's names (`scopedImport`).
    fn compile_scoped(
        &mut self,
        name: String,
        path: Option<PathBuf>,
        text: &str,
        base_dir: PathBuf,
        scope: &[Symbol],
    ) -> EvalResult<&'static Expr> {
        let file = self.sources.add(name, path, Rc::from(text));
        let ast = crate::syntax::parse(text, file).map_err(|e| EvalError::syntax(e, file))?;
        let expr = Compiler::new(&self.sources, &self.globals, base_dir).with_scope(scope).compile(&ast)?;
        Ok(Box::leak(Box::new(expr)))
    }

    /// The file `import path` reads (`path`, or its `default.nixlike` or
    /// `default.nix`), named as the recipe names it (a store path by its
    /// logical name, so nothing of where the store is reaches values), and
    /// where it is on disk.
    fn locate_source(&mut self, path: &Path, span: Option<Span>) -> EvalResult<(PathBuf, PathBuf)> {
        self.check_access(path, span)?;
        let disk = self.on_disk(path);
        let disk_file = resolve_import(&disk);
        let file = match disk_file.strip_prefix(&disk) {
            Ok(rest) if !rest.as_os_str().is_empty() => path.join(rest),
            _ => path.to_path_buf(),
        };
        if file != path {
            self.check_access(&file, span)?;
        }
        Ok((file, disk_file))
    }

    /// `scopedImport scope path`: the file evaluated with `scope`'s
    /// attributes as variables that shadow even the builtins. Unlike
    /// `import`, the result is not cached (another scope gives another value).
    pub fn scoped_import(&mut self, path: &Path, scope: &Attrs, span: Span) -> EvalResult<Value> {
        let (file, disk_file) = self.locate_source(path, Some(span))?;
        let text = read_text(&file, &disk_file, Some(span))?;
        let names: Vec<Symbol> = scope.entries().iter().map(|a| a.name).collect();
        let values: Vec<Thunk> = scope.entries().iter().map(|a| a.value.clone()).collect();
        let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        let expr = self.compile_scoped(file.display().to_string(), Some(file.clone()), &text, base_dir, &names)?;
        self.eval(expr, &Env::new(None, Slots::Many(values.into_boxed_slice())))
    }

    /// Sets a builtin: `builtins.<name>`, and the global `global`. Only
    /// before any code is compiled: compiled code holds the globals it names.
    fn set_builtin(&mut self, global: &str, name: &str, value: Value) {
        self.globals.insert(Symbol::intern(global), value.clone());
        let Some(Value::Attrs(old)) = self.globals.get(&Symbol::intern("builtins")).cloned() else {
            unreachable!("the globals hold builtins")
        };
        let set = Value::attrs(old.update(&Attrs::from_unsorted(vec![(Symbol::intern(name), value.into())])));
        // `builtins.builtins` is the set itself.
        if let Some(Thunk::Lazy(own)) = old.get_str("builtins") {
            own.set(Lazy::Done(set.clone()));
        }
        self.globals.insert(Symbol::intern("builtins"), set);
    }

    /// The search path `<name>` and `builtins.findFile` use (see
    /// [`parse_search_path_entry`]), as
    /// `(prefix, path)` pairs in order (`-I` first, then `NIX_PATH`).
    pub fn set_search_path(&mut self, entries: &[(String, String)]) {
        let list = entries
            .iter()
            .map(|(prefix, path)| {
                crate::primops::attrs_of(vec![
                    ("path", Value::string(path.as_str())),
                    ("prefix", Value::string(prefix.as_str())),
                ])
                .into()
            })
            .collect();
        self.set_builtin("__nixPath", "nixPath", Value::list(list));
    }

    /// Evaluates `--expr` text to weak head normal form.
    pub fn eval_text(&mut self, text: &str) -> EvalResult<Value> {
        self.eval_source("«string»", text)
    }

    /// Evaluates source text in the global scope; `name` is what error
    /// messages call it, and relative paths in it are relative to the
    /// current directory.
    pub fn eval_source(&mut self, name: &str, text: &str) -> EvalResult<Value> {
        let expr = self.compile_source(name.into(), None, text)?;
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
        let (file, disk_file) = self.locate_source(path, span)?;
        if let Some(v) = self.imports.get(&file) {
            return Ok(v.clone());
        }
        let text = read_text(&file, &disk_file, span)?;
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
            Thunk::Lazy(cell) => match cell.done() {
                Some(v) => Ok(v),
                None => self.force_lazy(cell),
            },
        }
    }

    #[inline(never)]
    fn force_lazy(&mut self, cell: &LazyCell) -> EvalResult<Value> {
        let state = cell.replace(Lazy::Blackhole);
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
                cell.set(Lazy::Done(v.clone()));
                Ok(v)
            }
            Err(e) => {
                // Like Nix, a failed thunk can be forced again (and fail again).
                if !matches!(state, Lazy::Blackhole) {
                    cell.set(state);
                }
                Err(e)
            }
        }
    }

    /// Evaluates an expression to weak head normal form. The hot cases are
    /// handled here; the rest live in separate functions so that this one
    /// keeps a small stack frame, which bounds how deep recursion can go.
    pub(crate) fn eval(&mut self, expr: &'static Expr, env: &Rc<Env>) -> EvalResult<Value> {
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
            Expr::PathConcat { parts, span } => {
                let values = parts.iter().map(|p| self.eval_operand(p, env)).collect::<EvalResult<Vec<_>>>()?;
                self.concat_strings(&values, *span)
            }
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
                match set.overrides {
                    Some(slot) => self.overridden_set(set, env, &frame, slot),
                    None => self.build_set(set, env, &frame),
                }
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
        let mut context = Vec::new();
        let result = self.interpolate_into(&mut buf, &mut context, parts, env, span);
        let value = result.map(|()| {
            if context.is_empty() {
                Value::string(buf.as_str())
            } else {
                Value::String(NixStr::with_context(buf.as_str(), context))
            }
        });
        self.interpolation_buffer = buf;
        value
    }

    fn interpolate_into(
        &mut self,
        buf: &mut String,
        context: &mut Vec<ContextElem>,
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
            let part = match value {
                Value::String(part) => part,
                other => self.coerce_to_string(&other, span, false, true)?,
            };
            buf.push_str(&part);
            context.extend_from_slice(part.context());
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
            let scope = if def.inherited { env } else { &frame };
            let t = if set.overrides.is_some() {
                // `__overrides` rewrites slots after the fact: each must be
                // a cell of its own, shared with no outer variable or sibling.
                Thunk::pending(&def.value, scope.clone())
            } else if def.inherited {
                self.thunk(&def.value, env)
            } else {
                self.frame_thunk(&def.value, &frame, &slots)
            };
            slots.push(t);
        }
        frame.fill(slots);
        frame
    }

    /// A `rec` set with `__overrides`: its attributes replace the set's
    /// own, in the frame too (so the others see them), and add new ones.
    fn overridden_set(
        &mut self,
        set: &'static SetExpr,
        env: &Rc<Env>,
        frame: &Rc<Env>,
        slot: u32,
    ) -> EvalResult<Value> {
        let span = set.statics[slot as usize].1.span;
        let overrides = self.force_attrs(&frame.slot(slot).clone(), span)?;
        let mut extra = Vec::new();
        for attr in overrides.entries() {
            let Ok(i) = set.statics.binary_search_by_key(&attr.name, |(name, _)| *name) else {
                extra.push(attr.clone());
                continue;
            };
            let Thunk::Lazy(cell) = frame.slot(i as u32) else { unreachable!("override slots are cells") };
            let replacement = match &attr.value {
                Thunk::Ready(v) => Lazy::Done(v.clone()),
                Thunk::Lazy(other) => match other.copy_state() {
                    Lazy::Blackhole => {
                        return Err(EvalError::at(ErrorKind::InfiniteRecursion, "infinite recursion encountered", span))
                    }
                    state => state,
                },
            };
            cell.set(replacement);
        }
        let built = self.build_set(set, env, frame)?;
        match built {
            Value::Attrs(attrs) if !extra.is_empty() => Ok(Value::attrs(attrs.update(&Attrs::from_attrs(extra)))),
            other => Ok(other),
        }
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
        let mut entries: Vec<Attr> = set
            .statics
            .iter()
            .enumerate()
            .map(|(i, (name, def))| Attr {
                name: *name,
                pos: def.pos,
                value: if recursive { frame.slot(i as u32).clone() } else { self.thunk(&def.value, frame) },
            })
            .collect();
        if set.dynamics.is_empty() {
            return Ok(Value::attrs(Attrs::from_sorted(entries)));
        }
        for DynamicDef { key, value, span, pos } in &set.dynamics {
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
            if entries.iter().any(|a| a.name == name) {
                let at = self.sources.locate(*span);
                return Err(EvalError::at(
                    ErrorKind::Eval,
                    format!("dynamic attribute '{name}' already defined at {at}"),
                    *span,
                ));
            }
            entries.push(Attr { name, pos: *pos, value: self.thunk(value, frame) });
        }
        Ok(Value::attrs(Attrs::from_attrs(entries)))
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
                for Attr { name, value: t, pos } in attrs.entries() {
                    let value = self.force(t).map_err(|mut e| {
                        e.add_trace(pos.span().unwrap_or(span), || format!("while evaluating the attribute '{name}'"));
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

/// A store failure, as an evaluation error at `span`.
pub(crate) fn store_error(e: impl std::fmt::Display, span: Span) -> Box<EvalError> {
    EvalError::at(ErrorKind::Io, e.to_string(), span)
}

/// `import ./dir` loads `dir/default.nixlike`, falling back to `default.nix`.
/// The text of source `file` (so named in messages), read at `disk_file`.
fn read_text(file: &Path, disk_file: &Path, span: Option<Span>) -> EvalResult<String> {
    std::fs::read_to_string(disk_file).map_err(|e| {
        EvalError::new(ErrorKind::Io, format!("cannot read '{}': {}", file.display(), io_message(&e)), span)
    })
}

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

/// `NIX_PATH`'s entries: separated by `:`, except the `:` of a URL's `://`.
pub fn split_search_path(text: &str) -> Vec<&str> {
    let mut entries = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b':' && !text[i..].starts_with("://") {
            entries.push(&text[start..i]);
            start = i + 1;
        }
    }
    entries.push(&text[start..]);
    entries.into_iter().filter(|e| !e.is_empty()).collect()
}

/// One search-path entry, `prefix=path` or a plain `path` (empty prefix),
/// as `(prefix, path)`.
pub fn parse_search_path_entry(entry: &str) -> (String, String) {
    match entry.split_once('=') {
        Some((prefix, path)) => (prefix.to_string(), path.to_string()),
        None => (String::new(), entry.to_string()),
    }
}

#[cfg(test)]
mod search_path_tests {
    use super::*;

    #[test]
    fn nix_path_splits_on_colons_but_not_in_urls() {
        assert_eq!(split_search_path("a=/x:/y::b=https://h/t.tar.gz"), vec!["a=/x", "/y", "b=https://h/t.tar.gz"]);
        assert!(split_search_path("").is_empty());
        assert_eq!(parse_search_path_entry("nixpkgs=/p"), ("nixpkgs".into(), "/p".into()));
        assert_eq!(parse_search_path_entry("/p"), (String::new(), "/p".into()));
    }
}
