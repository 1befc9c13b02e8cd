//! Scope analysis: turns the [`Ast`] into [`Expr`], where every lexical
//! variable is resolved to a (frame level, slot) pair, attribute paths in
//! sets are merged, and `with`-bound names keep the list of `with` frames to
//! search. Undefined variables and duplicate attributes are found here, before
//! anything runs, exactly as Nix reports them.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::source_map::{Pos, SourceMap, Span};
use crate::syntax::ast::{self, Ast, AttrKey, BinOp, Binding, Param, PathKind, StrPart};
use crate::value::{Symbol, Value};

/// Compiled code. Trees are leaked once compiled (see [`crate::value`]), so
/// evaluation can hold `&'static Expr` in thunks.
pub enum Expr {
    Const(Value),
    /// A lexical variable: `level` frames up, slot `index`.
    Var {
        level: u32,
        index: u32,
    },
    /// A name only a `with` can provide; `withs` are the levels of the
    /// enclosing `with` frames, innermost first.
    WithVar {
        name: Symbol,
        withs: Box<[u32]>,
        span: Span,
    },
    /// `"a${b}c"`: parts coerced to strings and concatenated.
    Interpolate {
        parts: Box<[Expr]>,
        span: Span,
    },
    /// A path with interpolations: the parts appended to the first (a path).
    PathConcat {
        parts: Box<[Expr]>,
        span: Span,
    },
    Select {
        expr: Box<Expr>,
        path: Box<[Key]>,
        default: Option<Box<Expr>>,
        span: Span,
    },
    HasAttr {
        expr: Box<Expr>,
        path: Box<[Key]>,
    },
    List(Box<[Expr]>),
    /// A non-recursive set: values are thunks in the current frame.
    Attrs(Box<SetExpr>),
    /// `rec { … }`: a new frame whose slots are the static attributes.
    RecAttrs(Box<SetExpr>),
    Let {
        set: Box<SetExpr>,
        body: Box<Expr>,
    },
    With {
        env: Box<Expr>,
        body: Box<Expr>,
    },
    If {
        cond: Box<Expr>,
        then: Box<Expr>,
        els: Box<Expr>,
        span: Span,
    },
    Assert {
        cond: Box<Expr>,
        body: Box<Expr>,
        span: Span,
        text: String,
    },
    Lambda(Box<LambdaInfo>),
    /// `f a b …`, with the arguments of a curried call gathered.
    Apply {
        func: Box<Expr>,
        args: Box<[Expr]>,
        span: Span,
    },
    Not(Box<Expr>, Span),
    Negate(Box<Expr>, Span),
    BinOp {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        span: Span,
    },
}

pub enum Key {
    Static(Symbol),
    Dynamic(Expr, Span),
}

/// The attributes of a set, `let` or `rec`, sorted by symbol so a recursive
/// frame's slots line up with the resulting set's entries.
pub struct SetExpr {
    pub statics: Vec<(Symbol, AttrDef)>,
    pub dynamics: Vec<DynamicDef>,
    /// In a `rec` set, the slot of a static `__overrides`, whose attributes
    /// replace the set's own (and are seen by the others), as in Nix.
    pub overrides: Option<u32>,
}

/// `${key} = value;`: a name only known when the set is built.
pub struct DynamicDef {
    pub key: Expr,
    pub value: Expr,
    /// The key's span, for messages, and as a position for `unsafeGetAttrPos`.
    pub span: Span,
    pub pos: Pos,
}

pub struct AttrDef {
    pub value: Expr,
    /// `inherit x;` in a recursive frame: evaluated in the enclosing frame.
    pub inherited: bool,
    pub span: Span,
    /// Where the attribute is defined, for `unsafeGetAttrPos`.
    pub pos: Pos,
}

pub struct LambdaInfo {
    /// The attribute or `let` name it was bound to, for messages.
    pub name: Option<Symbol>,
    pub span: Span,
    pub param: ParamInfo,
    /// The parameters' names as written: every plain one (`x: y: …`), or
    /// the `@`-bound name of a pattern, if any (`toXML` shows them).
    pub arg_names: Box<[Symbol]>,
    pub body: Expr,
}

