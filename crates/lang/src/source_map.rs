//! Source files and byte spans, so every error can say `file:line:col` and show
//! the offending line. The evaluator owns one `SourceMap`; spans are small
//! copyable handles into it.

use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Index of a file in a [`SourceMap`].
pub type FileId = u32;

/// A byte range inside one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start: start as u32, end: end as u32 }
    }

    /// The span covering both `self` and `other` (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// Where an attribute was defined, as a small handle: attribute entries
/// carry one (for `unsafeGetAttrPos`) in space they would otherwise pad.
/// Positions are registered once, when code is compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos(u32);

thread_local! {
    static POSITIONS: std::cell::RefCell<Vec<Span>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Pos {
    /// No known position (attributes made by builtins).
    pub const NONE: Pos = Pos(0);

    pub fn new(span: Span) -> Pos {
        POSITIONS.with(|p| {
            let mut p = p.borrow_mut();
            p.push(span);
            Pos(p.len() as u32)
        })
    }

    pub fn span(self) -> Option<Span> {
        match self.0 {
            0 => None,
            n => POSITIONS.with(|p| p.borrow().get(n as usize - 1).copied()),
        }
    }
}

/// One loaded source text.
pub struct SourceFile {
    /// How the file is named in messages: a path, or `«string»` for `--expr`.
    pub name: String,
    /// The real path, for files; used to resolve relative path literals.
    pub path: Option<PathBuf>,
    pub text: Rc<str>,
    line_starts: Vec<usize>,
}

/// A resolved position, 1-based like every compiler message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The full text of the line the position is on.
    pub line_text: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// All source texts seen during one evaluation. File 0 is a placeholder:
/// [`Span::default()`] (a value made by a builtin, say) points into it,
/// and [`SourceMap::is_known`] says such a span names no place in any source.
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl Default for SourceMap {
    fn default() -> Self {
        let mut map = SourceMap { files: Vec::new() };
        map.add("«unknown»".into(), None, Rc::from(""));
        map
    }
}

impl SourceMap {
    /// Whether `span` is somewhere in a real source (not the placeholder).
    pub fn is_known(&self, span: Span) -> bool {
        span.file != 0
    }

    pub fn add(&mut self, name: String, path: Option<PathBuf>, text: Rc<str>) -> FileId {
        let mut line_starts = vec![0];
        line_starts.extend(text.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i + 1));
        self.files.push(SourceFile { name, path, text, line_starts });
        (self.files.len() - 1) as FileId
    }

    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id as usize]
    }

    /// The directory that relative paths in `id` are resolved against.
    pub fn base_dir(&self, id: FileId) -> Option<&Path> {
        self.file(id).path.as_deref().and_then(Path::parent)
    }

    pub fn locate(&self, span: Span) -> Location {
        let file = self.file(span.file);
        let offset = (span.start as usize).min(file.text.len());
        let line = file.line_starts.partition_point(|&s| s <= offset) - 1;
        let line_start = file.line_starts[line];
        let line_end = file.text[line_start..].find('\n').map_or(file.text.len(), |n| line_start + n);
        let column = file.text[line_start..offset].chars().count() + 1;
        Location {
            file: file.name.clone(),
            line: line + 1,
            column,
            line_text: file.text[line_start..line_end].to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let mut map = SourceMap::default();
        let id = map.add("f.nix".into(), None, Rc::from("a\nbcd\n  e"));
        let loc = map.locate(Span::new(id, 8, 9));
        assert_eq!((loc.line, loc.column, loc.line_text.as_str()), (3, 3, "  e"));
        assert_eq!(loc.to_string(), "f.nix:3:3");
        let loc = map.locate(Span::new(id, 0, 1));
        assert_eq!((loc.line, loc.column), (1, 1));
    }
}
