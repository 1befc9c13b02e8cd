//! deb822, the text of Debian's control data: paragraphs of `Name: value`
//! fields, a value continuing on lines that start with a space or a tab,
//! paragraphs separated by blank lines. A `.deb`'s `control` file is one
//! paragraph ([`Paragraph::parse`]); apt's package records are many
//! ([`parse_all`]). Both come from outside, so anything not of this shape
//! is an error with its line, never a guess. [`Paragraph::render`] writes
//! a paragraph back as dpkg's status file holds it, fields in their
//! original order. Pure: no I/O.

use thiserror::Error;

/// Why a text is not deb822 (or, for a control file, not one paragraph).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Deb822Error {
    /// The text is not UTF-8.
    #[error("the text is not UTF-8")]
    NotUtf8,
    /// A line is neither `Name: value` nor a continuation.
    #[error("line {line} is neither 'Field: value' nor a continuation line: '{text}'")]
    BadLine { line: usize, text: String },
    /// A continuation line comes before any field.
    #[error("line {line} continues a field, but no field comes before it")]
    OrphanContinuation { line: usize },
    /// A field is given twice in one paragraph.
    #[error("the field '{0}' is given twice in one paragraph")]
    Duplicate(String),
    /// More than one paragraph where one was expected.
    #[error("more than one paragraph where one was expected (a second one starts at line {0})")]
    SecondParagraph(usize),
    /// No field at all.
    #[error("there is no field at all")]
    Empty,
}

/// One deb822 paragraph: its fields, in the order they were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<Field>,
}

/// One field of a [`Paragraph`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field's name, as written (`Package`).
    pub name: String,
    /// The value: the first line's text after the colon, trimmed, then each
    /// continuation line after a `\n`, verbatim (its leading space kept).
    pub value: String,
}

impl Paragraph {
    /// Parses the one paragraph of a control file. Blank lines before and
    /// after it are allowed; a second paragraph is an error.
    pub fn parse(bytes: &[u8]) -> Result<Paragraph, Deb822Error> {
        let text = std::str::from_utf8(bytes).map_err(|_| Deb822Error::NotUtf8)?;
        let mut paragraphs = paragraphs(text)?.into_iter();
        match (paragraphs.next(), paragraphs.next()) {
            (None, _) => Err(Deb822Error::Empty),
            (Some((_, first)), None) => Ok(first),
            (Some(_), Some((line, _))) => Err(Deb822Error::SecondParagraph(line)),
        }
    }

    /// The fields, in their original order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The value of the field `name` (compared without case, as dpkg does).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)).map(|f| f.value.as_str())
    }

    /// The paragraph as text, one field per line (continuations kept), with
    /// `extra` fields inserted right after the field named `after`; ends
    /// with a newline, no blank line.
    pub fn render_with(&self, after: &str, extra: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for field in &self.fields {
            render_field(&mut out, &field.name, &field.value);
            if field.name.eq_ignore_ascii_case(after) {
                for (name, value) in extra {
                    render_field(&mut out, name, value);
                }
            }
        }
        out
    }

    /// The paragraph as text, as [`Paragraph::render_with`] with nothing inserted.
    pub fn render(&self) -> String {
        self.render_with("", &[])
    }
}

/// The paragraphs of `text`, in order (apt's package records).
pub fn parse_all(text: &str) -> Result<Vec<Paragraph>, Deb822Error> {
    Ok(paragraphs(text)?.into_iter().map(|(_, paragraph)| paragraph).collect())
}

/// Each paragraph of `text` with the number of its first line.
fn paragraphs(text: &str) -> Result<Vec<(usize, Paragraph)>, Deb822Error> {
    let mut done = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    let mut first_line = 0;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            if !fields.is_empty() {
                done.push((first_line, Paragraph { fields: std::mem::take(&mut fields) }));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let field = fields.last_mut().ok_or(Deb822Error::OrphanContinuation { line: number })?;
            field.value.push('\n');
            field.value.push_str(line.trim_end());
            continue;
        }
        let bad = || Deb822Error::BadLine { line: number, text: crate::deb::shown(line) };
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        if !is_field_name(name) {
            return Err(bad());
        }
        if fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
            return Err(Deb822Error::Duplicate(name.to_string()));
        }
        if fields.is_empty() {
            first_line = number;
        }
        fields.push(Field { name: name.to_string(), value: value.trim().to_string() });
    }
    if !fields.is_empty() {
        done.push((first_line, Paragraph { fields }));
    }
    Ok(done)
}