/// A pattern's formal arguments with their defaults, in written order.
pub type Formals = Vec<(Symbol, Option<Expr>)>;

pub enum ParamInfo {
    /// `x: y: z: …`: consecutive plain parameters merged into one lambda
    /// of that many arguments, so a full call makes one frame, not three.
    Idents(u32),
    Pattern {
        formals: Formals,
        /// Where each formal is written (for `functionArgs`' positions).
        positions: Box<[Pos]>,
        ellipsis: bool,
        bind: bool,
    },
}

enum Scope {
    Names(HashMap<Symbol, u32>),
    With,
}

/// Compiles one file's syntax tree.
pub struct Compiler<'a> {
    sources: &'a SourceMap,
    globals: &'a HashMap<Symbol, Value>,
    scopes: Vec<Scope>,
    base_dir: PathBuf,
}

impl<'a> Compiler<'a> {
    pub fn new(sources: &'a SourceMap, globals: &'a HashMap<Symbol, Value>, base_dir: PathBuf) -> Self {
        Compiler { sources, globals, scopes: Vec::new(), base_dir }
    }

    /// Makes `names` the outermost scope, as the frame `scopedImport`
    /// evaluates a file in (slot `i` holds `names[i]`).
    pub fn with_scope(mut self, names: &[Symbol]) -> Self {
        let names = names.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
        self.scopes.push(Scope::Names(names));
        self
    }

    pub fn compile(&mut self, ast: &Ast) -> EvalResult<Expr> {
        self.expr(ast, None)
    }

