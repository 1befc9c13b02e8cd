//! The tokenizer. Nix's lexer is modal (plain code, `"…"` strings and `''…''`
//! strings nest through `${…}`) and resolves overlapping rules by longest
//! match, so `a/b` is a path, `x:x` a URI and `if` a keyword. We mirror those
//! rules with small `nom` recognisers and pick the longest, earliest rule.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{digit0, digit1, one_of, satisfy};
use nom::combinator::{opt, recognize};
use nom::multi::{many0_count, many1_count};
use nom::sequence::{pair, tuple};
use nom::IResult;

use super::SyntaxError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Id,
    Int(i64),
    Float(f64),
    Path,
    HomePath,
    SearchPath,
    Uri,
    If,
    Then,
    Else,
    Assert,
    With,
    Let,
    In,
    Rec,
    Inherit,
    OrKw,
    Ellipsis,
    Eq,
    Neq,
    Leq,
    Geq,
    And,
    Or,
    Impl,
    Update,
    Concat,
    Lt,
    Gt,
    Plus,
    Minus,
    Star,
    Slash,
    Not,
    Question,
    Dot,
    Colon,
    Semi,
    Comma,
    At,
    Assign,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    /// `${`, in code (dynamic attribute) or inside a string (interpolation).
    DollarCurly,
    StrOpen,
    StrClose,
    /// Unescaped text of a `"…"` string.
    StrText(String),
    IndOpen,
    IndClose,
    /// One lexer token of `''…''` text; kept separate as Nix does, because
    /// indentation stripping treats the last token specially. The flag is
    /// true for raw text and false for escapes and lone `$`/`'`, which do
    /// not count as indentation.
    IndText(String, bool),
    /// The end of a path with interpolations (`./a/${b}/c`), whose literal
    /// pieces after the first come as [`Token::StrText`].
    PathEnd,
    Eof,
}

impl Token {
    /// How the token is named in "unexpected …" messages.
    pub fn describe(&self, text: &str) -> String {
        match self {
            Token::Eof => "end of file".into(),
            Token::Id => format!("identifier '{text}'"),
            Token::Int(_) | Token::Float(_) => format!("number '{text}'"),
            Token::Path | Token::HomePath | Token::SearchPath => format!("path '{text}'"),
            Token::Uri => format!("URI '{text}'"),
            Token::StrText(_) | Token::IndText(..) => "string text".into(),
            Token::StrOpen | Token::StrClose => "'\"'".into(),
            Token::IndOpen | Token::IndClose => "\"''\"".into(),
            _ => format!("'{text}'"),
        }
    }
}

/// A token and the byte range it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Lexed {
    pub token: Token,
    pub start: usize,
    pub end: usize,
}

enum Mode {
    /// Ordinary code; the count is of `{` opened in this mode, so we know
    /// which `}` closes an interpolation.
    Code(usize),
    Str,
    Ind,
    /// Inside a path with interpolations; true just after a `/`.
    Path(bool),
}

type Res<'a> = IResult<&'a str, &'a str>;

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')
}

fn ident(i: &str) -> Res<'_> {
    recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-')),
    ))(i)
}

fn float(i: &str) -> Res<'_> {
    let mantissa = alt((
        recognize(tuple((satisfy(|c| ('1'..='9').contains(&c)), digit0, tag("."), digit0))),
        recognize(tuple((opt(tag("0")), tag("."), digit1))),
    ));
    recognize(pair(mantissa, opt(tuple((one_of("eE"), opt(one_of("+-")), digit1)))))(i)
}

fn path_segments(i: &str) -> Res<'_> {
    recognize(many1_count(pair(tag("/"), take_while1(is_path_char))))(i)
}

fn path(i: &str) -> Res<'_> {
    recognize(tuple((take_while(is_path_char), path_segments, opt(tag("/")))))(i)
}

fn home_path(i: &str) -> Res<'_> {
    recognize(tuple((tag("~"), path_segments, opt(tag("/")))))(i)
}

fn search_path(i: &str) -> Res<'_> {
    recognize(tuple((
        tag("<"),
        take_while1(is_path_char),
        many0_count(pair(tag("/"), take_while1(is_path_char))),
        tag(">"),
    )))(i)
}

fn uri(i: &str) -> Res<'_> {
    recognize(tuple((
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')),
        tag(":"),
        take_while1(|c: char| c.is_ascii_alphanumeric() || "%/?:@&=+$,-_.!~*'".contains(c)),
    )))(i)
}

fn matched_len(parser: fn(&str) -> Res<'_>, input: &str) -> usize {
    parser(input).map_or(0, |(_, m)| m.len())
}

