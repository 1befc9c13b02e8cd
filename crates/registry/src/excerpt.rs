//! What a registry says, made fit to print. Error bodies, challenge realms
//! and the like come from the server, which may be hostile: they can hold
//! terminal escapes, text that reorders itself (bidirectional overrides),
//! megabytes of noise, or tokens that must not land in a CI log. Messages
//! quote them only through [`excerpt`]: the `errors` of an OCI error
//! document, else the text; control and invisible formatting characters
//! dropped, whitespace collapsed, anything shaped like a secret replaced,
//! and at most [`MAX_EXCERPT`] bytes. Pure.

/// The most bytes of server text a message quotes.
pub const MAX_EXCERPT: usize = 500;

/// Runs of token characters at least this long that mix letters and
/// digits are taken for secrets (tokens, keys, JWTs); hex runs (digests)
/// are kept.
const SECRET_LEN: usize = 32;

const REDACTED: &str = "[redacted]";

/// A printable, bounded excerpt of a server's answer `body`.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = oci_errors(&text).unwrap_or_else(|| text.into_owned());
    truncate(&redact(&printable(&text)), MAX_EXCERPT)
}

/// `CODE: message` for each error of an OCI distribution error document
/// (`{"errors":[{"code","message","detail"}]}`), leaving out `detail`,
/// which is free-form.
fn oci_errors(text: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(text).ok()?;
    let errors = doc.get("errors")?.as_array()?;
    let parts: Vec<String> = errors
        .iter()
        .filter_map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
            match (code.is_empty(), message.is_empty()) {
                (true, true) => None,
                (false, true) => Some(code.to_string()),
                (true, false) => Some(message.to_string()),
                (false, false) => Some(format!("{code}: {message}")),
            }
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Characters that draw nothing or move the text: C0/C1 controls,
/// bidirectional embeddings, overrides and isolates, zero-width and other
/// invisible format characters.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// `text` without hidden characters, each whitespace run made one space.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4 * MAX_EXCERPT));
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else if !is_hidden(c) {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
        // Enough is kept to fill an excerpt after redaction.
        if out.len() > 8 * MAX_EXCERPT {
            break;
        }
    }
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

/// Replaces what looks like a secret: the word after `Bearer` or `Basic`,
/// and long runs of token characters mixing letters and digits.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_scheme = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !is_token_char(c) {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            after_scheme &= c == ' ' || c == '"' || c == '\'';
            continue;
        }
        let end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        let word = &rest[..end];
        let secret = after_scheme || looks_secret(word);
        out.push_str(if secret { REDACTED } else { word });
        after_scheme = word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("basic");
        rest = &rest[end..];
    }
    out
}

fn looks_secret(word: &str) -> bool {
    word.len() >= SECRET_LEN
        && word.bytes().any(|b| b.is_ascii_digit())
        && word.bytes().any(|b| b.is_ascii_alphabetic())
        && !word.bytes().all(|b| b.is_ascii_hexdigit())
}

/// At most `max` bytes of `text`, cut at a character boundary and marked.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mark = "…";
    let mut end = max - mark.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{mark}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_error_documents_give_their_codes_and_messages() {
        let body = br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":{"x":"y"}}]}"#;
        assert_eq!(excerpt(body), "DENIED: requested access to the resource is denied");
        assert_eq!(excerpt(b"  plain\n\ttext  "), "plain text");
        assert_eq!(excerpt(br#"{"other":1}"#), r#"{"other":1}"#);
    }

    #[test]
    fn hostile_text_is_stripped_redacted_and_bounded() {
        let body = "\u{1b}]0;owned\u{7}\u{1b}[2J\rfine\u{202e}txt.exe\u{200b} \u{9b}31m";
        assert_eq!(excerpt(body.as_bytes()), "]0;owned[2J finetxt.exe 31m");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let text = format!("token {jwt} and Bearer abc and basic dXNlcjpwYXNz for sha256:{}", "ab12".repeat(16));
        let out = excerpt(text.as_bytes());
        assert_eq!(
            out,
            format!("token [redacted] and Bearer [redacted] and basic [redacted] for sha256:{}", "ab12".repeat(16))
        );
        let huge = "é".repeat(10_000);
        let out = excerpt(huge.as_bytes());
        assert!(out.len() <= MAX_EXCERPT && out.ends_with('…'), "{}", out.len());
        assert!(excerpt(&[0xff, 0xfe, b'o', b'k']).ends_with("ok"));
    }
}