    fn expr(&mut self, ast: &Ast, name: Option<Symbol>) -> EvalResult<Expr> {
        Ok(match ast {
            Ast::Int(n) => Expr::Const(Value::Int(*n)),
            Ast::Float(f) => Expr::Const(Value::Float(*f)),
            Ast::Uri(s) => Expr::Const(Value::string(s.as_str())),
            Ast::Str(parts) => self.string(parts)?,
            Ast::Path(p) => Expr::Const(Value::Path(self.path_literal(p)?.into())),
            Ast::InterpolatedPath { lit, parts, span } => {
                // Nix resolves the first piece as a path, keeping its
                // trailing slash, then appends the rest as strings.
                let mut first = self.path_literal(lit)?;
                if lit.text.ends_with('/') && first != "/" {
                    first.push('/');
                }
                let mut exprs = vec![Expr::Const(Value::Path(first.into()))];
                for part in parts {
                    exprs.push(match part {
                        StrPart::Literal(s) => Expr::Const(Value::string(s.as_str())),
                        StrPart::Interpolation(e, _) => self.expr(e, None)?,
                    });
                }
                Expr::PathConcat { parts: exprs.into(), span: *span }
            }
            // As in Nix, `<name>` calls whatever `__findFile` is in scope.
            Ast::SearchPath(name, span) => Expr::Apply {
                func: Box::new(self.variable("__findFile", *span)?),
                args: Box::new([self.variable("__nixPath", *span)?, Expr::Const(Value::string(name.as_str()))]),
                span: *span,
            },
            Ast::Var(name, span) => self.variable(name, *span)?,
            Ast::Select { expr, path, default, span } => Expr::Select {
                expr: Box::new(self.expr(expr, None)?),
                path: self.attr_path(path)?,
                default: default.as_ref().map(|d| self.expr(d, None)).transpose()?.map(Box::new),
                span: *span,
            },
            Ast::HasAttr { expr, path } => {
                Expr::HasAttr { expr: Box::new(self.expr(expr, None)?), path: self.attr_path(path)? }
            }
            Ast::List(items) => Expr::List(items.iter().map(|i| self.expr(i, None)).collect::<EvalResult<_>>()?),
            Ast::Attrs { rec, bindings, .. } => {
                let def = SetDef::from_bindings(*rec, bindings, self.sources)?;
                self.set(def)?
            }
            Ast::Let { bindings, body } => {
                let def = SetDef::from_bindings(true, bindings, self.sources)?;
                if let Some((_, _, span)) = def.dynamics.first() {
                    return Err(EvalError::at(ErrorKind::Syntax, "dynamic attributes not allowed in let", *span));
                }
                let scope = Scope::Names(def.frame_names());
                let (set, body) = self.in_scope(scope, |c| Ok((c.set_body(def)?, c.expr(body, None)?)))?;
                Expr::Let { set: Box::new(set), body: Box::new(body) }
            }
            Ast::LegacyLet { bindings, span } => {
                let def = SetDef::from_bindings(true, bindings, self.sources)?;
                Expr::Select {
                    expr: Box::new(self.set(def)?),
                    path: Box::new([Key::Static(Symbol::intern("body"))]),
                    default: None,
                    span: *span,
                }
            }
            Ast::With { env, body, .. } => {
                let env = self.expr(env, None)?;
                let body = self.in_scope(Scope::With, |c| c.expr(body, None))?;
                Expr::With { env: Box::new(env), body: Box::new(body) }
            }
            Ast::If { cond, then, els, span } => Expr::If {
                cond: Box::new(self.expr(cond, None)?),
                then: Box::new(self.expr(then, None)?),
                els: Box::new(self.expr(els, None)?),
                span: *span,
            },
            Ast::Assert { cond, body, span } => {
                let text = crate::print::show_ast(cond);
                Expr::Assert {
                    cond: Box::new(self.expr(cond, None)?),
                    body: Box::new(self.expr(body, None)?),
                    span: *span,
                    text,
                }
            }
            Ast::Lambda(lambda) => Expr::Lambda(Box::new(self.lambda(lambda, name)?)),
            Ast::Apply { .. } => {
                let mut args = Vec::new();
                let mut head = ast;
                let mut span = Span::default();
                while let Ast::Apply { func, arg, span: s } = head {
                    args.push(arg.as_ref());
                    span = *s;
                    head = func;
                }
                let func = Box::new(self.expr(head, None)?);
                let args = args.into_iter().rev().map(|a| self.expr(a, None)).collect::<EvalResult<_>>()?;
                Expr::Apply { func, args, span }
            }
            Ast::Not(e, span) => Expr::Not(Box::new(self.expr(e, None)?), *span),
            Ast::Negate(e, span) => Expr::Negate(Box::new(self.expr(e, None)?), *span),
            Ast::BinOp { op, lhs, rhs, span } => Expr::BinOp {
                op: *op,
                lhs: Box::new(self.expr(lhs, None)?),
                rhs: Box::new(self.expr(rhs, None)?),
                span: *span,
            },
        })
    }

    /// Compiles `f` with `scope` as the innermost scope.
    fn in_scope<T>(&mut self, scope: Scope, f: impl FnOnce(&mut Self) -> EvalResult<T>) -> EvalResult<T> {
        self.scopes.push(scope);
        let result = f(self);
        self.scopes.pop();
        result
    }

    fn string(&mut self, parts: &[StrPart]) -> EvalResult<Expr> {
        match parts {
            [] => Ok(Expr::Const(Value::string(""))),
            [StrPart::Literal(s)] => Ok(Expr::Const(Value::string(s.as_str()))),
            _ => {
                let mut span = None;
                let mut out = Vec::with_capacity(parts.len());
                for part in parts {
                    out.push(match part {
                        StrPart::Literal(s) => Expr::Const(Value::string(s.as_str())),
                        StrPart::Interpolation(e, s) => {
                            span.get_or_insert(*s);
                            self.expr(e, None)?
                        }
                    });
                }
                Ok(Expr::Interpolate { parts: out.into(), span: span.unwrap_or_default() })
            }
        }
    }

