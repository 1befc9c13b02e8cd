//! `fetchurl`, `fetchTarball` and `fetchGit`, with Nix 2.8's arguments and
//! results. The builtins parse and check their arguments, refuse unpinned
//! fetches in pure mode (no hash, no `rev`), and compute a pinned fetch's
//! store path from its hash alone: a path already valid is returned
//! without fetching. The download is the evaluator's [`Fetcher`]'s.
//!
//! [`Fetcher`]: crate::fetch::Fetcher

use std::path::Path;
use std::sync::Arc;

use mini_store::derivation::{fixed_output_path, parse_hash, FixedHash, HashMode};

use super::attrs_of;
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::{store_error, Evaluator};
use crate::fetch::{Fetcher, GitRequest, UrlRequest};
use crate::source_map::Span;
use crate::value::{Thunk, Value};

pub fn fetchurl(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    fetch_url(ev, &args[0], span, "fetchurl")
}

pub fn fetch_tarball(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    fetch_url(ev, &args[0], span, "fetchTarball")
}

/// `fetchurl url`, `fetchurl { url; sha256 ? ; name ? baseNameOf url; }`,
/// and `fetchTarball`'s same forms (its `name` defaulting to `source`).
fn fetch_url(ev: &mut Evaluator, arg: &Thunk, span: Span, builtin: &'static str) -> EvalResult<Value> {
    let unpack = builtin == "fetchTarball";
    let mut fields = Fields::read(ev, arg, span, builtin, &["url", "sha256", "name"])?;
    let url = fields.take("url").ok_or_else(|| error("'url' argument required", span))?;
    let name = match fields.take("name") {
        Some(name) => name,
        None if unpack => "source".to_string(),
        None => url.rsplit('/').next().unwrap_or_default().to_string(),
    };
    let sha256 = match fields.take("sha256") {
        Some(text) => Some(parse_sha256(&text, span)?),
        None if ev.pure => {
            return Err(error(format!("in pure evaluation mode, '{builtin}' requires a 'sha256' argument"), span))
        }
        None => None,
    };
    let store = ev.store(span)?;
    if let Some(digest) = sha256 {
        let mode = if unpack { HashMode::Recursive } else { HashMode::Flat };
        let fixed = FixedHash { algo: "sha256".into(), mode, digest: digest.to_vec() };
        let path = fixed_output_path(&fixed, &name).map_err(|e| store_error(e, span))?;
        if store.hold(&path).map_err(|e| store_error(e, span))? {
            return Ok(ev.made_store_path(&path));
        }
    }
    let fetcher = fetcher(ev, builtin, span)?;
    let request = UrlRequest { url, name, unpack, sha256 };
    let fetched = fetcher.fetch_url(&store, &request).map_err(|message| EvalError::at(ErrorKind::Io, message, span))?;
    Ok(ev.made_store_path(&fetched.path))
}

