//! A Docker daemon as a copy destination, through the Docker Engine API:
//! the socket `DOCKER_HOST` names (`unix://PATH` or `tcp://HOST:PORT`), or
//! `/var/run/docker.sock`. Two calls are used: the layers the daemon holds
//! (`GET /images/json`, then each image's `RootFS.Layers`), and `POST
//! /images/load` with a docker-archive as the body. A layer whose chain
//! (it and every layer under it) the daemon already holds is listed in the
//! archive's manifest but not sent: a graph-driver daemon's loader looks a
//! layer up by its chain before it reads the file. A daemon on containerd's
//! image store (`GET /info` names a snapshotter) imports every blob listed,
//! so it is sent every layer.
//!
//! HTTP/1.1 is written here by hand, over a Unix or TCP stream: the API
//! needs two requests, a chunked upload and a plain reply, and no HTTP
//! client crate in the tree speaks over a Unix socket.

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde_json::Value;

use crate::error::{ImageError, Result};

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    Unix(PathBuf),
    Tcp(String),
}

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

fn error(message: impl Into<String>) -> ImageError {
    ImageError::Daemon(message.into())
}

impl Daemon {
    /// The daemon `DOCKER_HOST` names, or the default socket.
    pub fn from_env() -> Result<Daemon> {
        Daemon::parse(std::env::var("DOCKER_HOST").ok().as_deref().filter(|h| !h.is_empty()))
    }

    fn parse(host: Option<&str>) -> Result<Daemon> {
        match host {
            None => Ok(Daemon::Unix(DEFAULT_SOCKET.into())),
            Some(host) => {
                if let Some(path) = host.strip_prefix("unix://") {
                    Ok(Daemon::Unix(path.into()))
                } else if let Some(address) = host.strip_prefix("tcp://") {
                    if std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty()) {
                        return Err(error(
                            "DOCKER_TLS_VERIFY is set: mini speaks plain HTTP to a daemon; use its unix socket",
                        ));
                    }
                    Ok(Daemon::Tcp(address.trim_end_matches('/').to_string()))
                } else {
                    Err(error(format!("DOCKER_HOST '{host}' is neither unix://PATH nor tcp://HOST:PORT")))
                }
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Daemon::Unix(path) => format!("the Docker daemon at unix://{}", path.display()),
            Daemon::Tcp(address) => format!("the Docker daemon at tcp://{address}"),
        }
    }

    fn connect(&self) -> Result<Box<dyn Stream>> {
        let failed = |e: io::Error| error(format!("cannot reach {}: {e}", self.describe()));
        Ok(match self {
            Daemon::Unix(path) => Box::new(UnixStream::connect(path).map_err(failed)?),
            Daemon::Tcp(address) => Box::new(TcpStream::connect(address).map_err(failed)?),
        })
    }

    /// Sends one request; `body` writes a chunked body. Returns the status
    /// and the reply's body.
    fn request(&self, method: &str, path: &str, body: Option<Body<'_>>) -> Result<(u16, Vec<u8>)> {
        let mut stream = self.connect()?;
        let failed = |e: io::Error| error(format!("talking to {}: {e}", self.describe()));
        {
            let mut out = BufWriter::with_capacity(1 << 20, &mut stream);
            write!(out, "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: mini\r\nConnection: close\r\n")
                .map_err(failed)?;
            match body {
                None => out.write_all(b"\r\n").map_err(failed)?,
                Some(body) => {
                    out.write_all(b"Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n")
                        .map_err(failed)?;
                    let mut chunked = BufWriter::with_capacity(1 << 20, Chunked(&mut out));
                    body(&mut chunked)?;
                    chunked.flush().map_err(failed)?;
                    drop(chunked);
                    out.write_all(b"0\r\n\r\n").map_err(failed)?;
                }
            }
            out.flush().map_err(failed)?;
        }
        read_reply(BufReader::new(stream)).map_err(failed)
    }

    /// The chains of layers the daemon holds: each image's diff_ids and
    /// every prefix of them.
    pub fn layer_chains(&self) -> Result<BTreeSet<Vec<String>>> {
        let images = self.get_json("/images/json")?;
        let mut chains = BTreeSet::new();
        for image in images.as_array().into_iter().flatten() {
            let Some(id) = image.get("Id").and_then(Value::as_str) else { continue };
            if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == ':') {
                continue;
            }
            // An image removed since the list was made is skipped.
            let Some(details) = self.get_json_if_present(&format!("/images/{id}/json"))? else { continue };
            let layers: Vec<String> = details
                .pointer("/RootFS/Layers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect();
            for n in 1..=layers.len() {
                chains.insert(layers[..n].to_vec());
            }
        }
        Ok(chains)
    }