    fn variable(&mut self, name: &str, span: Span) -> EvalResult<Expr> {
        // `__curPos` is a keyword in Nix: it cannot be shadowed.
        if name == "__curPos" {
            return Ok(Expr::Const(crate::primops::position_value(self.sources, span)));
        }
        let sym = Symbol::intern(name);
        let mut withs = Vec::new();
        for (level, scope) in self.scopes.iter().rev().enumerate() {
            match scope {
                Scope::With => withs.push(level as u32),
                Scope::Names(names) => {
                    if let Some(&index) = names.get(&sym) {
                        return Ok(Expr::Var { level: level as u32, index });
                    }
                }
            }
        }
        if let Some(v) = self.globals.get(&sym) {
            return Ok(Expr::Const(v.clone()));
        }
        if withs.is_empty() {
            return Err(EvalError::at(ErrorKind::UndefinedVariable, format!("undefined variable '{name}'"), span));
        }
        Ok(Expr::WithVar { name: sym, withs: withs.into(), span })
    }

    fn attr_path(&mut self, path: &[AttrKey]) -> EvalResult<Box<[Key]>> {
        path.iter()
            .map(|k| {
                Ok(match k {
                    AttrKey::Static(s, _) => Key::Static(Symbol::intern(s)),
                    AttrKey::Dynamic(e, span) => Key::Dynamic(self.expr(e, None)?, *span),
                })
            })
            .collect()
    }

    fn set(&mut self, def: SetDef) -> EvalResult<Expr> {
        if def.rec {
            let set = self.in_scope(Scope::Names(def.frame_names()), |c| c.set_body(def))?;
            Ok(Expr::RecAttrs(Box::new(set)))
        } else {
            Ok(Expr::Attrs(Box::new(self.set_body(def)?)))
        }
    }

    /// Compiles the values of a set whose own frame (if recursive) is already in scope.
    fn set_body(&mut self, def: SetDef) -> EvalResult<SetExpr> {
        let rec = def.rec;
        let mut statics = Vec::with_capacity(def.statics.len());
        for (sym, value, span) in def.statics {
            let pos = Pos::new(def.inherit_pos.get(&sym).copied().unwrap_or(span));
            let (value, inherited) = match value {
                DefValue::Expr(ast) => (self.expr(&ast, Some(sym))?, false),
                DefValue::Nested(nested) => (self.set(nested)?, false),
                DefValue::Inherit(name, span) if rec => {
                    // Looked up around the recursive frame, not inside it.
                    let top = self.scopes.pop();
                    let var = self.variable(&name, span);
                    self.scopes.extend(top);
                    (var?, true)
                }
                DefValue::Inherit(name, span) => (self.variable(&name, span)?, false),
            };
            statics.push((sym, AttrDef { value, inherited, span, pos }));
        }
        statics.sort_by_key(|(k, _)| *k);
        let mut dynamics = Vec::with_capacity(def.dynamics.len());
        for (key, value, span) in def.dynamics {
            let value = match value {
                DefValue::Nested(nested) => self.set(nested)?,
                DefValue::Expr(ast) => self.expr(&ast, None)?,
                DefValue::Inherit(..) => unreachable!("inherit never has a dynamic name"),
            };
            dynamics.push(DynamicDef { key: self.expr(&key, None)?, value, span, pos: Pos::new(span) });
        }
        let overrides = if rec {
            let name = Symbol::intern("__overrides");
            statics.iter().position(|(sym, _)| *sym == name).map(|i| i as u32)
        } else {
            None
        };
        Ok(SetExpr { statics, dynamics, overrides })
    }