fn render_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    if !value.is_empty() && !value.starts_with('\n') {
        out.push(' ');
    }
    out.push_str(value);
    out.push('\n');
}

/// Whether `name` may name a field: printable ASCII without spaces or a
/// colon, not starting with `#` or `-` (deb822).
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(['#', '-']) && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROL: &str = "Package: make\nVersion: 4.3-4.1\nArchitecture: amd64\nDepends: libc6 (>= 2.34)\n\
        Conffiles:\n /etc/x 0123\nDescription: utility for directing compilation\n GNU Make is a utility.\n .\n \
        It can be used.\n";

    #[test]
    fn fields_keep_their_order_and_continuations() {
        let p = Paragraph::parse(CONTROL.as_bytes()).unwrap();
        let names: Vec<&str> = p.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Package", "Version", "Architecture", "Depends", "Conffiles", "Description"]);
        assert_eq!(p.get("package"), Some("make"));
        assert_eq!(p.get("Conffiles"), Some("\n /etc/x 0123"));
        assert_eq!(
            p.get("Description"),
            Some("utility for directing compilation\n GNU Make is a utility.\n .\n It can be used.")
        );
        assert_eq!(p.get("Missing"), None);
        assert_eq!(p.render(), CONTROL);
    }

    #[test]
    fn many_paragraphs_as_apt_prints_them() {
        let text = "Package: make\nVersion: 4.3-4.1\nDescription: utility\n a second line\n .\n\n\n\
                    Package: libc6\nDepends: libgcc-s1\n";
        let paragraphs = parse_all(text).unwrap();
        assert_eq!(paragraphs.len(), 2);
        assert_eq!(paragraphs[0].get("Package"), Some("make"));
        assert_eq!(paragraphs[0].get("Description"), Some("utility\n a second line\n ."));
        assert_eq!(paragraphs[1].get("Depends"), Some("libgcc-s1"));
        assert!(parse_all("").unwrap().is_empty());
        assert_eq!(parse_all("Package: a\nno colon\n"), Err(Deb822Error::BadLine { line: 2, text: "no colon".into() }));
        assert_eq!(parse_all("Package: a\nPackage: b\n"), Err(Deb822Error::Duplicate("Package".into())));
    }

    #[test]
    fn rendering_inserts_fields_after_the_one_named() {
        let p = Paragraph::parse(b"Package: a\nVersion: 1\n").unwrap();
        assert_eq!(
            p.render_with("Package", &[("Status", "install ok installed")]),
            "Package: a\nStatus: install ok installed\nVersion: 1\n"
        );
    }

    #[test]
    fn blank_lines_around_the_paragraph_and_spaces_at_line_ends_are_fine() {
        let p = Paragraph::parse(b"\n\nPackage:   a  \nVersion:1\t\n\n\n").unwrap();
        assert_eq!(p.render(), "Package: a\nVersion: 1\n");
    }

    #[test]
    fn malformed_paragraphs_are_refused_with_the_line() {
        for (text, expected) in [
            (&b""[..], Deb822Error::Empty),
            (b"\n \n", Deb822Error::Empty),
            (b" continued\n", Deb822Error::OrphanContinuation { line: 1 }),
            (b"Package: a\nno colon here\n", Deb822Error::BadLine { line: 2, text: "no colon here".into() }),
            (b"Package: a\n: empty name\n", Deb822Error::BadLine { line: 2, text: ": empty name".into() }),
            (b"Pack age: a\n", Deb822Error::BadLine { line: 1, text: "Pack age: a".into() }),
            (b"#Package: a\n", Deb822Error::BadLine { line: 1, text: "#Package: a".into() }),
            (b"Package: a\npackage: b\n", Deb822Error::Duplicate("package".into())),
            (b"Package: a\n\nPackage: b\n", Deb822Error::SecondParagraph(3)),
            (b"Package: \xff\n", Deb822Error::NotUtf8),
        ] {
            assert_eq!(Paragraph::parse(text), Err(expected), "{}", String::from_utf8_lossy(text));
        }
    }
}
