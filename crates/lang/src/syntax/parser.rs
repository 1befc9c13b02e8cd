//! The parser: tokens to [`Ast`], following the grammar and operator
//! precedence of Nix's `parser.y`. Nesting is bounded so that hostile input
//! (100 000 open brackets) gets an error instead of exhausting the stack.

use super::ast::*;
use super::lexer::{tokenize, Lexed, Token};
use super::SyntaxError;
use crate::source_map::{FileId, Span};

/// Deeper nesting than this is rejected; real code stays far below it.
pub const MAX_NESTING: usize = 1500;

/// Parses a whole file or `--expr` text.
pub fn parse(src: &str, file: FileId) -> Result<Ast, SyntaxError> {
    let tokens = tokenize(src)?;
    let mut parser = Parser { src, tokens, pos: 0, file, depth: 0 };
    let expr = parser.expr()?;
    parser.expect(&Token::Eof, "end of file")?;
    Ok(expr)
}

// Binding powers, loosest first, from parser.y's %left/%right/%nonassoc table.
const IMPL: u8 = 1;
const OR: u8 = 2;
const AND: u8 = 3;
const EQUALITY: u8 = 4;
const COMPARE: u8 = 5;
const UPDATE: u8 = 6;
const NOT: u8 = 7;
const ADD: u8 = 8;
const MUL: u8 = 9;
const CONCAT: u8 = 10;
const HAS_ATTR: u8 = 11;
const NEGATE: u8 = 12;

#[derive(PartialEq)]
enum Assoc {
    Left,
    Right,
    None,
}

fn infix(token: &Token) -> Option<(BinOp, u8, Assoc)> {
    Some(match token {
        Token::Impl => (BinOp::Impl, IMPL, Assoc::Right),
        Token::Or => (BinOp::Or, OR, Assoc::Left),
        Token::And => (BinOp::And, AND, Assoc::Left),
        Token::Eq => (BinOp::Eq, EQUALITY, Assoc::None),
        Token::Neq => (BinOp::Neq, EQUALITY, Assoc::None),
        Token::Lt => (BinOp::Lt, COMPARE, Assoc::None),
        Token::Leq => (BinOp::Leq, COMPARE, Assoc::None),
        Token::Gt => (BinOp::Gt, COMPARE, Assoc::None),
        Token::Geq => (BinOp::Geq, COMPARE, Assoc::None),
        Token::Update => (BinOp::Update, UPDATE, Assoc::Right),
        Token::Plus => (BinOp::Add, ADD, Assoc::Left),
        Token::Minus => (BinOp::Sub, ADD, Assoc::Left),
        Token::Star => (BinOp::Mul, MUL, Assoc::Left),
        Token::Slash => (BinOp::Div, MUL, Assoc::Left),
        Token::Concat => (BinOp::Concat, CONCAT, Assoc::Right),
        _ => return None,
    })
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Lexed>,
    pos: usize,
    file: FileId,
    depth: usize,
}

