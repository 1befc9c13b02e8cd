//! Registry credentials and `WWW-Authenticate` challenges. Looking the
//! credentials up reads the environment and `~/.docker/config.json`; the
//! rest is pure.

use std::collections::BTreeMap;
use std::path::Path;

use mini_store::encoding::{base64_decode, base64_encode};

/// A user name and password. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Authorization` header value for Basic authentication.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!("Basic {}", base64_encode(pair.as_bytes()))
    }
}

/// The credentials for `host`: `MINI_REGISTRY_USER` and
/// `MINI_REGISTRY_PASSWORD` if set, else `auths.<host>.auth` in
/// `$HOME/.docker/config.json`.
pub fn lookup(host: &str) -> Option<Credentials> {
    if let (Ok(user), Ok(password)) = (std::env::var("MINI_REGISTRY_USER"), std::env::var("MINI_REGISTRY_PASSWORD")) {
        return Some(Credentials { user, password });
    }
    let home = std::env::var_os("HOME")?;
    let text = std::fs::read(Path::new(&home).join(".docker/config.json")).ok()?;
    from_docker_config(&text, host)
}

/// The credentials a docker `config.json` holds for `host` (keyed by the
/// host, or by `https://host`).
pub fn from_docker_config(text: &[u8], host: &str) -> Option<Credentials> {
    let doc: serde_json::Value = serde_json::from_slice(text).ok()?;
    let auths = doc.get("auths")?;
    let entry = auths.get(host).or_else(|| auths.get(format!("https://{host}")))?;
    let decoded = base64_decode(entry.get("auth")?.as_str()?)?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(Credentials { user: user.to_string(), password: password.to_string() })
}

/// What a 401 answer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// Get a token from `realm`, with `service` and `scope` as query parameters.
    Bearer {
        realm: String,
        params: BTreeMap<String, String>,
    },
}

/// Parses a `WWW-Authenticate` value; `None` for schemes mini does not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').map_or((after, ""), |(v, a)| (v, a)),
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = after.trim_start_matches([',', ' ']);
    }
    let realm = params.remove("realm")?;
    Some(Challenge::Bearer { realm, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_give_realm_service_and_scope() {
        let header =
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#;
        let Some(Challenge::Bearer { realm, params }) = parse_challenge(header) else { panic!("not bearer") };
        assert_eq!(realm, "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull,push");
        assert_eq!(parse_challenge(r#"Basic realm="x""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn docker_config_auths_are_base64_user_colon_password() {
        let config = br#"{"auths":{"https://r.example":{"auth":"dXNlcjpwYTpzcw=="}}}"#;
        let creds = from_docker_config(config, "r.example").unwrap();
        assert_eq!((creds.user.as_str(), creds.password.as_str()), ("user", "pa:ss"));
        assert_eq!(creds.basic_header(), "Basic dXNlcjpwYTpzcw==");
        assert!(!format!("{creds:?}").contains("pa:ss"));
        assert!(from_docker_config(config, "other.example").is_none());
    }
}
