//! The deb822 paragraph of a binary package's `control` file: `Name: value`
//! fields, a value continuing on lines that start with a space or a tab.
//! Pure (no I/O): [`Paragraph::parse`] reads the text a `.deb` brought,
//! which is untrusted, and [`Paragraph::render`] writes it back as dpkg's
//! status file holds it, fields in their original order.

use thiserror::Error;

/// Why a control paragraph could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ControlError {
    /// The text is not UTF-8.
    #[error("the control file is not UTF-8 text")]
    NotUtf8,
    /// A line is neither `Name: value` nor a continuation.
    #[error("line {line} of the control file is neither 'Field: value' nor a continuation line: '{text}'")]
    BadLine { line: usize, text: String },
    /// A continuation line comes before any field.
    #[error("line {line} of the control file continues a field, but no field comes before it")]
    OrphanContinuation { line: usize },
    /// A field is given twice.
    #[error("the control file gives the field '{0}' twice")]
    Duplicate(String),
    /// More than one paragraph.
    #[error("the control file holds more than one paragraph (a second one starts at line {0})")]
    SecondParagraph(usize),
    /// No field at all.
    #[error("the control file is empty")]
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
    pub fn parse(bytes: &[u8]) -> Result<Paragraph, ControlError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ControlError::NotUtf8)?;
        let mut fields: Vec<Field> = Vec::new();
        let mut ended_at = None;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim().is_empty() {
                if !fields.is_empty() {
                    ended_at.get_or_insert(number);
                }
                continue;
            }
            if ended_at.is_some() {
                return Err(ControlError::SecondParagraph(number));
            }
            if line.starts_with([' ', '\t']) {
                let field = fields.last_mut().ok_or(ControlError::OrphanContinuation { line: number })?;
                field.value.push('\n');
                field.value.push_str(line.trim_end());
                continue;
            }
            let bad = || ControlError::BadLine { line: number, text: crate::deb::shown(line) };
            let (name, value) = line.split_once(':').ok_or_else(bad)?;
            if !is_field_name(name) {
                return Err(bad());
            }
            if fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
                return Err(ControlError::Duplicate(name.to_string()));
            }
            fields.push(Field { name: name.to_string(), value: value.trim().to_string() });
        }
        if fields.is_empty() {
            return Err(ControlError::Empty);
        }
        Ok(Paragraph { fields })
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
            (&b""[..], ControlError::Empty),
            (b"\n \n", ControlError::Empty),
            (b" continued\n", ControlError::OrphanContinuation { line: 1 }),
            (b"Package: a\nno colon here\n", ControlError::BadLine { line: 2, text: "no colon here".into() }),
            (b"Package: a\n: empty name\n", ControlError::BadLine { line: 2, text: ": empty name".into() }),
            (b"Pack age: a\n", ControlError::BadLine { line: 1, text: "Pack age: a".into() }),
            (b"#Package: a\n", ControlError::BadLine { line: 1, text: "#Package: a".into() }),
            (b"Package: a\npackage: b\n", ControlError::Duplicate("package".into())),
            (b"Package: a\n\nPackage: b\n", ControlError::SecondParagraph(3)),
            (b"Package: \xff\n", ControlError::NotUtf8),
        ] {
            assert_eq!(Paragraph::parse(text), Err(expected), "{}", String::from_utf8_lossy(text));
        }
    }
}