type PResult<T> = Result<T, SyntaxError>;

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos].token
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + ahead).min(last)].token
    }

    fn text(&self) -> &'a str {
        let t = &self.tokens[self.pos];
        &self.src[t.start..t.end]
    }

    fn span_here(&self) -> Span {
        let t = &self.tokens[self.pos];
        Span::new(self.file, t.start, t.end)
    }

    /// Span from the token at `start` to the previous token.
    fn span_from(&self, start: usize) -> Span {
        let first = &self.tokens[start];
        let last = &self.tokens[self.pos.saturating_sub(1).max(start)];
        Span::new(self.file, first.start, last.end)
    }

    fn bump(&mut self) -> Lexed {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == token {
            self.bump();
            true
        } else {
            false
        }
    }

    fn unexpected(&self, expecting: &str) -> SyntaxError {
        let t = &self.tokens[self.pos];
        SyntaxError {
            offset: t.start,
            message: format!("syntax error, unexpected {}, expecting {expecting}", t.token.describe(self.text())),
        }
    }

    fn expect(&mut self, token: &Token, expecting: &str) -> PResult<Lexed> {
        if self.peek() == token {
            Ok(self.bump())
        } else {
            Err(self.unexpected(expecting))
        }
    }

    fn ident(&mut self, expecting: &str) -> PResult<(String, Span)> {
        if *self.peek() == Token::Id {
            let name = self.text().to_string();
            let span = self.span_here();
            self.bump();
            Ok((name, span))
        } else {
            Err(self.unexpected(expecting))
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(SyntaxError {
                offset: self.tokens[self.pos].start,
                message: format!("expression is nested too deeply (more than {MAX_NESTING} levels)"),
            });
        }
        Ok(())
    }

    /// `expr_function` in Nix's grammar: lambdas, `assert`, `with`, `let`, or an `if`.
    fn expr(&mut self) -> PResult<Ast> {
        self.enter()?;
        let result = self.expr_inner();
        self.depth -= 1;
        result
    }

    fn expr_inner(&mut self) -> PResult<Ast> {
        let start = self.pos;
        match self.peek() {
            Token::Id if *self.peek_at(1) == Token::Colon => {
                let (name, _) = self.ident("identifier")?;
                self.bump();
                let body = self.expr()?;
                Ok(self.lambda(Param::Ident(name), body, start))
            }
            Token::Id if *self.peek_at(1) == Token::At && *self.peek_at(2) == Token::LBrace => {
                let (bind, _) = self.ident("identifier")?;
                self.bump();
                let (formals, ellipsis) = self.formals()?;
                self.expect(&Token::Colon, "':'")?;
                let body = self.expr()?;
                Ok(self.lambda(Param::Pattern { formals, ellipsis, bind: Some(bind) }, body, start))
            }
            Token::LBrace if self.is_formals() => {
                let (formals, ellipsis) = self.formals()?;
                let bind = if self.eat(&Token::At) { Some(self.ident("identifier")?.0) } else { None };
                self.expect(&Token::Colon, "':'")?;
                let body = self.expr()?;
                Ok(self.lambda(Param::Pattern { formals, ellipsis, bind }, body, start))
            }
            Token::Assert => {
                self.bump();
                let cond = self.expr()?;
                self.expect(&Token::Semi, "';'")?;
                let body = self.expr()?;
                Ok(Ast::Assert { cond: Box::new(cond), body: Box::new(body), span: self.tokens_span(start, start) })
            }
            Token::With => {
                self.bump();
                let env = self.expr()?;
                self.expect(&Token::Semi, "';'")?;
                let body = self.expr()?;
                Ok(Ast::With { env: Box::new(env), body: Box::new(body), span: self.tokens_span(start, start) })
            }
            Token::Let if *self.peek_at(1) != Token::LBrace => {
                self.bump();
                let bindings = self.bindings(&Token::In)?;
                self.expect(&Token::In, "'in'")?;
                let body = self.expr()?;
                Ok(Ast::Let { bindings, body: Box::new(body) })
            }
            _ => self.if_expr(),
        }
    }

    fn tokens_span(&self, from: usize, to: usize) -> Span {
        Span::new(self.file, self.tokens[from].start, self.tokens[to].end)
    }

    fn lambda(&self, param: Param, body: Ast, start: usize) -> Ast {
        Ast::Lambda(Box::new(Lambda { param, body, span: self.tokens_span(start, start) }))
    }

    /// Decides whether `{` opens a lambda's formals rather than an attribute set.
    fn is_formals(&self) -> bool {
        match self.peek_at(1) {
            Token::RBrace => matches!(self.peek_at(2), Token::Colon | Token::At),
            Token::Ellipsis => true,
            Token::Id => match self.peek_at(2) {
                Token::Comma | Token::Question => true,
                Token::RBrace => matches!(self.peek_at(3), Token::Colon | Token::At),
                _ => false,
            },
            _ => false,
        }
    }

    fn formals(&mut self) -> PResult<(Vec<Formal>, bool)> {
        self.expect(&Token::LBrace, "'{'")?;
        let mut formals: Vec<Formal> = Vec::new();
        let mut ellipsis = false;
        loop {
            match self.peek() {
                Token::RBrace => break,
                Token::Ellipsis => {
                    self.bump();
                    ellipsis = true;
                    break;
                }
                Token::Id => {
                    let (name, span) = self.ident("identifier")?;
                    if formals.iter().any(|f| f.name == name) {
                        return Err(SyntaxError {
                            offset: span.start as usize,
                            message: format!("duplicate formal function argument '{name}'"),
                        });
                    }
                    let default = if self.eat(&Token::Question) { Some(self.expr()?) } else { None };
                    formals.push(Formal { name, default, span });
                    if !self.eat(&Token::Comma) {
                        break;
                    }
                }
                _ => return Err(self.unexpected("identifier, '...' or '}'")),
            }
        }
        self.expect(&Token::RBrace, "'}'")?;
        Ok((formals, ellipsis))
    }

    fn if_expr(&mut self) -> PResult<Ast> {
        if *self.peek() != Token::If {
            return self.op_expr(0);
        }
        let start = self.pos;
        self.bump();
        let cond = self.expr()?;
        self.expect(&Token::Then, "'then'")?;
        let then = self.expr()?;
        self.expect(&Token::Else, "'else'")?;
        let els = self.expr()?;
        Ok(Ast::If {
            cond: Box::new(cond),
            then: Box::new(then),
            els: Box::new(els),
            span: self.tokens_span(start, start),
        })
    }

    fn op_expr(&mut self, min_bp: u8) -> PResult<Ast> {
        self.enter()?;
        let result = self.op_expr_inner(min_bp);
        self.depth -= 1;
        result
    }

    fn op_expr_inner(&mut self, min_bp: u8) -> PResult<Ast> {
        let start = self.pos;
        let mut lhs = match self.peek() {
            Token::Not => {
                self.bump();
                let operand = self.op_expr(NOT)?;
                Ast::Not(Box::new(operand), self.tokens_span(start, start))
            }
            Token::Minus => {
                self.bump();
                let operand = self.op_expr(NEGATE)?;
                Ast::Negate(Box::new(operand), self.tokens_span(start, start))
            }
            _ => self.app_expr()?,
        };
        let mut last_nonassoc: Option<u8> = None;
        loop {
            if *self.peek() == Token::Question {
                if HAS_ATTR < min_bp {
                    break;
                }
                if last_nonassoc == Some(HAS_ATTR) {
                    return Err(self.unexpected("an operator of another precedence"));
                }
                self.bump();
                let path = self.attr_path()?;
                lhs = Ast::HasAttr { expr: Box::new(lhs), path };
                last_nonassoc = Some(HAS_ATTR);
                continue;
            }
            let Some((op, bp, assoc)) = infix(self.peek()) else { break };
            if bp < min_bp {
                break;
            }
            if assoc == Assoc::None && last_nonassoc == Some(bp) {
                return Err(self.unexpected("an operator of another precedence"));
            }
            let op_span = self.span_here();
            self.bump();
            let rhs = self.op_expr(if assoc == Assoc::Right { bp } else { bp + 1 })?;
            lhs = Ast::BinOp { op, lhs: Box::new(lhs), rhs: Box::new(rhs), span: op_span };
            last_nonassoc = (assoc == Assoc::None).then_some(bp);
        }
        Ok(lhs)
    }

    fn starts_simple(&self) -> bool {
        match self.peek() {
            Token::Id
            | Token::Int(_)
            | Token::Float(_)
            | Token::StrOpen
            | Token::IndOpen
            | Token::Path
            | Token::HomePath
            | Token::SearchPath
            | Token::Uri
            | Token::LParen
            | Token::LBrace
            | Token::LBracket
            | Token::Rec => true,
            Token::Let => *self.peek_at(1) == Token::LBrace,
            _ => false,
        }
    }

    fn app_expr(&mut self) -> PResult<Ast> {
        let mut func = self.select_expr()?;
        while self.starts_simple() {
            let span = self.span_here();
            let arg = self.select_expr()?;
            func = Ast::Apply { func: Box::new(func), arg: Box::new(arg), span };
        }
        Ok(func)
    }

    fn select_expr(&mut self) -> PResult<Ast> {
        let start = self.pos;
        let expr = self.simple_expr()?;
        if *self.peek() == Token::OrKw {
            // `f or`: `f` applied to a variable named `or`, which Nix keeps
            // for a nixpkgs function of that name.
            let span = self.span_here();
            self.bump();
            let var = Ast::Var("or".into(), span);
            return Ok(Ast::Apply { func: Box::new(expr), arg: Box::new(var), span });
        }
        if *self.peek() != Token::Dot {
            return Ok(expr);
        }
        self.bump();
        let path = self.attr_path()?;
        // Nix places a selection (and its errors) where the selected expression starts.
        let span = self.span_from(start);
        let default = if self.eat(&Token::OrKw) { Some(Box::new(self.select_expr()?)) } else { None };
        Ok(Ast::Select { expr: Box::new(expr), path, default, span })
    }

    fn attr_path(&mut self) -> PResult<Vec<AttrKey>> {
        let mut path = vec![self.attr_key()?];
        while self.eat(&Token::Dot) {
            path.push(self.attr_key()?);
        }
        Ok(path)
    }

    fn attr_key(&mut self) -> PResult<AttrKey> {
        let span = self.span_here();
        match self.peek() {
            Token::Id | Token::OrKw => {
                let name = self.text().to_string();
                self.bump();
                Ok(AttrKey::Static(name, span))
            }
            Token::StrOpen => {
                let parts = self.string_parts()?;
                let span = span.to(self.span_from(self.pos - 1));
                match parts.as_slice() {
                    [] => Ok(AttrKey::Static(String::new(), span)),
                    [StrPart::Literal(s)] => Ok(AttrKey::Static(s.clone(), span)),
                    _ => Ok(AttrKey::Dynamic(Ast::Str(parts), span)),
                }
            }
            Token::DollarCurly => {
                self.bump();
                let expr = self.expr()?;
                self.expect(&Token::RBrace, "'}'")?;
                // `${"name"}` of a plain string is a static name, as in Nix.
                match expr {
                    Ast::Str(parts) if parts.is_empty() => Ok(AttrKey::Static(String::new(), span)),
                    Ast::Str(parts) if matches!(parts.as_slice(), [StrPart::Literal(_)]) => {
                        let Some(StrPart::Literal(s)) = parts.into_iter().next() else { unreachable!() };
                        Ok(AttrKey::Static(s, span))
                    }
                    expr => Ok(AttrKey::Dynamic(expr, span)),
                }
            }
            _ => Err(self.unexpected("an attribute name")),
        }
    }

    fn simple_expr(&mut self) -> PResult<Ast> {
        self.enter()?;
        let result = self.simple_expr_inner();
        self.depth -= 1;
        result
    }

    fn simple_expr_inner(&mut self) -> PResult<Ast> {
        let start = self.pos;
        let span = self.span_here();
        let text = self.text();
        match self.peek().clone() {
            Token::Id => {
                self.bump();
                Ok(Ast::Var(text.to_string(), span))
            }
            Token::Int(n) => {
                self.bump();
                Ok(Ast::Int(n))
            }
            Token::Float(f) => {
                self.bump();
                Ok(Ast::Float(f))
            }
            Token::StrOpen => Ok(Ast::Str(self.string_parts()?)),
            Token::IndOpen => self.indented_string(),
            Token::Path | Token::HomePath => {
                self.bump();
                let kind = if text.starts_with('~') {
                    PathKind::Home
                } else if text.starts_with('/') {
                    PathKind::Absolute
                } else {
                    PathKind::Relative
                };
                let lit = PathLit { kind, text: text.to_string(), span };
                // The lexer only puts `${` right after a path in path mode.
                if *self.peek() != Token::DollarCurly || self.tokens[self.pos].start != span.end as usize {
                    return Ok(Ast::Path(lit));
                }
                let mut parts = Vec::new();
                loop {
                    match self.peek().clone() {
                        Token::PathEnd => {
                            self.bump();
                            break;
                        }
                        Token::StrText(s) => {
                            self.bump();
                            parts.push(StrPart::Literal(s));
                        }
                        Token::DollarCurly => parts.push(self.interpolation()?),
                        _ => return Err(self.unexpected("the rest of the path")),
                    }
                }
                Ok(Ast::InterpolatedPath { lit, parts, span: self.span_from(start) })
            }
            Token::SearchPath => {
                self.bump();
                Ok(Ast::SearchPath(text[1..text.len() - 1].to_string(), span))
            }
            Token::Uri => {
                self.bump();
                Ok(Ast::Uri(text.to_string()))
            }
            Token::LParen => {
                self.bump();
                let expr = self.expr()?;
                self.expect(&Token::RParen, "')'")?;
                Ok(expr)
            }
            Token::Let => {
                self.bump();
                self.expect(&Token::LBrace, "'{'")?;
                let bindings = self.bindings(&Token::RBrace)?;
                self.expect(&Token::RBrace, "'}'")?;
                Ok(Ast::LegacyLet { bindings, span: self.span_from(start) })
            }
            Token::Rec | Token::LBrace => {
                let rec = self.eat(&Token::Rec);
                self.expect(&Token::LBrace, "'{'")?;
                let bindings = self.bindings(&Token::RBrace)?;
                self.expect(&Token::RBrace, "'}'")?;
                Ok(Ast::Attrs { rec, bindings, span: self.span_from(start) })
            }
            Token::LBracket => {
                self.bump();
                let mut items = Vec::new();
                while *self.peek() != Token::RBracket {
                    if !self.starts_simple() {
                        return Err(self.unexpected("']' or a list element"));
                    }
                    items.push(self.select_expr()?);
                }
                self.bump();
                Ok(Ast::List(items))
            }
            _ => Err(self.unexpected("an expression")),
        }
    }

    fn bindings(&mut self, end: &Token) -> PResult<Vec<Binding>> {
        let mut bindings = Vec::new();
        while self.peek() != end {
            let start = self.pos;
            if self.eat(&Token::Inherit) {
                let from = if self.eat(&Token::LParen) {
                    let e = self.expr()?;
                    self.expect(&Token::RParen, "')'")?;
                    Some(Box::new(e))
                } else {
                    None
                };
                // Nix places inherited attributes just after `inherit` or `(…)`.
                let after = self.tokens[self.pos.saturating_sub(1)].end;
                let pos = Span::new(self.file, after, after);
                let mut names = Vec::new();
                while *self.peek() != Token::Semi {
                    match self.attr_key()? {
                        AttrKey::Static(name, span) => names.push((name, span)),
                        AttrKey::Dynamic(_, span) => {
                            return Err(SyntaxError {
                                offset: span.start as usize,
                                message: "dynamic attributes not allowed in inherit".into(),
                            })
                        }
                    }
                }
                self.bump();
                bindings.push(Binding::Inherit { from, names, pos, span: self.span_from(start) });
                continue;
            }
            if !matches!(self.peek(), Token::Id | Token::OrKw | Token::StrOpen | Token::DollarCurly) {
                let expecting = if *end == Token::In { "'in' or a binding" } else { "'}' or a binding" };
                return Err(self.unexpected(expecting));
            }
            let path = self.attr_path()?;
            self.expect(&Token::Assign, "'='")?;
            let value = self.expr()?;
            self.expect(&Token::Semi, "';'")?;
            bindings.push(Binding::Assign { path, value, span: self.span_from(start) });
        }
        Ok(bindings)
    }

    /// `"…"`: literal text and `${…}` parts, up to the closing quote.
    fn string_parts(&mut self) -> PResult<Vec<StrPart>> {
        self.expect(&Token::StrOpen, "'\"'")?;
        let mut parts = Vec::new();
        loop {
            match self.peek().clone() {
                Token::StrClose => {
                    self.bump();
                    return Ok(parts);
                }
                Token::StrText(s) => {
                    self.bump();
                    parts.push(StrPart::Literal(s));
                }
                Token::DollarCurly => parts.push(self.interpolation()?),
                _ => return Err(self.unexpected("'\"'")),
            }
        }
    }

    fn interpolation(&mut self) -> PResult<StrPart> {
        let start = self.pos;
        self.bump();
        let expr = self.expr()?;
        self.expect(&Token::RBrace, "'}'")?;
        Ok(StrPart::Interpolation(expr, self.span_from(start)))
    }

    fn indented_string(&mut self) -> PResult<Ast> {
        self.bump();
        let mut parts = Vec::new();
        loop {
            match self.peek().clone() {
                Token::IndClose => {
                    self.bump();
                    return Ok(Ast::Str(strip_indentation(parts)));
                }
                Token::IndText(s, raw) => {
                    self.bump();
                    parts.push(IndPart::Text(s, raw));
                }
                Token::DollarCurly => match self.interpolation()? {
                    StrPart::Interpolation(e, span) => parts.push(IndPart::Interpolation(e, span)),
                    StrPart::Literal(_) => unreachable!("interpolation() yields interpolations"),
                },
                _ => return Err(self.unexpected("\"''\"")),
            }
        }
    }
}