/// `fetchGit url` or `fetchGit { url; rev ?; ref ?; name ? "source";
/// submodules ? false; shallow ? false; allRefs ? false; }`: the commit's
/// tree with `outPath`, `rev`, `shortRev`, `revCount`, `lastModified`,
/// `lastModifiedDate`, `narHash` and `submodules`, as Nix's.
pub fn fetch_git(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    const FIELDS: &[&str] = &["url", "rev", "ref", "name", "submodules", "shallow", "allRefs"];
    let mut fields = Fields::read(ev, &args[0], span, "fetchGit", FIELDS)?;
    let url = fields.take("url").ok_or_else(|| error("input attribute 'url' is missing", span))?;
    let rev = fields.take("rev");
    if let Some(rev) = &rev {
        if !(rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(error(format!("'rev' must be a full 40-character commit hash, not '{rev}'"), span));
        }
    }
    if ev.pure && rev.is_none() {
        return Err(error(
            "in pure evaluation mode, 'fetchGit' requires a locked input: add a 'rev' argument (a full commit hash)",
            span,
        ));
    }
    let repo = local_repository(&url).ok_or_else(|| {
        error(
            format!("'fetchGit' fetches local repositories only (an absolute path or a file:// URL), not '{url}'"),
            span,
        )
    })?;
    ev.check_access(Path::new(&repo), Some(span))?;
    let request = GitRequest {
        url: repo,
        rev: rev.map(|r| r.to_ascii_lowercase()),
        git_ref: fields.take("ref"),
        name: fields.take("name").unwrap_or_else(|| "source".to_string()),
        submodules: fields.flag("submodules"),
        shallow: fields.flag("shallow"),
        all_refs: fields.flag("allRefs"),
    };
    let store = ev.store(span)?;
    let fetcher = fetcher(ev, "fetchGit", span)?;
    let fetched = fetcher.fetch_git(&store, &request).map_err(|message| EvalError::at(ErrorKind::Io, message, span))?;
    Ok(attrs_of(vec![
        ("lastModified", Value::Int(fetched.last_modified)),
        ("lastModifiedDate", Value::string(crate::fetch::utc_date_time(fetched.last_modified))),
        ("narHash", Value::string(fetched.nar_hash)),
        ("outPath", ev.made_store_path(&fetched.path)),
        ("rev", Value::string(fetched.rev.as_str())),
        ("revCount", Value::Int(fetched.rev_count as i64)),
        ("shortRev", Value::string(&fetched.rev[..7.min(fetched.rev.len())])),
        ("submodules", Value::Bool(request.submodules)),
    ]))
}

fn error(message: impl Into<String>, span: Span) -> Box<EvalError> {
    EvalError::at(ErrorKind::Eval, message, span)
}

fn fetcher(ev: &Evaluator, builtin: &str, span: Span) -> EvalResult<Arc<dyn Fetcher>> {
    ev.fetcher
        .clone()
        .ok_or_else(|| error(format!("'{builtin}' cannot download here: this evaluation was given no fetcher"), span))
}

/// A `sha256` argument: hex, Nix base-32 or SRI; empty is Nix's "fake
/// hash", all zeros, whose mismatch error then names the real one.
fn parse_sha256(text: &str, span: Span) -> EvalResult<[u8; 32]> {
    if text.is_empty() {
        eprintln!("warning: found empty hash, assuming 'sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='");
        return Ok([0; 32]);
    }
    let bytes = parse_hash("sha256", text).map_err(|e| error(e.to_string(), span))?;
    bytes.try_into().map_err(|_| error(format!("invalid sha256 hash '{text}'"), span))
}

/// The repository path a `fetchGit` URL names, if it is local: an
/// absolute path, or the path of a `file://` URL.
fn local_repository(url: &str) -> Option<String> {
    let path = url.strip_prefix("file://").unwrap_or(url);
    (path.starts_with('/') && !path.contains('\0')).then(|| path.trim_end_matches('/').to_string()).map(|p| {
        if p.is_empty() {
            "/".to_string()
        } else {
            p
        }
    })
}

