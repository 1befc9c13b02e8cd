//! Talking to a cache: `file:///DIR` reads and writes a directory,
//! `http(s)://…` uses GET, HEAD and PUT. Paths inside a cache are relative
//! (`nix-cache-info`, `<hash>.narinfo`, `nar/<hash>.nar.xz`).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Duration;

use crate::{CacheError, Result};

/// The most bytes [`Remote::get`] reads: far more than a narinfo of
/// thousands of references needs.
pub const MAX_SMALL_FILE: u64 = 1 << 20;

/// A binary cache's location.
#[derive(Debug, Clone)]
pub enum Remote {
    Dir(PathBuf),
    Http { base: String, agent: ureq::Agent },
}

fn transfer(action: &'static str, what: &str, message: impl ToString) -> CacheError {
    CacheError::Transfer { action, what: what.into(), message: message.to_string() }
}

impl Remote {
    pub fn parse(url: &str) -> Result<Remote> {
        if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(CacheError::Url(url.into()));
            }
            return Ok(Remote::Dir(PathBuf::from(dir)));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            let options = mini_http::ClientOptions {
                connect_timeout: Duration::from_secs(15),
                read_timeout: Duration::from_secs(60),
                max_redirects: 10,
            };
            let base = url.trim_end_matches('/').to_string();
            return Ok(Remote::Http { base, agent: mini_http::agent(options)? });
        }
        Err(CacheError::Url(url.into()))
    }

    /// The URL of `rel`, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        match self {
            Remote::Dir(dir) => format!("file://{}", dir.join(rel).display()),
            Remote::Http { base, .. } => format!("{base}/{rel}"),
        }
    }

    /// Whether the cache has `rel`.
    pub fn exists(&self, rel: &str) -> Result<bool> {
        match self {
            Remote::Dir(dir) => Ok(dir.join(rel).exists()),
            Remote::Http { agent, .. } => {
                let url = self.url_of(rel);
                let response =
                    agent.head(&url).call().map_err(|e| transfer("cannot reach", &url, mini_http::explain(&e)))?;
                Ok(response.status().is_success())
            }
        }
    }

    /// Opens `rel` for reading; `None` if the cache does not have it.
    pub fn open(&self, rel: &str) -> Result<Option<Box<dyn Read + Send>>> {
        let url = self.url_of(rel);
        match self {
            Remote::Dir(dir) => match File::open(dir.join(rel)) {
                Ok(file) => Ok(Some(Box::new(file))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(transfer("cannot read", &url, e)),
            },
            Remote::Http { agent, .. } => {
                let response =
                    agent.get(&url).call().map_err(|e| transfer("cannot download", &url, mini_http::explain(&e)))?;
                match response.status().as_u16() {
                    200..=299 => Ok(Some(Box::new(response.into_body().into_reader()))),
                    404 | 410 => Ok(None),
                    status => Err(transfer("cannot download", &url, format!("the server answered {status}"))),
                }
            }
        }
    }

    /// Reads all of a small file such as a narinfo: at most
    /// [`MAX_SMALL_FILE`] bytes, so a hostile cache cannot fill memory.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let Some(reader) = self.open(rel)? else { return Ok(None) };
        let mut bytes = Vec::new();
        let url = self.url_of(rel);
        reader.take(MAX_SMALL_FILE + 1).read_to_end(&mut bytes).map_err(|e| transfer("cannot read", &url, e))?;
        if bytes.len() as u64 > MAX_SMALL_FILE {
            return Err(transfer("cannot read", &url, format!("it is larger than {MAX_SMALL_FILE} bytes")));
        }
        Ok(Some(bytes))
    }

    /// Stores `source` as `rel`; a directory cache sees it appear whole.
    pub fn put(&self, rel: &str, source: &mut dyn Read) -> Result<()> {
        let url = self.url_of(rel);
        match self {
            Remote::Dir(dir) => {
                let target = dir.join(rel);
                let parent = target.parent().unwrap_or(dir);
                fs::create_dir_all(parent).map_err(|e| transfer("cannot create a directory for", &url, e))?;
                let tmp = parent.join(format!(".tmp-{}", std::process::id()));
                let written = File::create(&tmp).and_then(|mut file| io::copy(source, &mut file).and(file.sync_all()));
                written.and_then(|()| fs::rename(&tmp, &target)).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    transfer("cannot write", &url, e)
                })
            }
            Remote::Http { agent, .. } => {
                let response = agent
                    .put(&url)
                    .send(ureq::SendBody::from_reader(source))
                    .map_err(|e| transfer("cannot upload", &url, mini_http::explain(&e)))?;
                let status = response.status();
                if !status.is_success() {
                    return Err(transfer("cannot upload", &url, format!("the server answered {status}")));
                }
                Ok(())
            }
        }
    }
}