    fn lambda(&mut self, lambda: &ast::Lambda, name: Option<Symbol>) -> EvalResult<LambdaInfo> {
        match &lambda.param {
            Param::Ident(arg) => {
                let mut names = vec![arg];
                let mut body = &lambda.body;
                while let Ast::Lambda(inner) = body {
                    let Param::Ident(next) = &inner.param else { break };
                    names.push(next);
                    body = &inner.body;
                }
                // A later parameter of the same name shadows an earlier one.
                let scope = names.iter().enumerate().map(|(i, n)| (Symbol::intern(n), i as u32)).collect();
                let body = self.in_scope(Scope::Names(scope), |c| c.expr(body, None))?;
                Ok(LambdaInfo {
                    name,
                    span: lambda.span,
                    param: ParamInfo::Idents(names.len() as u32),
                    arg_names: names.iter().map(|n| Symbol::intern(n)).collect(),
                    body,
                })
            }
            Param::Pattern { formals, ellipsis, bind } => {
                let mut names: HashMap<Symbol, u32> =
                    formals.iter().enumerate().map(|(i, f)| (Symbol::intern(&f.name), i as u32)).collect();
                if let Some(bind) = bind {
                    if names.insert(Symbol::intern(bind), formals.len() as u32).is_some() {
                        return Err(EvalError::at(
                            ErrorKind::Syntax,
                            format!("duplicate formal function argument '{bind}'"),
                            lambda.span,
                        ));
                    }
                }
                let positions: Box<[Pos]> = formals.iter().map(|f| Pos::new(f.span)).collect();
                let (formals, body) = self.in_scope(Scope::Names(names), |c| {
                    let formals = formals
                        .iter()
                        .map(|f| {
                            Ok((Symbol::intern(&f.name), f.default.as_ref().map(|d| c.expr(d, None)).transpose()?))
                        })
                        .collect::<EvalResult<Formals>>()?;
                    Ok((formals, c.expr(&lambda.body, None)?))
                })?;
                Ok(LambdaInfo {
                    name,
                    span: lambda.span,
                    param: ParamInfo::Pattern { positions, formals, ellipsis: *ellipsis, bind: bind.is_some() },
                    arg_names: bind.iter().map(|b| Symbol::intern(b)).collect(),
                    body,
                })
            }
        }
    }

    fn path_literal(&self, lit: &ast::PathLit) -> EvalResult<String> {
        let full = match lit.kind {
            PathKind::Absolute => PathBuf::from(&lit.text),
            PathKind::Relative => self.base_dir.join(&lit.text),
            PathKind::Home => {
                let home = std::env::var("HOME").map_err(|_| {
                    EvalError::at(ErrorKind::Eval, "cannot resolve '~' because $HOME is not set", lit.span)
                })?;
                Path::new(&home).join(&lit.text[2..])
            }
        };
        Ok(canonicalize_lexically(&full))
    }
}

/// Resolves `.` and `..` and collapses slashes without touching the disk,
/// as Nix's `canonPath` does for path literals.
pub fn canonicalize_lexically(path: &Path) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        return "/".into();
    }
    parts.iter().fold(String::new(), |mut acc, p| {
        acc.push('/');
        acc.push_str(&p.to_string_lossy());
        acc
    })
}

/// Attribute definitions gathered from bindings, with `a.b = 1; a.c = 2;`
/// merged into nested sets as Nix's parser merges them.
struct SetDef {
    rec: bool,
    statics: Vec<(Symbol, DefValue, Span)>,
    /// Positions of inherited attributes, which are not their names' spans.
    inherit_pos: HashMap<Symbol, Span>,
    dynamics: Vec<(Ast, DefValue, Span)>,
}

enum DefValue {
    Expr(Ast),
    Nested(SetDef),
    Inherit(String, Span),
}

impl SetDef {
    fn from_bindings(rec: bool, bindings: &[Binding], sources: &SourceMap) -> EvalResult<SetDef> {
        let mut def = SetDef { rec, statics: Vec::new(), inherit_pos: HashMap::new(), dynamics: Vec::new() };
        for binding in bindings {
            match binding {
                Binding::Inherit { from, names, pos, .. } => {
                    for (name, span) in names {
                        def.inherit_pos.insert(Symbol::intern(name), *pos);
                        let value = match from {
                            Some(from) => DefValue::Expr(Ast::Select {
                                expr: from.clone(),
                                path: vec![AttrKey::Static(name.clone(), *span)],
                                default: None,
                                span: *span,
                            }),
                            None => DefValue::Inherit(name.clone(), *span),
                        };
                        def.insert_static(name, value, *span, sources)?;
                    }
                }
                Binding::Assign { path, value, span } => def.insert_path(path, path, value, *span, sources)?,
            }
        }
        Ok(def)
    }