/// A piece of an indented string before indentation is stripped.
enum IndPart {
    /// Text, and whether it is raw (true) or came from an escape (false).
    Text(String, bool),
    Interpolation(Ast, Span),
}

/// Removes the common leading spaces of an indented string, as Nix does:
/// only raw spaces count, blank lines do not, an interpolation or escape at
/// the start of a line ends its indentation, and a last line of only spaces is dropped.
fn strip_indentation(parts: Vec<IndPart>) -> Vec<StrPart> {
    let mut min_indent = usize::MAX;
    let mut cur_indent = 0;
    let mut at_line_start = true;
    for part in &parts {
        match part {
            IndPart::Interpolation(..) | IndPart::Text(_, false) => {
                if at_line_start {
                    at_line_start = false;
                    min_indent = min_indent.min(cur_indent);
                }
            }
            IndPart::Text(s, true) => {
                for c in s.chars() {
                    if at_line_start {
                        match c {
                            ' ' => cur_indent += 1,
                            '\n' => cur_indent = 0,
                            _ => {
                                at_line_start = false;
                                min_indent = min_indent.min(cur_indent);
                            }
                        }
                    } else if c == '\n' {
                        at_line_start = true;
                        cur_indent = 0;
                    }
                }
            }
        }
    }

    let count = parts.len();
    let mut out = Vec::with_capacity(count);
    let mut at_line_start = true;
    let mut dropped = 0;
    for (i, part) in parts.into_iter().enumerate() {
        match part {
            IndPart::Interpolation(e, span) => {
                at_line_start = false;
                dropped = 0;
                out.push(StrPart::Interpolation(e, span));
            }
            IndPart::Text(s, _) => {
                let mut kept = String::with_capacity(s.len());
                for c in s.chars() {
                    if at_line_start {
                        match c {
                            ' ' => {
                                if dropped >= min_indent {
                                    kept.push(c);
                                }
                                dropped += 1;
                            }
                            '\n' => {
                                dropped = 0;
                                kept.push(c);
                            }
                            _ => {
                                at_line_start = false;
                                dropped = 0;
                                kept.push(c);
                            }
                        }
                    } else {
                        kept.push(c);
                        if c == '\n' {
                            at_line_start = true;
                        }
                    }
                }
                if i + 1 == count {
                    if let Some(p) = kept.rfind('\n') {
                        if kept[p + 1..].bytes().all(|b| b == b' ') {
                            kept.truncate(p + 1);
                        }
                    }
                }
                if !kept.is_empty() {
                    out.push(StrPart::Literal(kept));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Ast {
        parse(src, 0).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    fn binop(a: &Ast) -> (BinOp, &Ast, &Ast) {
        match a {
            Ast::BinOp { op, lhs, rhs, .. } => (*op, lhs, rhs),
            other => panic!("not a binop: {other:?}"),
        }
    }

    #[test]
    fn precedence_and_associativity() {
        let sum = p("1 + 2 * 3");
        let (op, lhs, _) = binop(&sum);
        assert_eq!((op, lhs), (BinOp::Add, &Ast::Int(1)));
        let diff = p("1 - 2 - 3");
        let (op, lhs, _) = binop(&diff);
        assert_eq!(op, BinOp::Sub);
        assert_eq!(binop(lhs).0, BinOp::Sub);
        let update = p("a // b // c");
        let (op, _, rhs) = binop(&update);
        assert_eq!((op, binop(rhs).0), (BinOp::Update, BinOp::Update));
        let implication = p("a -> b -> c");
        let (op, _, rhs) = binop(&implication);
        assert_eq!((op, binop(rhs).0), (BinOp::Impl, BinOp::Impl));
        assert!(matches!(p("!a && b"), Ast::BinOp { op: BinOp::And, .. }));
        assert!(matches!(p("!a + b"), Ast::Not(..)));
        assert!(matches!(p("-a ? b"), Ast::HasAttr { .. }));
    }

    #[test]
    fn non_associative_operators_reject_chains() {
        assert!(parse("1 == 1 == 1", 0).is_err());
        assert!(parse("1 < 2 < 3", 0).is_err());
        assert!(parse("1 < 2 == true", 0).is_ok());
    }

    #[test]
    fn lambdas_and_formals() {
        assert!(matches!(p("x: x"), Ast::Lambda(_)));
        assert!(matches!(p("{ a, b ? 1, ... }@args: a"), Ast::Lambda(_)));
        assert!(matches!(p("args@{ a }: a"), Ast::Lambda(_)));
        assert!(matches!(p("{ }: 1"), Ast::Lambda(_)));
        assert!(matches!(p("{ a = 1; }"), Ast::Attrs { .. }));
        assert!(matches!(p("{ }"), Ast::Attrs { .. }));
        assert!(parse("{ a, a }: a", 0).unwrap_err().message.contains("duplicate formal"));
    }

    #[test]
    fn indentation_is_stripped() {
        assert_eq!(p("''\n  a\n    b\n  ''"), Ast::Str(vec![StrPart::Literal("a\n  b\n".into())]));
        assert_eq!(p("'' a''"), Ast::Str(vec![StrPart::Literal("a".into())]));
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = parse("{ a = 1 }", 0).unwrap_err();
        assert_eq!(e.offset, 8);
        assert!(e.message.contains("unexpected '}', expecting ';'"), "{}", e.message);
        let e = parse("(1", 0).unwrap_err();
        assert!(e.message.contains("end of file"), "{}", e.message);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        // Parsing recurses once per level; give it the evaluator's stack size.
        let parsed = std::thread::Builder::new()
            .stack_size(crate::EVAL_STACK_SIZE)
            .spawn(|| {
                let brackets = parse(&"[".repeat(100_000), 0).unwrap_err();
                let parens = parse(&format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)), 0).unwrap_err();
                (brackets.message, parens.message)
            })
            .expect("spawn parser thread")
            .join()
            .expect("parser thread did not panic");
        assert!(parsed.0.contains("nested too deeply"), "{}", parsed.0);
        assert!(parsed.1.contains("nested too deeply"), "{}", parsed.1);
    }
}
