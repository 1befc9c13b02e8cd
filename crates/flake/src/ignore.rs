//! `.miniignore`: which files of a flake outside git are not sources. Pure:
//! the rules are parsed from bytes and matched against relative paths.
//!
//! The syntax is a subset of `.gitignore`'s, one pattern per line:
//!
//! - blank lines match nothing; a line starting with `#` is a comment
//!   (`\#` starts a pattern with `#`); trailing spaces are dropped unless
//!   escaped (`\ `);
//! - `name` (no `/` but a trailing one) matches an entry with that name at
//!   any depth; a pattern with a `/` at its start or in its middle is
//!   anchored, matched against the whole path from the flake's directory
//!   (`/build` is only the top-level `build`, `docs/*.html` only those in
//!   the top-level `docs`);
//! - a trailing `/` matches directories only (`target/`);
//! - `*` matches any run of characters except `/`, `?` any one character
//!   except `/`, `[abc]`, `[a-z]` and `[!a-z]` (or `[^a-z]`) one character
//!   from (or not from) a set; `**` as a whole component matches any number
//!   of directories (`**/cache`, `logs/**`, `a/**/b`); `\` makes the next
//!   character literal;
//! - `!pattern` takes back an earlier match (`*.log` then `!keep.log`); as
//!   in git, nothing inside an ignored directory can be taken back, since
//!   the directory is left out whole;
//! - the last matching line decides.
//!
//! A directory whose entries are all ignored is still taken, empty: ignore
//! the directory itself (`logs/`) to leave it out.
//!
//! Only the `.miniignore` at the flake's root is read; it is itself a
//! source unless it ignores itself. Besides what it lists, mini's own
//! files are left out (see [`crate::flake_sources`]): the out-links `mini build`
//! makes (links named `result` or `result-…`) and `.mini/` directories;
//! a `!` rule takes one back. Build directories such as `target/` are
//! yours to list.

use std::ops::Range;

/// The name of the ignore file at a flake's root.
pub(crate) const IGNORE_FILE: &str = ".miniignore";

/// The rules of one ignore file, in order.
#[derive(Debug)]
pub(crate) struct IgnoreRules {
    rules: Vec<Rule>,
}

/// One pattern line.
#[derive(Debug)]
pub(crate) struct Rule {
    /// The glob, without `!`, the leading `/` or the trailing `/`.
    glob: Vec<u8>,
    /// A `!` line: it takes back what earlier lines ignored.
    pub negated: bool,
    dir_only: bool,
    /// Matched against the whole relative path rather than the last name.
    anchored: bool,
    /// 1-based line number, for messages.
    pub line: usize,
    /// The line as written, for messages.
    pub text: String,
}

impl IgnoreRules {
    /// Parses an ignore file's contents. Nothing in one is an error (an
    /// unclosed `[` is a literal `[`, as in git).
    pub fn parse(contents: &[u8]) -> IgnoreRules {
        let rules =
            contents.split(|&b| b == b'\n').enumerate().filter_map(|(i, line)| parse_line(line, i + 1)).collect();
        IgnoreRules { rules }
    }

    /// The rule that ignores `relative` (a `/`-separated path from the
    /// flake's root), or `None` if it is not ignored.
    pub fn ignoring(&self, relative: &[u8], is_dir: bool) -> Option<&Rule> {
        self.deciding(relative, is_dir).filter(|rule| !rule.negated)
    }

    /// The last rule matching `relative`, negated or not: whether the
    /// file says anything about it.
    pub fn deciding(&self, relative: &[u8], is_dir: bool) -> Option<&Rule> {
        let name_start = relative.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        self.rules.iter().rev().find(|rule| {
            (is_dir || !rule.dir_only)
                && glob_matches(&rule.glob, if rule.anchored { relative } else { &relative[name_start..] })
        })
    }
}

