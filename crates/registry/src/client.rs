//! A small HTTP client for one registry: retries transient failures
//! (connection errors, 5xx, 429) with backoff, and answers a 401 once per
//! request with Basic credentials or a bearer token from the challenge's
//! realm. The `Authorization` value it settles on is reused for later
//! requests to the registry itself; a request elsewhere (an upload
//! `Location` on another host) goes without it.
//!
//! Credentials never travel in clear text to anyone but the registry the
//! user said to reach over plain HTTP (`--insecure`): a bearer challenge
//! naming a plain-HTTP token service elsewhere (another host, or another
//! port of the same one) is refused. Answers are read only so far: error
//! bodies up to [`MAX_ERROR_BODY`] bytes, token documents up to
//! [`MAX_TOKEN_DOCUMENT`].

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ureq::http;

use crate::auth::{self, Challenge, Credentials};
use crate::excerpt::excerpt;
use crate::{RegistryError, Result};

/// How many times a request is tried.
const TRIES: u32 = 3;
/// The wait before the second try; it doubles after each failure.
const BACKOFF: Duration = Duration::from_millis(200);
/// The most of an answer's body kept for an error message.
pub const MAX_ERROR_BODY: u64 = 64 * 1024;
/// The largest token document read.
pub const MAX_TOKEN_DOCUMENT: u64 = 1 << 20;

/// What a request sends.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    Empty,
    /// Bytes with their content type.
    Bytes(&'a [u8], &'a str),
    /// A file's contents, streamed, as `application/octet-stream`.
    File(&'a Path),
}

/// What the registry answered.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The `Location` header, made absolute.
    pub location: Option<String>,
    /// The body's first [`MAX_ERROR_BODY`] bytes, for error messages
    /// (empty for HEAD); print it only through [`crate::excerpt::excerpt`].
    pub body: Vec<u8>,
}

/// A client for one registry.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    insecure: bool,
    credentials: Option<Credentials>,
    authorization: Mutex<Option<String>>,
}

impl Client {
    /// A client for `host`, over HTTPS unless `insecure`, trusting the CAs
    /// `mini_http` chooses (`SSL_CERT_FILE`, else the system's).
    pub fn new(host: &str, insecure: bool, credentials: Option<Credentials>) -> Result<Client> {
        let options = mini_http::ClientOptions {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(120),
            max_redirects: 0,
        };
        let agent = mini_http::agent(options)?;
        let scheme = if insecure { "http" } else { "https" };
        Ok(Client {
            agent,
            base: format!("{scheme}://{host}"),
            host: host.to_string(),
            insecure,
            credentials,
            authorization: Mutex::new(None),
        })
    }

