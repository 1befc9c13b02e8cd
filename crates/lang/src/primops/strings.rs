//! String builtins: coercion, slicing, replacement, POSIX-style regular
//! expressions (`match`, `split`), version strings and hashing.

use std::cmp::Ordering;
use std::rc::Rc;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::lists::strings_of;
use super::{attrs_of, int, list, string};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source_map::Span;
use crate::string::NixStr;
use crate::value::{Thunk, Value};

fn coerce(ev: &mut Evaluator, t: &Thunk, span: Span, copy_to_store: bool) -> EvalResult<NixStr> {
    let v = ev.force(t)?;
    ev.coerce_to_string(&v, span, false, copy_to_store)
}

pub fn to_string(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let v = ev.force(&args[0])?;
    Ok(Value::String(ev.coerce_to_string(&v, span, true, false)?))
}

pub fn string_length(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    Ok(Value::Int(coerce(ev, &args[0], span, true)?.len() as i64))
}

/// Byte-based, as in Nix; a cut inside a UTF-8 sequence is repaired lossily.
pub fn substring(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let start = int(ev, &args[0], span)?;
    let len = int(ev, &args[1], span)?;
    let s = coerce(ev, &args[2], span, true)?;
    if start < 0 {
        return Err(EvalError::at(ErrorKind::Eval, "negative start position in 'substring'", span));
    }
    let bytes = s.as_bytes();
    let start = (start as usize).min(bytes.len());
    let end = if len < 0 { bytes.len() } else { start.saturating_add(len as usize).min(bytes.len()) };
    let text = String::from_utf8_lossy(&bytes[start..end]).into_owned();
    Ok(Value::String(NixStr::with_context(text, s.context().to_vec())))
}

pub fn concat_strings_sep(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let sep = string(ev, &args[0], span)?;
    let items = list(ev, &args[1], span)?;
    let mut out = String::new();
    let mut context = sep.context().to_vec();
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        let item = coerce(ev, t, span, true)?;
        out.push_str(&item);
        context.extend_from_slice(item.context());
    }
    Ok(Value::String(NixStr::with_context(out, context)))
}

pub fn replace_strings(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let from = strings_of(ev, &args[0], span)?;
    let to = strings_of(ev, &args[1], span)?;
    let s = coerce(ev, &args[2], span, true)?;
    if from.len() != to.len() {
        return Err(EvalError::at(
            ErrorKind::Eval,
            "'from' and 'to' arguments to 'replaceStrings' have different lengths",
            span,
        ));
    }
    let bytes = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut p = 0;
    while p <= bytes.len() {
        match from.iter().position(|f| bytes[p..].starts_with(f.as_bytes())) {
            Some(i) => {
                out.extend_from_slice(to[i].as_bytes());
                if from[i].is_empty() {
                    if p < bytes.len() {
                        out.push(bytes[p]);
                    }
                    p += 1;
                } else {
                    p += from[i].len();
                }
            }
            None => {
                if p < bytes.len() {
                    out.push(bytes[p]);
                }
                p += 1;
            }
        }
    }
    let mut context = s.context().to_vec();
    context.extend(to.iter().flat_map(|t| t.context().iter().cloned()));
    Ok(Value::String(NixStr::with_context(String::from_utf8_lossy(&out).into_owned(), context)))
}

/// The part after the last `/`, ignoring one trailing `/`.
pub fn base_name_of(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let s = coerce(ev, &args[0], span, false)?;
    if s.is_empty() {
        return Ok(Value::string(""));
    }
    let mut last = s.len() - 1;
    if s.as_bytes()[last] == b'/' && last > 0 {
        last -= 1;
    }
    let start = s[..=last].rfind('/').map_or(0, |p| p + 1);
    Ok(Value::String(NixStr::with_context(&s[start..=last], s.context().to_vec())))
}

pub fn dir_of(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let v = ev.force(&args[0])?;
    let s = ev.coerce_to_string(&v, span, false, false)?;
    let dir = match s.rfind('/') {
        None => ".",
        Some(0) => "/",
        Some(p) => &s[..p],
    };
    Ok(match v {
        Value::Path(_) => Value::Path(Rc::new(dir.to_string())),
        _ => Value::String(NixStr::with_context(dir, s.context().to_vec())),
    })
}

pub fn hash_string(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let algo = string(ev, &args[0], span)?;
    let s = coerce(ev, &args[1], span, true)?;
    hex_digest(&algo, s.as_bytes(), span)
}

/// `hashFile algo path`: the file's hash, in hex.
pub fn hash_file(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let algo = string(ev, &args[0], span)?;
    let path = super::misc::path_arg(ev, &args[1], span)?;
    let bytes = std::fs::read(ev.on_disk(&path)).map_err(|e| {
        EvalError::at(
            ErrorKind::Io,
            format!("opening file '{}': {}", path.display(), crate::eval::io_message(&e)),
            span,
        )
    })?;
    hex_digest(&algo, &bytes, span)
}

fn hex_digest(algo: &str, bytes: &[u8], span: Span) -> EvalResult<Value> {
    let digest: Vec<u8> = match algo {
        "md5" => Md5::digest(bytes).to_vec(),
        "sha1" => Sha1::digest(bytes).to_vec(),
        "sha256" => Sha256::digest(bytes).to_vec(),
        "sha512" => Sha512::digest(bytes).to_vec(),
        other => return Err(EvalError::at(ErrorKind::Eval, format!("unknown hash algorithm '{other}'"), span)),
    };
    Ok(Value::string(mini_store::encoding::hex(&digest)))
}

