//! The syntax tree exactly as written, before scope analysis. Every node that
//! can fail at run time carries a [`Span`] so errors point at the source.

use crate::source_map::Span;

/// One parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    Int(i64),
    Float(f64),
    /// A string literal or interpolated string (`"a${b}"`, `''…''`).
    Str(Vec<StrPart>),
    /// A path literal: `./a`, `/abs`, `~/a`.
    Path(PathLit),
    /// `./a/${b}/c`: the first piece (which may end in `/`), then text and
    /// interpolations; the result is a path.
    InterpolatedPath {
        lit: PathLit,
        parts: Vec<StrPart>,
        span: Span,
    },
    /// `<nixpkgs>`: a lookup in the search path.
    /// `<name>`: Nix's sugar for `__findFile __nixPath "name"`.
    SearchPath(String, Span),
    /// An unquoted URI such as `https://example.org`, which Nix reads as a string.
    Uri(String),
    Var(String, Span),
    /// `e.a.b` or `e.a.b or default`.
    Select {
        expr: Box<Ast>,
        path: Vec<AttrKey>,
        default: Option<Box<Ast>>,
        span: Span,
    },
    /// `e ? a.b`.
    HasAttr {
        expr: Box<Ast>,
        path: Vec<AttrKey>,
    },
    List(Vec<Ast>),
    Attrs {
        rec: bool,
        bindings: Vec<Binding>,
        span: Span,
    },
    Let {
        bindings: Vec<Binding>,
        body: Box<Ast>,
    },
    /// `let { a = 1; body = a; }`: the old form, whose value is its `body` attribute.
    LegacyLet {
        bindings: Vec<Binding>,
        span: Span,
    },
    With {
        env: Box<Ast>,
        body: Box<Ast>,
        span: Span,
    },
    If {
        cond: Box<Ast>,
        then: Box<Ast>,
        els: Box<Ast>,
        span: Span,
    },
    Assert {
        cond: Box<Ast>,
        body: Box<Ast>,
        span: Span,
    },
    Lambda(Box<Lambda>),
    Apply {
        func: Box<Ast>,
        arg: Box<Ast>,
        span: Span,
    },
    Not(Box<Ast>, Span),
    Negate(Box<Ast>, Span),
    BinOp {
        op: BinOp,
        lhs: Box<Ast>,
        rhs: Box<Ast>,
        span: Span,
    },
}

/// A piece of a string literal.
#[derive(Debug, Clone, PartialEq)]
pub enum StrPart {
    Literal(String),
    Interpolation(Ast, Span),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// `./a`, `a/b`, `../a`: relative to the file's directory.
    Relative,
    Absolute,
    /// `~/a`: relative to `$HOME`.
    Home,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PathLit {
    pub kind: PathKind,
    pub text: String,
    pub span: Span,
}

/// One component of an attribute path.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrKey {
    Static(String, Span),
    /// `${e}` or `"a${e}"`: computed when the set is built.
    Dynamic(Ast, Span),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// `a.b.c = value;`
    Assign { path: Vec<AttrKey>, value: Ast, span: Span },
    /// `inherit a b;` or `inherit (from) a b;`
    /// `inherit (from) names;`; `pos` is just after `inherit` or `(from)`,
    /// where Nix places the inherited attributes.
    Inherit { from: Option<Box<Ast>>, names: Vec<(String, Span)>, pos: Span, span: Span },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lambda {
    pub param: Param,
    pub body: Ast,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `x: …`
    Ident(String),
    /// `{ a, b ? 1, ... }@args: …`
    Pattern { formals: Vec<Formal>, ellipsis: bool, bind: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Formal {
    pub name: String,
    pub default: Option<Ast>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Impl,
    Or,
    And,
    Eq,
    Neq,
    Lt,
    Leq,
    Gt,
    Geq,
    Update,
    Add,
    Sub,
    Mul,
    Div,
    Concat,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Impl => "->",
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Neq => "!=",
            BinOp::Lt => "<",
            BinOp::Leq => "<=",
            BinOp::Gt => ">",
            BinOp::Geq => ">=",
            BinOp::Update => "//",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Concat => "++",
        }
    }
}