    /// The URL of `path` (which starts with `/`) on this registry.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method url` with `body`; `what` names the request in errors.
    /// A 401 is answered once; still 401 is [`RegistryError::Auth`].
    pub fn send(&self, method: &str, url: &str, body: Body<'_>, what: &str) -> Result<Reply> {
        let mut answered_challenge = false;
        let mut tries = 0;
        loop {
            tries += 1;
            let outcome = self.send_once(method, url, body);
            let transient = match &outcome {
                Err(_) => true,
                Ok((reply, _)) => reply.status == 429 || reply.status >= 500,
            };
            match outcome {
                Ok((reply, challenge)) if reply.status == 401 => {
                    if answered_challenge {
                        return Err(RegistryError::Auth { host: self.host.clone() });
                    }
                    answered_challenge = true;
                    tries -= 1;
                    self.authenticate(challenge.as_deref())?;
                }
                Ok((reply, _)) if !transient || tries >= TRIES => return Ok(reply),
                Err(e) if tries >= TRIES => {
                    return Err(RegistryError::Http { what: what.to_string(), message: mini_http::explain(&e) })
                }
                _ => std::thread::sleep(BACKOFF * 2u32.pow(tries - 1)),
            }
        }
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        body: Body<'_>,
    ) -> std::result::Result<(Reply, Option<String>), ureq::Error> {
        let mut request = http::Request::builder().method(method).uri(url);
        if origin(url).is_some() && origin(url) == origin(&self.base) {
            if let Some(value) = self.authorization.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                request = request.header("Authorization", value);
            }
        }
        let response = match body {
            Body::Empty => self.agent.run(request.body(())?)?,
            Body::Bytes(bytes, content_type) => {
                self.agent.run(request.header("Content-Type", content_type).body(bytes)?)?
            }
            Body::File(path) => {
                let file = File::open(path)?;
                self.agent.run(request.header("Content-Type", "application/octet-stream").body(file)?)?
            }
        };
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let challenge = header("www-authenticate");
        let location = header("location").map(|l| if l.starts_with('/') { self.url(&l) } else { l });
        let status = response.status().as_u16();
        let mut body = Vec::new();
        if method != "HEAD" {
            // Only for messages: what cannot be read is left out.
            let _ = response.into_body().into_reader().take(MAX_ERROR_BODY).read_to_end(&mut body);
        }
        Ok((Reply { status, location, body }, challenge))
    }

    /// Settles on an `Authorization` value that answers `challenge`.
    fn authenticate(&self, challenge: Option<&str>) -> Result<()> {
        let refused = || RegistryError::Auth { host: self.host.clone() };
        let value = match challenge.and_then(auth::parse_challenge) {
            Some(Challenge::Basic) => self.credentials.as_ref().ok_or_else(refused)?.basic_header(),
            Some(Challenge::Bearer { realm, params }) => format!("Bearer {}", self.token(&realm, &params)?),
            None => return Err(refused()),
        };
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        Ok(())
    }

    /// A bearer token from `realm`, asked for with Basic credentials if
    /// there are any.
    fn token(&self, realm: &str, params: &std::collections::BTreeMap<String, String>) -> Result<String> {
        let failed = |message: String| RegistryError::Http {
            what: format!("getting a token from {}", excerpt(realm.as_bytes())),
            message,
        };
        let Some((scheme, _)) = origin(realm) else {
            return Err(failed("the challenge's realm is not an http:// or https:// URL".into()));
        };
        let mut request = self.agent.get(realm);
        for (key, value) in params {
            request = request.query(key, value);
        }
        if let Some(credentials) = &self.credentials {
            // In clear text only to the very registry --insecure named.
            if scheme == "http" && !(self.insecure && origin(realm) == origin(&self.base)) {
                return Err(RegistryError::PlainTextRealm {
                    host: self.host.clone(),
                    realm: excerpt(realm.as_bytes()),
                });
            }
            request = request.header("Authorization", credentials.basic_header());
        }
        let response = request.call().map_err(|e| failed(e.to_string()))?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => return Err(RegistryError::Auth { host: self.host.clone() }),
            status => return Err(failed(format!("the server answered {status}"))),
        }
        let text = response
            .into_body()
            .into_with_config()
            .limit(MAX_TOKEN_DOCUMENT)
            .read_to_vec()
            .map_err(|e| failed(e.to_string()))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| failed(format!("the answer is not a token document: {e}")))?;
        doc.get("token")
            .or_else(|| doc.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| failed("the answer holds no token".into()))
    }
}

/// The scheme and authority of an `http`/`https` URL, lower-cased, with the
/// default port made explicit (`http://H/x` → `("http", "h:80")`); `None`
/// for anything else.
fn origin(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let mut authority = rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())].to_ascii_lowercase();
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if !has_port {
        authority = format!("{authority}:{default_port}");
    }
    Some((scheme, authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |url: &str| origin(url).map(|(s, a)| format!("{s}://{a}"));
        assert_eq!(o("http://Registry:5000/v2/"), Some("http://registry:5000".into()));
        assert_eq!(o("http://registry/token?x=1"), Some("http://registry:80".into()));
        assert_eq!(o("https://registry"), Some("https://registry:443".into()));
        assert_eq!(o("http://[::1]:5000/x"), Some("http://[::1]:5000".into()));
        assert_eq!(o("http://[::1]/x"), Some("http://[::1]:80".into()));
        assert_eq!(o("ftp://registry/"), None);
        assert_eq!(o("registry:5000"), None);
        assert_ne!(origin("http://registry:5000"), origin("http://registry:5001"));
        assert_ne!(origin("http://user@registry:5000"), origin("http://registry:5000"));
    }
}
