//! The deb822 text apt prints (`apt-cache show`) and `.deb` control files
//! hold: paragraphs of `Field: value` lines, a value going on over lines
//! that start with a space or tab, paragraphs separated by blank lines.
//! The text comes from outside (an archive's package lists), so anything
//! that is not this shape is an error, never a guess. Pure: no I/O here.

use std::collections::BTreeMap;

/// One paragraph: field name → value, continuation lines joined with `\n`.
pub type Paragraph = BTreeMap<String, String>;

/// Why a text is not deb822.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct Deb822Error {
    pub line: usize,
    pub message: String,
}

/// The paragraphs of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, Deb822Error> {
    let mut paragraphs = Vec::new();
    let mut current = Paragraph::new();
    let mut last: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let error = |message: String| Deb822Error { line: i + 1, message };
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            last = None;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let field = last.as_ref().ok_or_else(|| error("a continuation line with no field before it".into()))?;
            let value = current.get_mut(field).ok_or_else(|| error("a continuation line out of place".into()))?;
            value.push('\n');
            value.push_str(line.trim());
            continue;
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| error(format!("expected 'Field: value', got '{line}'")))?;
        let name_ok =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':') && !name.starts_with('#');
        if !name_ok {
            return Err(error(format!("'{name}' is not a field name")));
        }
        if current.insert(name.to_string(), value.trim().to_string()).is_some() {
            return Err(error(format!("the field '{name}' appears twice in one paragraph")));
        }
        last = Some(name.to_string());
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    Ok(paragraphs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_fields_and_continuations() {
        let text = "Package: make\nVersion: 4.3-4.1\nDescription: utility\n a second line\n .\n\n\n\
                    Package: libc6\nDepends: libgcc-s1\n";
        let paragraphs = parse(text).unwrap();
        assert_eq!(paragraphs.len(), 2);
        assert_eq!(paragraphs[0]["Package"], "make");
        assert_eq!(paragraphs[0]["Description"], "utility\na second line\n.");
        assert_eq!(paragraphs[1]["Depends"], "libgcc-s1");
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn what_is_not_deb822_is_an_error_with_its_line() {
        assert_eq!(parse(" continued\n").unwrap_err().line, 1);
        let err = parse("Package: a\nno colon here\n").unwrap_err();
        assert_eq!((err.line, err.message.as_str()), (2, "expected 'Field: value', got 'no colon here'"));
        assert!(parse("Package: a\nPackage: b\n").unwrap_err().message.contains("appears twice"));
        assert!(parse(": value\n").unwrap_err().message.contains("is not a field name"));
    }
}
