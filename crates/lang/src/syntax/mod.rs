//! Turning source text into an [`ast::Ast`]: a `nom`-based tokenizer
//! ([`lexer`]) and a precedence-climbing parser ([`parser`]) with Nix's
//! operator table. No evaluation or name resolution happens here.

pub mod ast;
pub mod lexer;
pub mod parser;

pub use parser::parse;

/// A syntax error at a byte offset of the parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}
