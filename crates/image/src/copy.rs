//! `mini image copy` and `mini image stream`: a streamed image
//! (`streamLayeredImage`'s description, see `stream`) written wherever it
//! is wanted, with skopeo's transport names:
//!
//! | destination | what is written |
//! |---|---|
//! | `docker-archive:FILE[:NAME:TAG]`, `docker-archive:-` | a docker-archive file (written beside, then renamed), or standard output |
//! | `oci:DIR[:TAG]` | an OCI layout; only the blobs it lacks are made, its other tags are kept |
//! | `docker-daemon:NAME[:TAG]` | loaded into the Docker daemon (`daemon`); layers it holds are not sent |
//! | `docker://HOST/REPO[:TAG]` | a registry push (the CLI hands it to `mini_registry`) |
//!
//! Layers are made from the store as they are written (`produce`) and
//! checked against the description's diff_ids.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use mini_store::encoding::hex;

use crate::compress::Compressor;
use crate::daemon::Daemon;
use crate::docker_archive::{self, DockerArchive, Image};
use crate::error::{io_err, ImageError, Result};
use crate::layer_cache::temporary;
use crate::stream::StreamImage;

/// Where an image is copied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `None`: standard output.
    DockerArchive {
        file: Option<PathBuf>,
        repo_tag: Option<String>,
    },
    Oci {
        dir: PathBuf,
        tag: Option<String>,
    },
    DockerDaemon {
        repo_tag: String,
    },
    /// The reference after `docker://`.
    Registry(String),
}

fn bad(destination: &str, message: impl Into<String>) -> ImageError {
    ImageError::BadDestination { destination: destination.into(), message: message.into() }
}

/// `NAME[:TAG]` with `latest` when no tag is given.
fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

impl Destination {
    pub fn parse(text: &str) -> Result<Destination> {
        let (transport, rest) = text.split_once(':').ok_or_else(|| {
            bad(text, "expected TRANSPORT:WHERE: docker-archive:FILE, oci:DIR[:TAG], docker-daemon:NAME:TAG or docker://HOST/REPO:TAG")
        })?;
        if rest.is_empty() {
            return Err(bad(text, format!("nothing after '{transport}:'")));
        }
        Ok(match transport {
            "docker-archive" => {
                let (file, repo_tag) = match rest.split_once(':') {
                    Some((file, name)) => (file, Some(with_tag(name))),
                    None => (rest, None),
                };
                let file = if file == "-" { None } else { Some(PathBuf::from(file)) };
                Destination::DockerArchive { file, repo_tag }
            }
            "oci" => match rest.split_once(':') {
                Some((dir, tag)) if !tag.is_empty() => Destination::Oci { dir: dir.into(), tag: Some(tag.to_string()) },
                _ => Destination::Oci { dir: rest.trim_end_matches(':').into(), tag: None },
            },
            "docker-daemon" => Destination::DockerDaemon { repo_tag: with_tag(rest) },
            "docker" => {
                let reference =
                    rest.strip_prefix("//").ok_or_else(|| bad(text, "a registry is docker://HOST/REPO[:TAG]"))?;
                Destination::Registry(reference.to_string())
            }
            other => {
                return Err(bad(
                    text,
                    format!("unknown transport '{other}': use docker-archive:, oci:, docker-daemon: or docker://"),
                ))
            }
        })
    }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Layers made and written.
    pub written: usize,
    /// Layers the destination already had.
    pub skipped: usize,
    /// What the destination said, if anything.
    pub message: String,
}

/// The image to write: the stream image's layers and config as described.
fn image<'a>(
    stream: &'a StreamImage,
    config: &'a (dyn Fn(&[[u8; 32]]) -> String + Sync),
    repo_tag: Option<String>,
    tag: Option<String>,
) -> Image<'a> {
    Image {
        layers: &stream.layers,
        config,
        repo_tag: repo_tag.unwrap_or_else(|| stream.description.repo_tag.clone()),
        tag: tag.unwrap_or_else(|| stream.description.tag.clone()),
    }
}

/// Copies `stream` to `destination` (not a registry: see the module doc);
/// `stdout` takes `docker-archive:-`.
pub fn copy(stream: &StreamImage, destination: &Destination, stdout: &mut dyn Write) -> Result<Copied> {
    let config = |_: &[[u8; 32]]| stream.config.clone();
    let sizes: Vec<u64> = stream.layers.iter().map(|l| l.known.map(|k| k.size).unwrap_or_default()).collect();
    let total = stream.layers.len();
    match destination {
        Destination::DockerArchive { file, repo_tag } => {
            let image = image(stream, &config, repo_tag.clone(), None);
            let plan = DockerArchive::plan(&image, sizes, BTreeSet::new());
            match file {
                None => {
                    plan.write(stdout)?;
                }
                Some(path) => write_file(path, |out| plan.write(out).map(|_| ()))?,
            }
            Ok(Copied { written: total, skipped: 0, message: String::new() })
        }
        Destination::Oci { dir, tag } => {
            let image = image(stream, &config, None, tag.clone());
            let written = docker_archive::write_oci_layout(&image, dir, Compressor::None, &[])?;
            Ok(Copied { written: written.written, skipped: total - written.written, message: String::new() })
        }
        Destination::DockerDaemon { repo_tag } => {
            let daemon = Daemon::from_env()?;
            let chains = if daemon.uses_containerd_store()? { BTreeSet::new() } else { daemon.layer_chains()? };
            let diff_ids: Vec<String> =
                stream.description.layers.iter().map(|l| format!("sha256:{}", hex(&l.tar.sha256))).collect();
            let omit: BTreeSet<usize> = (0..total).filter(|i| chains.contains(&diff_ids[..=*i])).collect();
            let image = image(stream, &config, Some(repo_tag.clone()), None);
            let plan = DockerArchive::plan(&image, sizes, omit.clone());
            let message = daemon.load(&mut |out| plan.write(out).map(|_| ()))?;
            Ok(Copied { written: total - omit.len(), skipped: omit.len(), message })
        }
        Destination::Registry(_) => Err(bad("docker://", "a registry push goes through mini_registry")),
    }
}

/// Writes a file beside `path` and renames it into place, so a failed
/// copy leaves nothing that looks whole.
fn write_file(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let tmp = temporary(path);
    let file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let result = write(&mut out).and_then(|()| {
        let file = out.into_inner().map_err(|e| io_err("writing", &tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err("writing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err("writing", path))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_use_skopeo_names() {
        let parse = |t: &str| Destination::parse(t).unwrap();
        assert_eq!(parse("docker-archive:-"), Destination::DockerArchive { file: None, repo_tag: None });
        assert_eq!(
            parse("docker-archive:/tmp/a.tar:hello"),
            Destination::DockerArchive { file: Some("/tmp/a.tar".into()), repo_tag: Some("hello:latest".into()) }
        );
        assert_eq!(parse("oci:out:v1"), Destination::Oci { dir: "out".into(), tag: Some("v1".into()) });
        assert_eq!(parse("oci:out"), Destination::Oci { dir: "out".into(), tag: None });
        assert_eq!(
            parse("docker-daemon:example/hello:v2"),
            Destination::DockerDaemon { repo_tag: "example/hello:v2".into() }
        );
        assert_eq!(
            parse("docker-daemon:localhost:5000/hello"),
            Destination::DockerDaemon { repo_tag: "localhost:5000/hello:latest".into() }
        );
        assert_eq!(parse("docker://localhost:5000/hello:v1"), Destination::Registry("localhost:5000/hello:v1".into()));
        for bad in ["file.tar", "oci:", "ftp:x", "docker:host/x"] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }
}