/// A fetch builtin's argument: a URL, or a set of the named fields only.
struct Fields {
    strings: Vec<(&'static str, String)>,
    flags: Vec<(&'static str, bool)>,
}

impl Fields {
    /// Reads `arg`: a string or path is the URL; a set may hold only
    /// `allowed` names (every other one is an error naming it).
    fn read(
        ev: &mut Evaluator,
        arg: &Thunk,
        span: Span,
        builtin: &str,
        allowed: &[&'static str],
    ) -> EvalResult<Fields> {
        let mut fields = Fields { strings: Vec::new(), flags: Vec::new() };
        let value = ev.force(arg)?;
        let Value::Attrs(set) = value else {
            fields.strings.push(("url", url_text(ev, &value, span, builtin == "fetchGit")?));
            return Ok(fields);
        };
        for attr in set.entries() {
            let key = attr.name.as_str();
            let Some(&name) = allowed.iter().find(|&&a| a == key) else {
                // Nix words it differently for git, which takes flake-input attributes.
                let message = if builtin == "fetchGit" {
                    format!("unsupported Git input attribute '{key}'")
                } else {
                    format!("unsupported argument '{key}' to '{builtin}'")
                };
                return Err(error(message, span));
            };
            let value = ev.force(&attr.value)?;
            match name {
                "submodules" | "shallow" | "allRefs" => fields.flags.push((name, super::expect_bool(value, span)?)),
                "url" => fields.strings.push((name, url_text(ev, &value, span, builtin == "fetchGit")?)),
                _ => fields.strings.push((name, plain_string(&value, span)?)),
            }
        }
        Ok(fields)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let index = self.strings.iter().position(|(n, _)| *n == name)?;
        Some(self.strings.remove(index).1)
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|&(n, on)| n == name && on)
    }
}

/// A URL: a string (without store context: a URL names no store path), or
/// for `fetchGit` also a path.
fn url_text(ev: &mut Evaluator, value: &Value, span: Span, path_allowed: bool) -> EvalResult<String> {
    match value {
        Value::Path(_) if path_allowed => Ok(ev.coerce_to_string(value, span, false, false)?.to_string()),
        other => plain_string(other, span),
    }
}

fn plain_string(value: &Value, span: Span) -> EvalResult<String> {
    match value {
        Value::String(s) if s.context().is_empty() => Ok(s.to_string()),
        Value::String(s) => Err(error(format!("the string '{s}' is not allowed to refer to a store path"), span)),
        other => Err(EvalError::type_error(format!("value is {} while a string was expected", other.describe()), span)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{GitFetched, UrlFetched};
    use mini_store::store::Store;
    use mini_store::store_path::StorePath;
    use std::sync::Mutex;

    /// Records what it is asked and answers with made-up paths.
    #[derive(Default)]
    struct Recorder {
        urls: Mutex<Vec<UrlRequest>>,
        gits: Mutex<Vec<GitRequest>>,
    }

    const REV: &str = "9c44aa68413c853e78010b55f049d03656726062";

    impl Fetcher for Recorder {
        fn fetch_url(&self, _: &Store, request: &UrlRequest) -> Result<UrlFetched, String> {
            self.urls.lock().unwrap().push(request.clone());
            let sha256 = request.sha256.unwrap_or([7; 32]);
            let mode = if request.unpack { HashMode::Recursive } else { HashMode::Flat };
            let fixed = FixedHash { algo: "sha256".into(), mode, digest: sha256.to_vec() };
            Ok(UrlFetched { path: fixed_output_path(&fixed, &request.name).unwrap(), sha256 })
        }

        fn fetch_git(&self, _: &Store, request: &GitRequest) -> Result<GitFetched, String> {
            self.gits.lock().unwrap().push(request.clone());
            let path = StorePath::parse(&format!(
                "{}/00000000000000000000000000000000-source",
                mini_store::store_path::STORE_DIR
            ))
            .unwrap();
            Ok(GitFetched {
                path,
                rev: request.rev.clone().unwrap_or_else(|| REV.to_string()),
                rev_count: if request.shallow { 0 } else { 1 },
                last_modified: 1_577_836_800,
                nar_hash: "sha256-Wsv9aqhAYM2CUwvno6oUY57AzlpwgdhyDS6lBjuaOhk=".into(),
            })
        }
    }

    struct Session {
        ev: Evaluator,
        recorder: Arc<Recorder>,
        _dir: TempDir,
    }

    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn session(pure: bool) -> Session {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mini-lang-fetch-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut ev = Evaluator::new();
        ev.set_store(mini_store::store::Store::open(&dir.join("store")).unwrap());
        ev.pure = pure;
        let recorder = Arc::new(Recorder::default());
        ev.set_fetcher(recorder.clone());
        Session { ev, recorder, _dir: TempDir(dir) }
    }

    fn eval(s: &mut Session, text: &str) -> Result<String, String> {
        let v = s.ev.eval_text(text).map_err(|e| e.message.clone())?;
        s.ev.deep_force(&v, Span::default()).map_err(|e| e.message.clone())?;
        Ok(crate::print::print_value(&v))
    }

    const HEX: &str = "e4d7f1b4ed2e42d15898f4b27b019da4d5cdee8a2ab3d3dd1f3ba02ab6a2e3df";

    #[test]
    fn both_argument_forms_give_the_same_request() {
        let mut s = session(false);
        eval(&mut s, r#"builtins.fetchurl "file:///d/hello.txt""#).unwrap();
        eval(&mut s, r#"builtins.fetchurl { url = "file:///d/hello.txt"; }"#).unwrap();
        eval(&mut s, r#"builtins.fetchTarball { url = "file:///d/p.tar.gz"; name = "p"; }"#).unwrap();
        let urls = s.recorder.urls.lock().unwrap().clone();
        let plain =
            UrlRequest { url: "file:///d/hello.txt".into(), name: "hello.txt".into(), unpack: false, sha256: None };
        assert_eq!(urls[0], plain);
        assert_eq!(urls[1], plain);
        assert_eq!(
            urls[2],
            UrlRequest { url: "file:///d/p.tar.gz".into(), name: "p".into(), unpack: true, sha256: None }
        );
        eval(&mut s, r#"builtins.fetchTarball "file:///d/p.tar.gz""#).unwrap();
        assert_eq!(s.recorder.urls.lock().unwrap()[3].name, "source");
    }

    #[test]
    fn hashes_are_read_in_every_notation_nix_accepts() {
        let mut s = session(false);
        let base32 = mini_store::base32::encode(&parse_hash("sha256", HEX).unwrap());
        for text in [HEX.to_string(), base32, "sha256-5NfxtO0uQtFYmPSyewGdpNXN7ooqs9PdHzugKrai498=".into()] {
            eval(&mut s, &format!(r#"builtins.fetchurl {{ url = "file:///d/f"; sha256 = "{text}"; }}"#)).unwrap();
        }
        let urls = s.recorder.urls.lock().unwrap().clone();
        let digest: [u8; 32] = parse_hash("sha256", HEX).unwrap().try_into().unwrap();
        assert!(urls.iter().all(|r| r.sha256 == Some(digest)), "{urls:?}");
        eval(&mut s, r#"builtins.fetchurl { url = "file:///d/f"; sha256 = ""; }"#).unwrap();
        assert_eq!(s.recorder.urls.lock().unwrap()[3].sha256, Some([0; 32]));
        let err = eval(&mut s, r#"builtins.fetchurl { url = "file:///d/f"; sha256 = "abc"; }"#).unwrap_err();
        assert!(err.contains("invalid sha256 hash 'abc'"), "{err}");
    }

    #[test]
    fn a_pinned_result_is_the_fixed_output_path_with_itself_as_context() {
        let mut s = session(true);
        let flat =
            FixedHash { algo: "sha256".into(), mode: HashMode::Flat, digest: parse_hash("sha256", HEX).unwrap() };
        let expected = fixed_output_path(&flat, "f").unwrap();
        let text = format!(r#"builtins.getContext (builtins.fetchurl {{ url = "file:///d/f"; sha256 = "{HEX}"; }})"#);
        assert_eq!(eval(&mut s, &text).unwrap(), format!("{{ \"{expected}\" = {{ path = true; }}; }}"));
        let tree = FixedHash { mode: HashMode::Recursive, ..flat };
        let expected = fixed_output_path(&tree, "source").unwrap();
        let text = format!(r#"builtins.fetchTarball {{ url = "file:///d/t.tgz"; sha256 = "{HEX}"; }}"#);
        assert_eq!(eval(&mut s, &text).unwrap(), format!("\"{expected}\""));
    }

    #[test]
    fn pure_mode_refuses_unpinned_fetches_saying_what_to_add() {
        let mut s = session(true);
        let cases = [
            (r#"builtins.fetchurl "file:///d/f""#, "in pure evaluation mode, 'fetchurl' requires a 'sha256' argument"),
            (
                r#"builtins.fetchTarball { url = "file:///d/t"; }"#,
                "in pure evaluation mode, 'fetchTarball' requires a 'sha256' argument",
            ),
            (
                r#"builtins.fetchGit /d/repo"#,
                "in pure evaluation mode, 'fetchGit' requires a locked input: add a 'rev'",
            ),
            (r#"builtins.fetchGit { url = /d/repo; ref = "main"; }"#, "add a 'rev' argument"),
        ];
        for (text, message) in cases {
            let err = eval(&mut s, text).unwrap_err();
            assert!(err.contains(message), "{text}: {err}");
        }
        assert!(s.recorder.urls.lock().unwrap().is_empty() && s.recorder.gits.lock().unwrap().is_empty());
        let text = format!(r#"(builtins.fetchGit {{ url = "file:///d/repo"; rev = "{REV}"; }}).rev"#);
        assert_eq!(eval(&mut s, &text).unwrap(), format!("\"{REV}\""));
    }

    #[test]
    fn unsupported_arguments_are_errors_naming_them() {
        let mut s = session(false);
        let cases = [
            (r#"builtins.fetchurl { url = "file:///f"; hash = ""; }"#, "unsupported argument 'hash' to 'fetchurl'"),
            (
                r#"builtins.fetchTarball { url = "file:///f"; foo = 1; }"#,
                "unsupported argument 'foo' to 'fetchTarball'",
            ),
            (r#"builtins.fetchGit { url = /r; narHash = ""; }"#, "unsupported Git input attribute 'narHash'"),
            (r#"builtins.fetchurl { }"#, "'url' argument required"),
            (r#"builtins.fetchurl 1"#, "value is an integer while a string was expected"),
            (r#"builtins.fetchGit { url = /r; shallow = "yes"; }"#, "while a Boolean was expected"),
            (r#"builtins.fetchGit { url = /r; rev = "abc"; }"#, "'rev' must be a full 40-character commit hash"),
            (r#"builtins.fetchGit "relative/repo""#, "fetches local repositories only"),
            (r#"builtins.fetchGit "ssh://host/repo""#, "fetches local repositories only"),
        ];
        for (text, message) in cases {
            let err = eval(&mut s, text).unwrap_err();
            assert!(err.contains(message), "{text}: {err}");
        }
    }

    #[test]
    fn fetch_git_returns_nix_attributes() {
        let mut s = session(false);
        let text = r#"builtins.fetchGit { url = "file:///d/repo/"; ref = "main"; shallow = true; submodules = true; }"#;
        assert_eq!(
            eval(&mut s, text).unwrap(),
            format!(
                "{{ lastModified = 1577836800; lastModifiedDate = \"20200101000000\"; \
                 narHash = \"sha256-Wsv9aqhAYM2CUwvno6oUY57AzlpwgdhyDS6lBjuaOhk=\"; \
                 outPath = \"{}/00000000000000000000000000000000-source\"; rev = \"{REV}\"; revCount = 0; \
                 shortRev = \"9c44aa6\"; submodules = true; }}",
                mini_store::store_path::STORE_DIR
            )
        );
        let request = s.recorder.gits.lock().unwrap()[0].clone();
        assert_eq!(request.url, "/d/repo");
        assert_eq!(request.git_ref.as_deref(), Some("main"));
        assert!(request.shallow && request.submodules && !request.all_refs);
    }

    #[test]
    fn without_a_fetcher_the_builtins_say_so() {
        let mut ev = Evaluator::new();
        let root = std::env::temp_dir().join(format!("mini-lang-nofetch-{}", std::process::id()));
        ev.set_store(mini_store::store::Store::open(&root).unwrap());
        ev.fetcher = None;
        let Err(err) = ev.eval_text(r#"builtins.fetchurl "file:///f""#) else { panic!("it fetched") };
        assert!(err.message.contains("'fetchurl' cannot download here: this evaluation was given no fetcher"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
