//! `mini push` end to end against a registry that wants bearer tokens: a
//! small fake registry, served here from a thread, answers every `/v2/`
//! request without `Authorization: Bearer GOODTOKEN` with a 401 whose
//! challenge points at its own `/token` endpoint, which hands out the
//! token for the right Basic credentials only. This proves that mini
//! follows the challenge, asks for the token with Basic credentials,
//! uploads every blob with the token (each blob's sha256 matching its
//! digest), puts the manifest last, never prints the password, and stops
//! with an authentication error — before putting anything — when the
//! password is wrong.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

mod common;
use common::{mini_at, ok, succeeded, text, Scratch};

const TOKEN: &str = "GOODTOKEN";
/// `Basic base64("user:pass")`.
const GOOD_BASIC: &str = "Basic dXNlcjpwYXNz";

/// One request the fake registry saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The path with its query.
    path: String,
    authorization: Option<String>,
    /// For a blob upload: whether the body's sha256 matched `?digest=`.
    digest_ok: Option<bool>,
}

/// What the fake registry keeps: the requests, in order, and the blobs.
#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    blobs: HashMap<String, Vec<u8>>,
    uploads: u32,
}

/// A fake bearer-token registry on 127.0.0.1:<port>; its thread lives as
/// long as the test process.
struct Fake {
    host: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(State::default()));
        let (shared, realm_host) = (state.clone(), host.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, host) = (shared.clone(), realm_host.clone());
                std::thread::spawn(move || serve(stream, &host, &state));
            }
        });
        Fake { host, state }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

/// Reads one HTTP/1.1 request from `stream`, answers it and closes.
fn serve(stream: TcpStream, host: &str, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let Some((name, value)) = header.trim_end().split_once(':') else { break };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let body = read_body(&mut reader, &headers);
    let authorization = headers.get("authorization").cloned();
    let mut seen = Seen { method: method.clone(), path: path.clone(), authorization, digest_ok: None };
    let (status, extra, reply) = answer(&mut seen, &body, host, state);
    state.lock().unwrap().seen.push(seen);
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status} Fake\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        if method == "HEAD" { 0 } else { reply.len() }
    );
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(reply.as_bytes());
    }
}

/// The body, by `Content-Length` or `Transfer-Encoding: chunked`.
fn read_body(reader: &mut impl BufRead, headers: &HashMap<String, String>) -> Vec<u8> {
    let mut body = Vec::new();
    if headers.get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
            let mut chunk = vec![0; size + 2]; // the chunk and its CRLF
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break; // no trailers from ureq: the CRLF read was the end
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = headers.get("content-length") {
        body.resize(length.parse().unwrap(), 0);
        reader.read_exact(&mut body).unwrap();
    }
    body
}