    fn frame_names(&self) -> HashMap<Symbol, u32> {
        let mut syms: Vec<Symbol> = self.statics.iter().map(|(s, _, _)| *s).collect();
        syms.sort();
        syms.into_iter().enumerate().map(|(i, s)| (s, i as u32)).collect()
    }

    fn position(&self, sym: Symbol) -> Option<usize> {
        self.statics.iter().position(|(s, _, _)| *s == sym)
    }

    fn insert_static(&mut self, name: &str, value: DefValue, span: Span, sources: &SourceMap) -> EvalResult<()> {
        let sym = Symbol::intern(name);
        if let Some(i) = self.position(sym) {
            return Err(duplicate(name, span, self.statics[i].2, sources));
        }
        self.statics.push((sym, value, span));
        Ok(())
    }

    /// Inserts `path = value`; `full` is the whole written path, for messages.
    fn insert_path(
        &mut self,
        path: &[AttrKey],
        full: &[AttrKey],
        value: &Ast,
        span: Span,
        sources: &SourceMap,
    ) -> EvalResult<()> {
        let (first, rest) = path.split_first().expect("the parser never yields an empty attribute path");
        let AttrKey::Static(name, _) = first else {
            let key = match first {
                AttrKey::Dynamic(key, key_span) => (key.clone(), *key_span),
                AttrKey::Static(..) => unreachable!(),
            };
            self.dynamics.push((key.0, SetDef::value_at(rest, full, value, span, sources)?, key.1));
            return Ok(());
        };
        let sym = Symbol::intern(name);
        let Some(i) = self.position(sym) else {
            self.statics.push((sym, SetDef::value_at(rest, full, value, span, sources)?, span));
            return Ok(());
        };
        let previous = self.statics[i].2;
        match (&mut self.statics[i].1, value) {
            (DefValue::Nested(existing), _) if !rest.is_empty() => {
                existing.insert_path(rest, full, value, span, sources)
            }
            // `a = { b = 1; }; a.c = 2;` and the reverse merge, as in Nix.
            (DefValue::Nested(existing), Ast::Attrs { rec, bindings, .. }) => {
                let new = SetDef::from_bindings(*rec, bindings, sources)?;
                for (sym, v, s) in new.statics {
                    if let Some(j) = existing.position(sym) {
                        return Err(duplicate(sym.as_str(), s, existing.statics[j].2, sources));
                    }
                    existing.statics.push((sym, v, s));
                }
                existing.dynamics.extend(new.dynamics);
                existing.inherit_pos.extend(new.inherit_pos);
                Ok(())
            }
            _ => Err(duplicate(&show_path(full), span, previous, sources)),
        }
    }

    /// The definition `rest = value` makes: the value itself, or nested sets down `rest`.
    fn value_at(
        rest: &[AttrKey],
        full: &[AttrKey],
        value: &Ast,
        span: Span,
        sources: &SourceMap,
    ) -> EvalResult<DefValue> {
        if rest.is_empty() {
            return Ok(match value {
                Ast::Attrs { rec, bindings, .. } => DefValue::Nested(SetDef::from_bindings(*rec, bindings, sources)?),
                other => DefValue::Expr(other.clone()),
            });
        }
        let mut nested = SetDef { rec: false, statics: Vec::new(), inherit_pos: HashMap::new(), dynamics: Vec::new() };
        nested.insert_path(rest, full, value, span, sources)?;
        Ok(DefValue::Nested(nested))
    }
}

fn show_path(path: &[AttrKey]) -> String {
    path.iter()
        .map(|k| match k {
            AttrKey::Static(s, _) => s.clone(),
            AttrKey::Dynamic(..) => "\"${...}\"".to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn duplicate(name: &str, span: Span, previous: Span, sources: &SourceMap) -> Box<EvalError> {
    EvalError::at(
        ErrorKind::Syntax,
        format!("attribute '{name}' already defined at {}", sources.locate(previous)),
        span,
    )
}
