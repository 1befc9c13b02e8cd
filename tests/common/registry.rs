//! A private image registry for the tests that push to one: Debian's
//! `docker-registry`, serving 127.0.0.1 on a free port, its config file and
//! storage in a directory the test owns, killed on drop.
//!
//! [`installed`] says whether it is here (under `CI=true` a missing one
//! fails the test, elsewhere the test skips with a message);
//! [`Registry::start`] serves plain HTTP with no authentication, and
//! [`Registry::start_with`] takes [`Options`] (htpasswd authentication,
//! TLS).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::clients::ci;
use super::{free_port, text};

/// Where Debian installs the registry.
const BINARY: &str = "/usr/bin/docker-registry";

/// Whether docker-registry is installed: `false` (after saying so) when it
/// is not, so the test skips; under `CI=true` its absence fails the test.
pub fn installed() -> bool {
    if Path::new(BINARY).is_file() {
        return true;
    }
    assert!(!ci(), "docker-registry is required when CI=true: run scripts/install-prerequisites");
    eprintln!("skipping: docker-registry is not installed (scripts/install-prerequisites installs it)");
    false
}

/// How a [`Registry`] serves, beyond plain HTTP with no authentication.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// The `auth:` section of the config (YAML, indented under `auth:`).
    pub auth: Option<&'a str>,
    /// HTTPS with this certificate and key file.
    pub tls: Option<(&'a Path, &'a Path)>,
}

/// A docker-registry serving 127.0.0.1:<port>, killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub host: String,
}

impl Registry {
    /// Starts a registry with its config (`registry.yml`) and storage
    /// (`registry-data`) in `dir`, serving plain HTTP to anyone; returns
    /// once it accepts connections.
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, Options::default())
    }

    /// [`Registry::start`], serving as `options` say.
    pub fn start_with(dir: &Path, options: Options) -> Registry {
        let host = format!("127.0.0.1:{}", free_port());
        let tls = options.tls.map_or(String::new(), |(cert, key)| {
            format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display())
        });
        let auth = options.auth.map(|a| format!("auth:\n{a}")).unwrap_or_default();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n{tls}{auth}",
                dir.join("registry-data").display()
            ),
        )
        .expect("write registry.yml");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { child, host };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&registry.host).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start listening on {}", registry.host);
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// The `docker://` reference of `repo` (with its `:tag`) here.
    pub fn url(&self, repo: &str) -> String {
        format!("docker://{}/{repo}", self.host)
    }

    /// The body of a plain-HTTP `GET path`, accepting OCI manifests; panics
    /// unless the answer is 200.
    pub fn get(&self, path: &str) -> Vec<u8> {
        let mut stream = TcpStream::connect(&self.host).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n",
            self.host
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response");
        let head = text(&response[..split]);
        assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "GET {path}:\n{head}");
        response[split + 4..].to_vec()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