    /// Whether the daemon keeps images in containerd's image store (a
    /// snapshotter instead of a graph driver). Its loader imports every
    /// blob the manifest lists, so no layer may be left out.
    pub fn uses_containerd_store(&self) -> Result<bool> {
        let info = self.get_json("/info")?;
        let statuses = info.get("DriverStatus").and_then(Value::as_array).into_iter().flatten();
        Ok(statuses
            .flat_map(|pair| pair.as_array().into_iter().flatten())
            .any(|v| v.as_str().is_some_and(|s| s.contains("io.containerd.snapshotter"))))
    }

    fn get_json_if_present(&self, path: &str) -> Result<Option<Value>> {
        let (status, body) = self.request("GET", path, None)?;
        if status == 404 {
            return Ok(None);
        }
        self.json_reply(path, status, &body).map(Some)
    }

    fn get_json(&self, path: &str) -> Result<Value> {
        let (status, body) = self.request("GET", path, None)?;
        self.json_reply(path, status, &body)
    }

    fn json_reply(&self, path: &str, status: u16, body: &[u8]) -> Result<Value> {
        if status != 200 {
            return Err(error(format!("{} answered {status} to GET {path}: {}", self.describe(), excerpt(body))));
        }
        serde_json::from_slice(body)
            .map_err(|e| error(format!("{} answered GET {path} with no JSON: {e}", self.describe())))
    }

    /// Loads the docker-archive `write` writes; returns what the daemon
    /// said it loaded.
    pub fn load(&self, write: Body<'_>) -> Result<String> {
        let (status, body) = self.request("POST", "/images/load?quiet=1", Some(write))?;
        if status != 200 {
            return Err(error(format!("{} refused the image ({status}): {}", self.describe(), excerpt(&body))));
        }
        // A stream of JSON messages; an error comes as one of them.
        let mut loaded = Vec::new();
        for message in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
            let message =
                message.map_err(|e| error(format!("{} answered the load with no JSON: {e}", self.describe())))?;
            if let Some(problem) = message.get("error").and_then(Value::as_str) {
                return Err(error(format!("{} could not load the image: {problem}", self.describe())));
            }
            if let Some(text) = message.get("stream").and_then(Value::as_str) {
                loaded.push(text.trim().to_string());
            }
        }
        Ok(loaded.join("; "))
    }
}

/// Writes a request's body.
type Body<'a> = &'a mut dyn FnMut(&mut dyn Write) -> Result<()>;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Writes each write as one HTTP chunk.
struct Chunked<W: Write>(W);

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.0, "{:x}\r\n", buf.len())?;
        self.0.write_all(buf)?;
        self.0.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The largest reply body read.
const MAX_REPLY: u64 = 64 << 20;

/// Reads an HTTP/1.1 reply: the status and the body (chunked, sized, or
/// up to the end of the connection).
fn read_reply(mut reader: impl BufRead) -> io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP reply: '{}'", line.trim())))?;
    let (mut chunked, mut length) = (false, None);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            "content-length" => length = value.trim().parse::<u64>().ok(),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::other("a bad chunk size in the reply"))?;
            if size == 0 || body.len() as u64 + size > MAX_REPLY {
                break;
            }
            (&mut reader).take(size).read_to_end(&mut body)?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else {
        let limit = length.unwrap_or(MAX_REPLY).min(MAX_REPLY);
        reader.take(limit).read_to_end(&mut body)?;
    }
    Ok((status, body))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_docker_host() {
        assert_eq!(Daemon::parse(None).unwrap(), Daemon::Unix(DEFAULT_SOCKET.into()));
        assert_eq!(Daemon::parse(Some("unix:///run/d.sock")).unwrap(), Daemon::Unix("/run/d.sock".into()));
        assert_eq!(Daemon::parse(Some("tcp://127.0.0.1:2375")).unwrap(), Daemon::Tcp("127.0.0.1:2375".into()));
        assert!(Daemon::parse(Some("ssh://host")).is_err());
    }

    #[test]
    fn replies_are_read_chunked_or_sized() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(read_reply(&chunked[..]).unwrap(), (200, b"hello world".to_vec()));
        let sized = b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope and more";
        assert_eq!(read_reply(&sized[..]).unwrap(), (404, b"nope".to_vec()));
        assert!(read_reply(&b"garbage\r\n\r\n"[..]).is_err());
    }

    #[test]
    fn bodies_go_as_chunks() {
        let mut out = Vec::new();
        Chunked(&mut out).write_all(b"abc").unwrap();
        assert_eq!(out, b"3\r\nabc\r\n");
    }
}