/// `toPath s`: `s` made canonical, still a string (as in Nix, despite the name).
pub fn to_path(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let s = coerce(ev, &args[0], span, false)?;
    if !s.starts_with('/') {
        return Err(EvalError::at(ErrorKind::Eval, format!("string '{s}' doesn't represent an absolute path"), span));
    }
    let canonical = crate::compile::canonicalize_lexically(std::path::Path::new(s.as_str()));
    Ok(Value::String(NixStr::with_context(canonical, s.context().to_vec())))
}

fn compile_regex(ev: &mut Evaluator, pattern: &str, anchored: bool, span: Span) -> EvalResult<Rc<regex::Regex>> {
    let key = format!("{}{pattern}", if anchored { "^" } else { "~" });
    if let Some(re) = ev.regex_cache.get(&key) {
        return Ok(re.clone());
    }
    // POSIX ERE lets `.` match a newline, as std::regex does for Nix.
    let source = if anchored { format!("(?s)^(?:{pattern})$") } else { format!("(?s){pattern}") };
    let re = regex::Regex::new(&source)
        .map_err(|_| EvalError::at(ErrorKind::Eval, format!("invalid regular expression '{pattern}'"), span))?;
    let re = Rc::new(re);
    ev.regex_cache.insert(key, re.clone());
    Ok(re)
}

fn groups(caps: &regex::Captures) -> Vec<Thunk> {
    caps.iter().skip(1).map(|g| g.map_or(Value::Null, |m| Value::string(m.as_str())).into()).collect()
}

pub fn regex_match(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let pattern = string(ev, &args[0], span)?;
    let s = coerce(ev, &args[1], span, true)?;
    let re = compile_regex(ev, &pattern, true, span)?;
    Ok(match re.captures(&s) {
        Some(caps) => Value::list(groups(&caps)),
        None => Value::Null,
    })
}

pub fn regex_split(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let pattern = string(ev, &args[0], span)?;
    let s = coerce(ev, &args[1], span, true)?;
    let re = compile_regex(ev, &pattern, false, span)?;
    let mut out = Vec::new();
    let mut last = 0;
    for caps in re.captures_iter(&s) {
        let m = caps.get(0).expect("group 0 always exists");
        out.push(Value::string(&s[last..m.start()]).into());
        out.push(Value::list(groups(&caps)).into());
        last = m.end();
    }
    out.push(Value::string(&s[last..]).into());
    Ok(Value::list(out))
}

/// One component of a version string, as Nix's `nextComponent` cuts them.
fn next_component<'a>(s: &mut &'a str) -> &'a str {
    *s = s.trim_start_matches(['.', '-']);
    let len = if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())
    } else {
        s.find(|c: char| c.is_ascii_digit() || c == '.' || c == '-').unwrap_or(s.len())
    };
    let (head, tail) = s.split_at(len);
    *s = tail;
    head
}

fn component_less(a: &str, b: &str) -> bool {
    let (na, nb) = (a.parse::<i64>().ok(), b.parse::<i64>().ok());
    match (na, nb) {
        (Some(x), Some(y)) => x < y,
        _ if a.is_empty() && nb.is_some() => true,
        _ if a == "pre" && b != "pre" => true,
        _ if b == "pre" => false,
        (_, Some(_)) => true,
        (Some(_), _) => false,
        _ => a < b,
    }
}

pub fn compare_version_strings(a: &str, b: &str) -> Ordering {
    let (mut p, mut q) = (a, b);
    while !p.is_empty() || !q.is_empty() {
        let (c1, c2) = (next_component(&mut p), next_component(&mut q));
        if component_less(c1, c2) {
            return Ordering::Less;
        }
        if component_less(c2, c1) {
            return Ordering::Greater;
        }
    }
    Ordering::Equal
}

pub fn compare_versions(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let a = string(ev, &args[0], span)?;
    let b = string(ev, &args[1], span)?;
    Ok(Value::Int(compare_version_strings(&a, &b) as i64))
}

pub fn split_version(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let v = string(ev, &args[0], span)?;
    let mut rest: &str = &v;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let c = next_component(&mut rest);
        if c.is_empty() {
            break;
        }
        out.push(Value::string(c).into());
    }
    Ok(Value::list(out))
}

pub fn parse_drv_name(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let s = coerce(ev, &args[0], span, true)?;
    let (name, version) = mini_store::store_path::parse_drv_name(&s);
    Ok(attrs_of(vec![("name", Value::string(name)), ("version", Value::string(version))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_like_nix() {
        assert_eq!(compare_version_strings("1.0", "2.3"), Ordering::Less);
        assert_eq!(compare_version_strings("2.1", "2.3"), Ordering::Less);
        assert_eq!(compare_version_strings("2.3", "2.3"), Ordering::Equal);
        assert_eq!(compare_version_strings("2.5", "2.3"), Ordering::Greater);
        assert_eq!(compare_version_strings("2.3pre1", "2.3"), Ordering::Less);
        assert_eq!(compare_version_strings("2.3a", "2.3.1"), Ordering::Less);
        assert_eq!(compare_version_strings("2.3", "2.3.1"), Ordering::Less);
    }
}