fn parse_line(line: &[u8], number: usize) -> Option<Rule> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line).into_owned();
    if line.first() == Some(&b'#') {
        return None;
    }
    let mut pattern = line;
    while let Some(rest) = pattern.strip_suffix(b" ") {
        if rest.ends_with(b"\\") {
            break;
        }
        pattern = rest;
    }
    let negated = pattern.first() == Some(&b'!');
    if negated {
        pattern = &pattern[1..];
    }
    let dir_only = pattern.ends_with(b"/");
    while let Some(rest) = pattern.strip_suffix(b"/") {
        pattern = rest;
    }
    let anchored = pattern.contains(&b'/');
    let pattern = pattern.strip_prefix(b"/").unwrap_or(pattern);
    if pattern.is_empty() {
        return None;
    }
    Some(Rule { glob: pattern.to_vec(), negated, dir_only, anchored, line: number, text })
}

/// Whether `text` matches the glob `pattern` (`/` is only matched by `/`
/// and by `**` components).
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    matches_from(pattern, 0, text, 0)
}

fn matches_from(p: &[u8], mut pi: usize, t: &[u8], mut ti: usize) -> bool {
    while pi < p.len() {
        match p[pi] {
            b'*' => {
                let component_start = pi == 0 || p[pi - 1] == b'/';
                let double = p.get(pi + 1) == Some(&b'*') && component_start;
                if double && pi + 2 == p.len() {
                    return true;
                }
                if double && p[pi + 2] == b'/' {
                    // `**/`: zero or more whole directories.
                    let rest = pi + 3;
                    return matches_from(p, rest, t, ti)
                        || (ti..t.len()).any(|k| t[k] == b'/' && matches_from(p, rest, t, k + 1));
                }
                let mut rest = pi + 1;
                while p.get(rest) == Some(&b'*') {
                    rest += 1;
                }
                for k in ti..=t.len() {
                    if matches_from(p, rest, t, k) {
                        return true;
                    }
                    if k < t.len() && t[k] == b'/' {
                        break;
                    }
                }
                return false;
            }
            b'?' => {
                if ti >= t.len() || t[ti] == b'/' {
                    return false;
                }
                pi += 1;
                ti += 1;
            }
            b'[' => match parse_class(p, pi) {
                Some((class, end)) => {
                    if ti >= t.len() || t[ti] == b'/' || !class.contains(&p[class.body.clone()], t[ti]) {
                        return false;
                    }
                    pi = end;
                    ti += 1;
                }
                None => {
                    if t.get(ti) != Some(&b'[') {
                        return false;
                    }
                    pi += 1;
                    ti += 1;
                }
            },
            c => {
                let (literal, width) = match (c, p.get(pi + 1)) {
                    (b'\\', Some(&next)) => (next, 2),
                    _ => (c, 1),
                };
                if t.get(ti) != Some(&literal) {
                    return false;
                }
                pi += width;
                ti += 1;
            }
        }
    }
    ti == t.len()
}

/// A bracket expression: its body's range in the pattern and whether it is negated.
struct Class {
    body: Range<usize>,
    negated: bool,
}

impl Class {
    fn contains(&self, body: &[u8], c: u8) -> bool {
        let mut i = 0;
        let mut found = false;
        while i < body.len() {
            let (low, width) = escaped(body, i);
            i += width;
            if body.get(i) == Some(&b'-') && i + 1 < body.len() {
                let (high, width) = escaped(body, i + 1);
                i += 1 + width;
                found |= (low..=high).contains(&c);
            } else {
                found |= low == c;
            }
        }
        found != self.negated
    }
}

/// The character at `i` of a bracket body, `\`-escapes resolved, and its width.
fn escaped(body: &[u8], i: usize) -> (u8, usize) {
    match (body[i], body.get(i + 1)) {
        (b'\\', Some(&next)) => (next, 2),
        (c, _) => (c, 1),
    }
}

