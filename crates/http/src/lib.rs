//! The one place mini makes HTTP clients (for `builtin:fetchurl` in
//! mini-build, binary caches in mini-cache and registries in
//! mini-registry), so every connection trusts the same certificate
//! authorities:
//!
//! 1. the PEM bundle `SSL_CERT_FILE` names, if set (as curl, git and
//!    OpenSSL honour it): the way to trust a private registry's own CA;
//! 2. else the system's bundle, `/etc/ssl/certs/ca-certificates.crt`
//!    (Debian's, where `update-ca-certificates` adds local CAs);
//! 3. else the Mozilla roots compiled into the binary.
//!
//! This crate moves bytes and never judges them: a fixed-output download is
//! checked by hash in mini-build, a cache's by signature and hash in
//! mini-cache, a registry's answers in mini-registry. Builds themselves have
//! no network except fixed-output ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Where Debian (and derivatives) keep the system's trusted CAs.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot read the certificate bundle '{}' (from {origin}): {message}", path.display())]
    Bundle { path: PathBuf, origin: &'static str, message: String },
}

/// How a client behaves besides what it trusts.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for any one read.
    pub read_timeout: Duration,
    /// Redirects followed (0: a redirect is returned as it is).
    pub max_redirects: u32,
}

/// An agent with `options`, trusting the CAs of [`root_certs`]. HTTP status
/// codes are returned, not turned into errors: callers explain them.
pub fn agent(options: ClientOptions) -> Result<ureq::Agent, HttpError> {
    let tls = TlsConfig::builder().root_certs(root_certs()?).build();
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .http_status_as_error(false)
        .max_redirects(options.max_redirects)
        .tls_config(tls)
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

/// A request's error as a message; a certificate that is not trusted also
/// says how to trust it.
pub fn explain(error: &ureq::Error) -> String {
    let message = error.to_string();
    if message.contains("certificate") {
        format!(
            "{message} (a server whose certificate authority is its own is trusted by pointing \
             SSL_CERT_FILE at a PEM bundle holding that CA)"
        )
    } else {
        message
    }
}

/// The CAs HTTPS trusts; see the module's documentation for the order.
pub fn root_certs() -> Result<RootCerts, HttpError> {
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        return bundle(Path::new(&file), "SSL_CERT_FILE");
    }
    if Path::new(SYSTEM_BUNDLE).is_file() {
        return bundle(Path::new(SYSTEM_BUNDLE), "the system");
    }
    Ok(RootCerts::WebPki)
}

/// The certificates of the PEM bundle at `path`; at least one is required.
fn bundle(path: &Path, origin: &'static str) -> Result<RootCerts, HttpError> {
    let error = |message: String| HttpError::Bundle { path: path.to_path_buf(), origin, message };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certificates = parse_certificates(&pem).map_err(error)?;
    Ok(RootCerts::Specific(Arc::new(certificates)))
}

fn parse_certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(e) => return Err(format!("it is not valid PEM: {e}")),
        }
    }
    if certificates.is_empty() {
        return Err("it holds no certificate".into());
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real certificate (a throwaway self-signed one), in PEM.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBfDCCASOgAwIBAgIUet4L/5DvKmZ5LGRL1z4jvteQtJMwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbWluaS10ZXN0MB4XDTI2MTEyNjAzNDM0M1oXDTM2MTEyMzAz
NDM0M1owFDESMBAGA1UEAwwJbWluaS10ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEm08RU0g4INqwlja+/FbmIs4Ir2K3h81BDDzrbZyt+HpCfbr58Wg0RwB7
/AKzuXlJplKbE0w1Fae1BOMKnmFcV6NTMFEwHQYDVR0OBBYEFNd90bcbL/t7oZCc
DGrvvzTyI5o3MB8GA1UdIwQYMBaAFNd90bcbL/t7oZCcDGrvvzTyI5o3MA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgF2834EssngNAT3MN5fWKBuGS
6CT8xTDpnp9Df/EgwWwCIAXxBfLO2ngPcqsTcUwQcW/Hd6A/InTYo57RcKIqoBc1
-----END CERTIFICATE-----
";

    #[test]
    fn bundles_must_hold_certificates() {
        assert!(parse_certificates(b"").unwrap_err().contains("holds no certificate"));
        assert!(parse_certificates(b"just text\n").unwrap_err().contains("holds no certificate"));
        let two = format!("{CERT}{CERT}");
        assert_eq!(parse_certificates(two.as_bytes()).unwrap().len(), 2);
    }
}