const KEYWORDS: [(&str, Token); 10] = [
    ("if", Token::If),
    ("then", Token::Then),
    ("else", Token::Else),
    ("assert", Token::Assert),
    ("with", Token::With),
    ("let", Token::Let),
    ("in", Token::In),
    ("rec", Token::Rec),
    ("inherit", Token::Inherit),
    ("or", Token::OrKw),
];

const OPERATORS: [(&str, Token); 33] = [
    ("...", Token::Ellipsis),
    ("==", Token::Eq),
    ("!=", Token::Neq),
    ("<=", Token::Leq),
    (">=", Token::Geq),
    ("&&", Token::And),
    ("||", Token::Or),
    ("->", Token::Impl),
    ("//", Token::Update),
    ("++", Token::Concat),
    ("${", Token::DollarCurly),
    ("<", Token::Lt),
    (">", Token::Gt),
    ("+", Token::Plus),
    ("-", Token::Minus),
    ("*", Token::Star),
    ("/", Token::Slash),
    ("!", Token::Not),
    ("?", Token::Question),
    (".", Token::Dot),
    (":", Token::Colon),
    (";", Token::Semi),
    (",", Token::Comma),
    ("@", Token::At),
    ("=", Token::Assign),
    ("{", Token::LBrace),
    ("}", Token::RBrace),
    ("[", Token::LBracket),
    ("]", Token::RBracket),
    ("(", Token::LParen),
    (")", Token::RParen),
    ("\"", Token::StrOpen),
    ("''", Token::IndOpen),
];