/// The bracket expression opening at `p[start] == b'['`, and where the
/// pattern continues after it; `None` if it never closes.
fn parse_class(p: &[u8], start: usize) -> Option<(Class, usize)> {
    let mut i = start + 1;
    let negated = matches!(p.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let body_start = i;
    // A `]` right at the start is a member, not the end.
    if p.get(i) == Some(&b']') {
        i += 1;
    }
    while i < p.len() {
        match p[i] {
            b']' => return Some((Class { body: body_start..i, negated }, i + 1)),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignored(rules: &str, path: &str, is_dir: bool) -> bool {
        IgnoreRules::parse(rules.as_bytes()).ignoring(path.as_bytes(), is_dir).is_some()
    }

    #[test]
    fn globs_match_within_components() {
        assert!(glob_matches(b"*.log", b"build.log"));
        assert!(glob_matches(b"*.log", b".log"));
        assert!(!glob_matches(b"*.log", b"a/b.log"));
        assert!(glob_matches(b"a?c", b"abc"));
        assert!(!glob_matches(b"a?c", b"a/c"));
        assert!(glob_matches(b"[ab]x", b"bx"));
        assert!(!glob_matches(b"[!ab]x", b"bx"));
        assert!(glob_matches(b"[^a-c]x", b"dx"));
        assert!(glob_matches(b"[a-c]x", b"cx"));
        assert!(glob_matches(b"[]]", b"]"));
        assert!(glob_matches(b"a[", b"a["));
        assert!(glob_matches(b"\\*", b"*"));
        assert!(!glob_matches(b"\\*", b"x"));
        assert!(glob_matches(b"a*b*c", b"axxbyyc"));
        assert!(!glob_matches(b"a*b*c", b"axxbyy"));
    }

    #[test]
    fn double_stars_cross_directories() {
        assert!(glob_matches(b"**/cache", b"cache"));
        assert!(glob_matches(b"**/cache", b"a/b/cache"));
        assert!(glob_matches(b"logs/**", b"logs/a/b"));
        assert!(glob_matches(b"a/**/b", b"a/b"));
        assert!(glob_matches(b"a/**/b", b"a/x/y/b"));
        assert!(!glob_matches(b"a/**/b", b"a/x/y/c"));
        assert!(glob_matches(b"**", b"any/thing"));
        // Not a whole component: an ordinary `*`.
        assert!(glob_matches(b"a**", b"abc"));
        assert!(!glob_matches(b"a**", b"a/c"));
    }

    #[test]
    fn names_match_at_any_depth_and_slashes_anchor() {
        let rules = "target/\n*.log\n/build\ndocs/*.html\n";
        assert!(ignored(rules, "target", true));
        assert!(ignored(rules, "sub/target", true));
        assert!(!ignored(rules, "target", false), "target/ matches directories only");
        assert!(ignored(rules, "a/b/x.log", false));
        assert!(ignored(rules, "build", false));
        assert!(!ignored(rules, "sub/build", true), "/build is anchored");
        assert!(ignored(rules, "docs/i.html", false));
        assert!(!ignored(rules, "sub/docs/i.html", false), "a middle slash anchors");
        assert!(!ignored(rules, "src/main.rs", false));
    }

    #[test]
    fn comments_blanks_spaces_and_negation() {
        let rules = "# comment\n\n  \n*.log   \n!keep.log\n\\#hash\nsp\\ \n/\n";
        assert!(ignored(rules, "x.log", false));
        assert!(!ignored(rules, "keep.log", false));
        assert!(!ignored(rules, "# comment", false));
        assert!(ignored(rules, "#hash", false));
        assert!(ignored(rules, "sp ", false));
        assert!(!ignored(rules, "sp", false));
        let parsed = IgnoreRules::parse(rules.as_bytes());
        let rule = parsed.ignoring(b"a.log", false).unwrap();
        assert_eq!((rule.line, rule.text.as_str()), (4, "*.log   "));
        assert!(IgnoreRules::parse(b"# only\n\n").rules.is_empty());
    }

    #[test]
    fn the_last_matching_rule_decides() {
        assert!(!ignored("*.log\n!*.log\n", "a.log", false));
        assert!(ignored("!a.log\n*.log\n", "a.log", false));
        assert!(ignored("*\n!*.rs\n*.rs\n", "m.rs", false));
        assert!(ignored("/.miniignore\n", ".miniignore", false));
        let rules = IgnoreRules::parse(b"!result\n");
        assert!(rules.ignoring(b"result", false).is_none());
        assert!(rules.deciding(b"result", false).is_some_and(|r| r.negated), "a take-back decides too");
        assert!(rules.deciding(b"other", false).is_none());
    }
}