/// The status, extra header lines and body answering `seen`.
fn answer(seen: &mut Seen, body: &[u8], host: &str, state: &Mutex<State>) -> (u16, String, String) {
    let (path, query) = seen.path.split_once('?').unwrap_or((&seen.path, ""));
    let query: HashMap<String, String> =
        query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), decode(v))).collect();
    let path = path.to_string();
    if path == "/token" {
        let scoped = query.get("service").is_some_and(|s| s == "fake")
            && query.get("scope").is_some_and(|s| s == "repository:t:pull,push");
        return match seen.authorization.as_deref() {
            Some(GOOD_BASIC) if scoped => (200, String::new(), format!(r#"{{"token":"{TOKEN}"}}"#)),
            _ => (401, String::new(), r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.into()),
        };
    }
    if seen.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        let params = r#"service="fake",scope="repository:t:pull,push""#;
        let challenge = format!("WWW-Authenticate: Bearer realm=\"http://{host}/token\",{params}\r\n");
        return (401, challenge, String::new());
    }
    let mut state = state.lock().unwrap();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (seen.method.as_str(), segments.as_slice()) {
        ("GET", ["v2", ""]) => (200, String::new(), "{}".into()),
        ("HEAD", ["v2", _, "blobs", digest]) if state.blobs.contains_key(*digest) => {
            (200, String::new(), String::new())
        }
        ("HEAD", ["v2", _, "blobs", _]) => (404, String::new(), String::new()),
        ("POST", ["v2", repo, "blobs", "uploads", ""]) => {
            state.uploads += 1;
            (202, format!("Location: /v2/{repo}/blobs/uploads/upload-{}\r\n", state.uploads), String::new())
        }
        ("PUT", ["v2", _, "blobs", "uploads", _]) => {
            let digest = query.get("digest").cloned().unwrap_or_default();
            let ok = digest == format!("sha256:{}", hex(&Sha256::digest(body)));
            seen.digest_ok = Some(ok);
            if !ok {
                return (400, String::new(), r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#.into());
            }
            state.blobs.insert(digest.clone(), body.to_vec());
            (201, format!("Docker-Content-Digest: {digest}\r\n"), String::new())
        }
        ("PUT", ["v2", _, "manifests", _]) => {
            let digest = format!("sha256:{}", hex(&Sha256::digest(body)));
            (201, format!("Docker-Content-Digest: {digest}\r\n"), String::new())
        }
        _ => (404, String::new(), String::new()),
    }
}

/// Percent-decoding, enough for query values.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], value.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `mini push DIR#img docker://HOST/t:1 --insecure` as `user` with
/// `password`.
fn push(store: &Path, dir: &Path, host: &str, password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(store)
        .args(["push", &format!("{}#img", dir.display()), &format!("docker://{host}/t:1"), "--insecure"])
        .env("MINI_REGISTRY_USER", "user")
        .env("MINI_REGISTRY_PASSWORD", password)
        .env("HOME", store)
        .current_dir(dir)
        .output()
        .expect("run mini")
}

#[test]
fn bearer_token_registries_get_the_token_from_the_realm_and_the_right_password_only() {
    let scratch = Scratch::new("push-bearer");
    let store = scratch.0.join("store");
    scratch.write(
        "image/flake.nixlike",
        r#"{ pkgs, ... }: {
  img = pkgs.dockerTools.buildLayeredImage { name = "t"; tag = "1"; contents = [ pkgs.busybox ]; };
}"#,
    );
    let dir = scratch.0.join("image");
    let built =
        ok(&mini_at(&store, &dir, &["build", &format!("{}#img", dir.display()), "--no-link", "--print-out-paths"]));
    assert!(!built.is_empty());
    let all = |out: &Output| format!("{}{}", text(&out.stdout), text(&out.stderr));

    // The wrong password: no token, a clear error, nothing put.
    let fake = Fake::start();
    let refused = push(&store, &dir, &fake.host, "wrong-secret-93b1");
    let output = all(&refused);
    assert_eq!(refused.status.code(), Some(1), "{output}");
    assert!(output.contains(&format!("authentication failed for {}: check MINI_REGISTRY_USER", fake.host)), "{output}");
    assert!(!output.contains("wrong-secret-93b1"), "the password is printed:\n{output}");
    let seen = fake.seen();
    assert!(seen.iter().any(|s| s.path.starts_with("/token")), "{seen:#?}");
    assert!(!seen.iter().any(|s| s.method == "PUT" || s.method == "POST"), "{seen:#?}");

    // The right password.
    let fake = Fake::start();
    let password = "pass";
    let pushed = push(&store, &dir, &fake.host, password);
    let output = all(&pushed);
    assert!(succeeded(&pushed).contains(&format!("pushed docker://{}/t:1", fake.host)), "{output}");
    assert!(!output.contains(password) && !output.contains("dXNlcjpwYXNz"), "the password is printed:\n{output}");
    let seen = fake.seen();
    let tokens: Vec<_> = seen.iter().filter(|s| s.path.starts_with("/token")).collect();
    assert!(!tokens.is_empty(), "no token was asked for: {seen:#?}");
    assert!(tokens.iter().all(|s| s.authorization.as_deref() == Some(GOOD_BASIC)), "{tokens:#?}");
    let bearer = format!("Bearer {TOKEN}");
    let uploads: Vec<_> = seen.iter().filter(|s| s.digest_ok.is_some()).collect();
    let uploaded = output.lines().filter(|l| l.starts_with("uploaded ")).count();
    assert!(uploaded >= 2 && uploads.len() == uploaded, "a config and layers go up:\n{output}\n{seen:#?}");
    assert!(uploads.iter().all(|s| s.digest_ok == Some(true)), "a blob's sha256 is not its digest: {uploads:#?}");
    assert!(uploads.iter().all(|s| s.authorization.as_deref() == Some(bearer.as_str())), "{uploads:#?}");
    let last = seen.last().unwrap();
    assert_eq!((last.method.as_str(), last.path.as_str()), ("PUT", "/v2/t/manifests/1"), "{seen:#?}");
    assert_eq!(seen.iter().filter(|s| s.path.contains("/manifests/")).count(), 1, "{seen:#?}");
    let stored = fake.state.lock().unwrap().blobs.len();
    assert_eq!(stored, uploaded, "every uploaded blob is stored");
}
