//! Evaluation errors. Each carries a kind (which decides whether `tryEval`
//! may catch it), a message in Nix's words, the span it happened at, and a
//! short trace of where the failing value was demanded.

use crate::source_map::{SourceMap, Span};
use crate::syntax::SyntaxError;

pub type EvalResult<T> = Result<T, Box<EvalError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Syntax,
    UndefinedVariable,
    /// `throw`; catchable by `tryEval`.
    Throw,
    /// A failed `assert`; catchable by `tryEval`.
    Assertion,
    /// `abort`; never caught.
    Abort,
    Type,
    MissingAttribute,
    InfiniteRecursion,
    StackOverflow,
    DivisionByZero,
    Io,
    /// Anything else Nix reports as a plain evaluation error.
    Eval,
}

/// A frame of the "while evaluating …" trace.
#[derive(Debug, Clone)]
pub struct TraceFrame {
    pub span: Span,
    pub what: String,
}

#[derive(Debug, Clone)]
pub struct EvalError {
    pub kind: ErrorKind,
    pub message: String,
    pub span: Option<Span>,
    pub trace: Vec<TraceFrame>,
}

/// How many trace frames an error keeps: enough to see where a value was
/// demanded, short enough to read.
const MAX_TRACE: usize = 8;

impl EvalError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, span: Option<Span>) -> Box<EvalError> {
        Box::new(EvalError { kind, message: message.into(), span, trace: Vec::new() })
    }

    pub fn at(kind: ErrorKind, message: impl Into<String>, span: Span) -> Box<EvalError> {
        EvalError::new(kind, message, Some(span))
    }

    pub fn type_error(message: impl Into<String>, span: Span) -> Box<EvalError> {
        EvalError::at(ErrorKind::Type, message, span)
    }

    pub fn syntax(error: SyntaxError, file: u32) -> Box<EvalError> {
        let span = Span::new(file, error.offset, error.offset);
        EvalError::at(ErrorKind::Syntax, error.message, span)
    }

    /// Whether `builtins.tryEval` turns this error into `{ success = false; }`.
    pub fn is_catchable(&self) -> bool {
        matches!(self.kind, ErrorKind::Throw | ErrorKind::Assertion)
    }

    /// Records that the error happened while evaluating `what` at `span`.
    pub fn add_trace(&mut self, span: Span, what: impl FnOnce() -> String) {
        if self.span.is_none() {
            self.span = Some(span);
        } else if self.trace.len() < MAX_TRACE {
            self.trace.push(TraceFrame { span, what: what() });
        }
    }

    /// Renders the error as the CLI prints it: message, location with the
    /// source line and a caret, then the trace.
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = format!("error: {}\n", self.message);
        if let Some(span) = self.span.filter(|s| sources.is_known(*s)) {
            let loc = sources.locate(span);
            out.push_str(&format!("\n       at {loc}:\n\n"));
            let gutter = loc.line.to_string();
            let (shown, column) = excerpt(&loc.line_text, loc.column);
            out.push_str(&format!("       {gutter}| {shown}\n"));
            let caret_pad: String =
                shown.chars().take(column - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            out.push_str(&format!("       {}| {caret_pad}^\n", " ".repeat(gutter.len())));
        }
        for frame in &self.trace {
            if sources.is_known(frame.span) {
                out.push_str(&format!("\n       … {} at {}\n", frame.what, sources.locate(frame.span)));
            } else {
                out.push_str(&format!("\n       … {}\n", frame.what));
            }
        }
        out
    }
}

/// At most this many characters of a source line are shown.
const MAX_SHOWN: usize = 120;

/// The part of a long line around `column` (1-based), with `…` where it is
/// cut, and the column within that part.
fn excerpt(line: &str, column: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_SHOWN {
        return (line.to_string(), column);
    }
    let start = column.saturating_sub(MAX_SHOWN / 2).min(chars.len() - MAX_SHOWN);
    let mut shown: String = chars[start..start + MAX_SHOWN].iter().collect();
    let mut column = column - start;
    if start > 0 {
        shown.insert(0, '…');
        column += 1;
    }
    if start + MAX_SHOWN < chars.len() {
        shown.push('…');
    }
    (shown, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_around_the_error() {
        let line = "x".repeat(1000);
        let (shown, column) = excerpt(&line, 500);
        assert_eq!(shown.chars().count(), MAX_SHOWN + 2);
        assert_eq!(shown.chars().nth(column - 1), Some('x'));
        assert_eq!(excerpt("short", 3), ("short".to_string(), 3));
        let (shown, column) = excerpt(&line, 1);
        assert_eq!((column, shown.starts_with('x')), (1, true));
    }
}
