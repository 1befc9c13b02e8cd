//! A registry's answers are untrusted. A fake registry on 127.0.0.1 (a
//! thread here) tries two things on `mini push`:
//!
//! - its 401 names a token service on another port of the same host, over
//!   plain HTTP: before the fix, mini sent it the user's Basic credentials
//!   in clear text; now it refuses, since `--insecure` was given for the
//!   registry only;
//! - it answers an upload with an error body full of terminal escapes, a
//!   bidi override, a token and kilobytes of text: before the fix, the
//!   override and the token were printed, and 300 characters of it could
//!   be 1200 bytes; now the quote is at most 500 bytes of plain text with
//!   the token redacted.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use crate::{text, users, Attempt};

/// One request the fake saw.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    authorization: Option<String>,
}

/// What the fake answers: status, extra header lines, body.
type Answer = (u16, Vec<String>, Vec<u8>);

/// Serves HTTP/1.1 on 127.0.0.1 from threads that live as long as the test
/// process; returns `host:port` and the requests seen.
fn serve(answer: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let host = format!("127.0.0.1:{}", listener.local_addr().expect("a local address").port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (answer, record) = (Arc::new(answer), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (answer, record) = (answer.clone(), record.clone());
            std::thread::spawn(move || connection(stream, &*answer, &record));
        }
    });
    (host, seen)
}

/// Answers the requests of one connection until it closes.
fn connection(stream: TcpStream, answer: &dyn Fn(&Request) -> Answer, seen: &Mutex<Vec<Request>>) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let method = line.split_whitespace().next().unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: u64 = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let _ = std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink());
        let request = Request { method, authorization: headers.get("authorization").cloned() };
        seen.lock().expect("the request log").push(request.clone());
        let (status, extra, body) = answer(&request);
        let mut head = format!("HTTP/1.1 {status} Answer\r\nContent-Length: {}\r\n", body.len());
        for header in extra {
            head.push_str(&format!("{header}\r\n"));
        }
        head.push_str("\r\n");
        let mut reply = head.into_bytes();
        if request.method != "HEAD" {
            reply.extend_from_slice(&body);
        }
        if writer.write_all(&reply).is_err() {
            return;
        }
    }
}

/// An attempt with a small image built, and its physical path.
fn image(name: &str, who: crate::Who) -> (Attempt, String) {
    let a = Attempt::new(name, who);
    a.flake(&[], "  image = pkgs.dockerTools.buildLayeredImage { name = \"pushed\"; };\n");
    let image = a.build("image");
    let physical = a.physical(&image).display().to_string();
    (a, physical)
}

#[test]
fn credentials_never_go_in_clear_text_to_a_token_service_on_another_port() {
    for who in users() {
        let (a, image) = image("registry-realm", who);
        let (realm_host, realm_seen) =
            serve(|_| (200, vec!["Content-Type: application/json".into()], br#"{"token":"T"}"#.to_vec()));
        let challenge = format!("WWW-Authenticate: Bearer realm=\"http://{realm_host}/token\",service=\"fake\"");
        let (host, _) = serve(move |_| (401, vec![challenge.clone()], b"{}".to_vec()));
        let env: [(&str, &OsStr); 2] =
            [("MINI_REGISTRY_USER", OsStr::new("user")), ("MINI_REGISTRY_PASSWORD", OsStr::new("s3cret-pass"))];
        let out = a.mini_env(&env, &["push", &image, &format!("docker://{host}/repo:tag"), "--insecure"]);
        let err = text(&out.stderr);
        let sent: Vec<Request> = realm_seen.lock().expect("the request log").clone();
        assert!(
            sent.iter().all(|r| r.authorization.is_none()),
            "{who:?}: the token service on another port got credentials: {sent:?}"
        );
        assert!(!out.status.success(), "{who:?}: the push went through:\n{err}");
        assert!(err.contains("in clear text") && err.contains(&realm_host), "{who:?}: {err}");
        assert!(!err.contains("s3cret-pass"), "{who:?}: {err}");
    }
}

#[test]
fn error_bodies_are_quoted_short_plain_and_without_tokens() {
    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    for who in users() {
        let (a, image) = image("registry-body", who);
        let hostile = format!(
            "\u{1b}]0;pwned\u{7}\u{1b}[31mDENIED\r\n\u{202e}gnp.exe Bearer {TOKEN} {}",
            "\u{1f642}".repeat(2000)
        );
        let (host, _) = serve(move |r| match r.method.as_str() {
            "GET" => (200, vec![], b"{}".to_vec()),
            "HEAD" => (404, vec![], Vec::new()),
            _ => (400, vec![], hostile.clone().into_bytes()),
        });
        let out = a.mini_env(&[], &["push", &image, &format!("docker://{host}/repo:tag"), "--insecure"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{who:?}: the push went through");
        let line =
            err.lines().find(|l| l.contains("the registry answered 400")).unwrap_or_else(|| panic!("{who:?}: {err}"));
        let quoted = line.split("the registry answered 400: ").nth(1).unwrap_or("");
        assert!(!err.contains(TOKEN) && !err.contains("eyJhbGciOiJIUzI1NiJ9"), "{who:?}: the token was printed");
        assert!(!err.contains('\u{202e}'), "{who:?}: a bidi override was printed");
        assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{who:?}: control characters: {err:?}");
        assert!(quoted.len() <= 500, "{who:?}: {} bytes quoted", quoted.len());
        assert!(quoted.contains("DENIED"), "{who:?}: {line}");
    }
}
