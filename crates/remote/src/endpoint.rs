//! Where the remote build service is: `grpc://HOST:PORT[/INSTANCE]`, the
//! form `mini build --remote` and `mini worker --server` take. The
//! instance name (which may hold slashes, as REAPI allows) selects one of
//! the server's instances; none means the default, empty one.

use crate::error::{RemoteError, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://HOST:PORT`, as the gRPC transport takes it.
    pub uri: String,
    pub instance: String,
    /// What the user wrote, for messages.
    pub text: String,
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Endpoint> {
        let bad = |reason: &str| RemoteError::BadUrl { url: text.to_string(), reason: reason.to_string() };
        let rest = match text.split_once("://") {
            Some(("grpc", rest)) => rest,
            Some(("grpcs", _)) => {
                return Err(bad(
                    "TLS (grpcs://) is not supported; use grpc:// on a trusted network or through a tunnel",
                ))
            }
            Some((scheme, _)) => return Err(bad(&format!("the scheme '{scheme}' is not grpc"))),
            None => return Err(bad("there is no grpc:// scheme")),
        };
        let (authority, instance) = rest.split_once('/').unwrap_or((rest, ""));
        let instance = instance.trim_end_matches('/');
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("there is no :PORT"))?;
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            return Err(bad("the host is empty or not a host name"));
        }
        let port: u16 = port.parse().map_err(|_| bad(&format!("'{port}' is not a port number")))?;
        if port == 0 {
            return Err(bad("port 0 is not a port to connect to"));
        }
        check_instance(instance).map_err(|reason| bad(&reason))?;
        Ok(Endpoint { uri: format!("http://{host}:{port}"), instance: instance.to_string(), text: text.to_string() })
    }

    /// This endpoint with another instance name (`mini worker --instance`),
    /// checked as one in the URL is.
    pub fn with_instance(mut self, instance: &str) -> Result<Endpoint> {
        let instance = instance.trim_end_matches('/');
        check_instance(instance)
            .map_err(|reason| RemoteError::BadUrl { url: format!("{} (instance {instance})", self.text), reason })?;
        self.instance = instance.to_string();
        Ok(self)
    }
}

/// Why `instance` cannot name an instance, if it cannot.
fn check_instance(instance: &str) -> std::result::Result<(), String> {
    if instance.split('/').any(|part| matches!(part, "blobs" | "uploads" | "operations" | "actions")) {
        return Err(
            "an instance name may not hold a segment REAPI reserves (blobs, uploads, operations, actions)".into()
        );
    }
    if instance.contains(['?', '#', ' ']) {
        return Err("the instance name holds a character a resource name cannot".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_instances() {
        let e = Endpoint::parse("grpc://127.0.0.1:50051").unwrap();
        assert_eq!((e.uri.as_str(), e.instance.as_str()), ("http://127.0.0.1:50051", ""));
        let e = Endpoint::parse("grpc://build.example:8980/team/main").unwrap();
        assert_eq!((e.uri.as_str(), e.instance.as_str()), ("http://build.example:8980", "team/main"));
        let e = Endpoint::parse("grpc://[::1]:50051/").unwrap();
        assert_eq!(e.uri, "http://[::1]:50051");
        let e = Endpoint::parse("grpc://h:1").unwrap().with_instance("team/main").unwrap();
        assert_eq!((e.uri.as_str(), e.instance.as_str()), ("http://h:1", "team/main"));
        assert!(Endpoint::parse("grpc://h:1").unwrap().with_instance("a/uploads").is_err());
        for bad in [
            "http://h:1",
            "h:1",
            "grpc://h",
            "grpc://h:x",
            "grpc://:1",
            "grpc://h:0",
            "grpcs://h:1",
            "grpc://h:1/a/blobs",
        ] {
            assert!(matches!(Endpoint::parse(bad), Err(RemoteError::BadUrl { .. })), "{bad}");
        }
    }
}