/// Splits `src` into tokens, ending with [`Token::Eof`].
pub fn tokenize(src: &str) -> Result<Vec<Lexed>, SyntaxError> {
    let mut lexer = Lexer { src, pos: 0, modes: vec![Mode::Code(0)], out: Vec::new() };
    lexer.run()?;
    Ok(lexer.out)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    modes: Vec<Mode>,
    out: Vec<Lexed>,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn push(&mut self, token: Token, len: usize) {
        self.out.push(Lexed { token, start: self.pos, end: self.pos + len });
        self.pos += len;
    }

    fn error(&self, at: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError { offset: at, message: message.into() }
    }

    fn run(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.modes.last() {
                Some(Mode::Code(_)) | None => {
                    if !self.code_token()? {
                        self.out.push(Lexed { token: Token::Eof, start: self.pos, end: self.pos });
                        return Ok(());
                    }
                }
                Some(Mode::Str) => self.string_token()?,
                Some(Mode::Ind) => self.ind_token()?,
                Some(Mode::Path(slash)) => self.path_token(*slash)?,
            }
        }
    }

    /// Skips blanks and comments; false at the end of input.
    fn skip_trivia(&mut self) -> Result<bool, SyntaxError> {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
            self.pos += rest.len() - trimmed.len();
            let rest = self.rest();
            if rest.starts_with('#') {
                self.pos += rest.find(['\r', '\n']).unwrap_or(rest.len());
            } else if let Some(body) = rest.strip_prefix("/*") {
                match body.find("*/") {
                    Some(n) => self.pos += n + 4,
                    None => return Err(self.error(self.pos, "unterminated comment")),
                }
            } else {
                return Ok(!rest.is_empty());
            }
        }
    }

    fn code_token(&mut self) -> Result<bool, SyntaxError> {
        if !self.skip_trivia()? {
            return Ok(false);
        }
        let rest = self.rest();
        let start = self.pos;

        // Word-like rules overlap; flex takes the longest, then the earliest.
        let id = matched_len(ident, rest);
        let int = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let candidates = [
            (id, 0),
            (int, 1),
            (matched_len(float, rest), 2),
            (matched_len(path, rest), 3),
            (matched_len(home_path, rest), 4),
            (matched_len(search_path, rest), 5),
            (matched_len(uri, rest), 6),
        ];
        let (best_len, rule) =
            candidates.iter().fold((0, 0), |best, &(len, rule)| if len > best.0 { (len, rule) } else { best });
        let op = OPERATORS.iter().find(|(text, _)| rest.starts_with(text));
        let op_len = op.map_or(0, |(text, _)| text.len());

        // `dir/${…}` and `~/${…}` start a path with interpolations, as does
        // any path followed directly by `${`.
        let segment = rest.len() - rest.trim_start_matches(is_path_char).len();
        if rest[segment..].starts_with("/${") || rest.starts_with("~/${") {
            let len = if rest.starts_with('~') { 2 } else { segment + 1 };
            self.push(if rest.starts_with('~') { Token::HomePath } else { Token::Path }, len);
            self.modes.push(Mode::Path(true));
            return Ok(true);
        }
        if best_len > 0 && best_len >= op_len {
            let text = &rest[..best_len];
            if (rule == 3 || rule == 4) && rest[best_len..].starts_with("${") {
                self.push(if rule == 3 { Token::Path } else { Token::HomePath }, best_len);
                self.modes.push(Mode::Path(text.ends_with('/')));
                return Ok(true);
            }
            if (rule == 3 || rule == 4) && text.ends_with('/') {
                return Err(self.error(start, format!("path '{text}' has a trailing slash")));
            }
            let token = match rule {
                0 => KEYWORDS.iter().find(|(k, _)| *k == text).map_or(Token::Id, |(_, t)| t.clone()),
                1 => Token::Int(text.parse().map_err(|_| self.error(start, format!("invalid integer '{text}'")))?),
                2 => Token::Float(text.parse().map_err(|_| self.error(start, format!("invalid float '{text}'")))?),
                3 => Token::Path,
                4 => Token::HomePath,
                5 => Token::SearchPath,
                _ => Token::Uri,
            };
            self.push(token, best_len);
            return Ok(true);
        }
        let Some((text, token)) = op else {
            let c = rest.chars().next().unwrap_or(' ');
            return Err(self.error(start, format!("syntax error, unexpected character '{}'", c.escape_default())));
        };
        match token {
            Token::LBrace => {
                if let Some(Mode::Code(depth)) = self.modes.last_mut() {
                    *depth += 1;
                }
            }
            Token::DollarCurly => self.modes.push(Mode::Code(0)),
            Token::RBrace => {
                let nested = self.modes.len() > 1;
                match self.modes.last_mut() {
                    Some(Mode::Code(depth)) if *depth > 0 => *depth -= 1,
                    _ if nested => {
                        self.modes.pop();
                    }
                    _ => {}
                }
            }
            Token::StrOpen => self.modes.push(Mode::Str),
            Token::IndOpen => {
                self.modes.push(Mode::Ind);
                // `''` swallows trailing spaces and one newline, as Nix's lexer does.
                let after = &rest[2..];
                let spaces = after.len() - after.trim_start_matches(' ').len();
                let len = if after[spaces..].starts_with('\n') { 2 + spaces + 1 } else { 2 };
                self.push(Token::IndOpen, len);
                return Ok(true);
            }
            _ => {}
        }
        self.push(token.clone(), text.len());
        Ok(true)
    }

    /// The pieces of a path after its first `${…}`: interpolations, literal
    /// path text, and [`Token::PathEnd`] at the first other character.
    fn path_token(&mut self, slash: bool) -> Result<(), SyntaxError> {
        let rest = self.rest();
        if rest.starts_with("${") {
            *self.modes.last_mut().expect("in path mode") = Mode::Path(false);
            self.modes.push(Mode::Code(0));
            self.push(Token::DollarCurly, 2);
            return Ok(());
        }
        // Nix's `{PATH}|{PATH_SEG}|{PATH_CHAR}+`, longest first.
        let chars = rest.len() - rest.trim_start_matches(is_path_char).len();
        let segment = if rest[chars..].starts_with('/') { chars + 1 } else { 0 };
        let len = matched_len(path, rest).max(chars).max(segment);
        if len > 0 {
            let text = rest[..len].to_string();
            *self.modes.last_mut().expect("in path mode") = Mode::Path(text.ends_with('/'));
            self.push(Token::StrText(text), len);
            return Ok(());
        }
        if slash {
            return Err(self.error(self.pos, "path has a trailing slash"));
        }
        self.modes.pop();
        self.out.push(Lexed { token: Token::PathEnd, start: self.pos, end: self.pos });
        Ok(())
    }

    fn string_token(&mut self) -> Result<(), SyntaxError> {
        let rest = self.rest();
        let mut text = String::new();
        let mut chars = rest.char_indices().peekable();
        let mut len = 0;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' if i == 0 => {
                    self.modes.pop();
                    self.push(Token::StrClose, 1);
                    return Ok(());
                }
                '"' => break,
                '$' if rest[i + 1..].starts_with('{') => {
                    if i == 0 {
                        self.modes.push(Mode::Code(0));
                        self.push(Token::DollarCurly, 2);
                        return Ok(());
                    }
                    break;
                }
                '$' if rest[i + 1..].starts_with('$') => {
                    text.push_str("$$");
                    chars.next();
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => text.push('\n'),
                    Some((_, 'r')) => text.push('\r'),
                    Some((_, 't')) => text.push('\t'),
                    Some((_, other)) => text.push(other),
                    None => text.push('\\'),
                },
                other => text.push(other),
            }
            len = chars.peek().map_or(rest.len(), |&(j, _)| j);
        }
        if len == 0 {
            return Err(self.error(self.pos, "syntax error, unterminated string"));
        }
        self.push(Token::StrText(text), len);
        Ok(())
    }

    fn ind_token(&mut self) -> Result<(), SyntaxError> {
        let rest = self.rest();
        if rest.is_empty() {
            return Err(self.error(self.pos, "syntax error, unterminated indented string"));
        }
        if rest.starts_with("${") {
            self.modes.push(Mode::Code(0));
            self.push(Token::DollarCurly, 2);
            return Ok(());
        }
        if let Some(escaped) = rest.strip_prefix("''\\") {
            let c = escaped
                .chars()
                .next()
                .ok_or_else(|| self.error(self.pos, "syntax error, unterminated indented string"))?;
            let text = match c {
                'n' => "\n".to_string(),
                'r' => "\r".to_string(),
                't' => "\t".to_string(),
                other => other.to_string(),
            };
            self.push(Token::IndText(text, false), 3 + c.len_utf8());
            return Ok(());
        }
        if rest.starts_with("'''") {
            self.push(Token::IndText("''".into(), false), 3);
            return Ok(());
        }
        if rest.starts_with("''$") {
            self.push(Token::IndText("$".into(), false), 3);
            return Ok(());
        }
        if rest.starts_with("''") {
            self.modes.pop();
            self.push(Token::IndClose, 2);
            return Ok(());
        }
        // Plain text: anything but `$` and `'`, or `$`/`'` not starting a special sequence.
        let bytes = rest.as_bytes();
        let mut len = 0;
        while len < bytes.len() {
            match bytes[len] {
                b'$' if len + 1 < bytes.len() && !matches!(bytes[len + 1], b'{' | b'\'') => len += 2,
                b'\'' if len + 1 < bytes.len() && !matches!(bytes[len + 1], b'\'' | b'$') => len += 2,
                b'$' | b'\'' => break,
                _ => len += 1,
            }
        }
        // Keep the cut on a character boundary (the byte after `$`/`'` may start a multi-byte char).
        while !rest.is_char_boundary(len) {
            len += 1;
        }
        if len == 0 {
            // A lone `$` or `'`.
            self.push(Token::IndText(rest[..1].to_string(), false), 1);
            return Ok(());
        }
        self.push(Token::IndText(rest[..len].to_string(), true), len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Token> {
        tokenize(src).unwrap().into_iter().map(|l| l.token).collect()
    }

    #[test]
    fn longest_match_decides_paths_uris_and_keywords() {
        assert_eq!(kinds("a/b"), vec![Token::Path, Token::Eof]);
        assert_eq!(kinds("x:x"), vec![Token::Uri, Token::Eof]);
        assert_eq!(kinds("x: x"), vec![Token::Id, Token::Colon, Token::Id, Token::Eof]);
        assert_eq!(kinds("if iff"), vec![Token::If, Token::Id, Token::Eof]);
        assert_eq!(kinds("1.5 .5 1."), vec![Token::Float(1.5), Token::Float(0.5), Token::Float(1.0), Token::Eof]);
        assert_eq!(kinds("a//b"), vec![Token::Id, Token::Update, Token::Id, Token::Eof]);
        assert_eq!(kinds("<nixpkgs/lib>"), vec![Token::SearchPath, Token::Eof]);
        assert_eq!(kinds("~/a ./a"), vec![Token::HomePath, Token::Path, Token::Eof]);
    }

    #[test]
    fn strings_nest_through_interpolation() {
        let toks = kinds(r#""a${ { b = "c"; }.b }\n""#);
        assert_eq!(toks[0], Token::StrOpen);
        assert_eq!(toks[1], Token::StrText("a".into()));
        assert_eq!(toks[2], Token::DollarCurly);
        assert_eq!(toks.last(), Some(&Token::Eof));
        assert!(toks.contains(&Token::StrText("\n".into())));
    }

    #[test]
    fn indented_string_escapes() {
        let toks = kinds("''\n  a''$ ''' ''\\n''");
        assert_eq!(
            toks,
            vec![
                Token::IndOpen,
                Token::IndText("  a".into(), true),
                Token::IndText("$".into(), false),
                Token::IndText(" ".into(), true),
                Token::IndText("''".into(), false),
                Token::IndText(" ".into(), true),
                Token::IndText("\n".into(), false),
                Token::IndClose,
                Token::Eof
            ]
        );
    }

    #[test]
    fn reports_errors_with_offsets() {
        assert_eq!(tokenize("1 /* x").unwrap_err().offset, 2);
        assert!(tokenize("99999999999999999999").unwrap_err().message.contains("invalid integer"));
        assert!(tokenize("\"abc").is_err());
    }
}
