//! Pushing one image: every blob (config and compressed layers) is made
//! present on the registry — found there, mounted from another repository
//! this machine pushed it to, or uploaded whole — and only then the
//! manifest is put under the tag.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::{json, Value};

use mini_image::compress::Compressor;
use mini_image::inspect::{self, LocatedImage};
use mini_image::layer_cache::BlobCache;
use mini_image::oci::{CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};

use crate::client::{Body, Client, Reply};
use crate::reference::Reference;
use crate::{auth, RegistryError, Result};

/// How to push.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub compression: Compressor,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
}

/// How a blob came to be on the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exists,
    Mounted,
    Uploaded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Exists => "exists",
            Outcome::Mounted => "mounted",
            Outcome::Uploaded => "uploaded",
        }
    }
}

/// One blob pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub outcome: Outcome,
    pub digest: String,
    pub size: u64,
}

/// What a push did.
#[derive(Debug)]
pub struct Report {
    /// Config first, then the layers bottom up (each digest once).
    pub blobs: Vec<Pushed>,
    pub manifest_digest: String,
    pub manifest_size: u64,
}

impl Report {
    /// Bytes of blobs uploaded and of the manifest.
    pub fn bytes_sent(&self) -> u64 {
        let uploaded: u64 = self.blobs.iter().filter(|b| b.outcome == Outcome::Uploaded).map(|b| b.size).sum();
        uploaded + self.manifest_size
    }
}

/// Where a blob's bytes are.
pub(crate) enum Data<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// Pushes the image at `image` (docker-archive or OCI layout) to
/// `reference`. `state` (a store's root) is where compressed layers (the
/// layer cache's [`BlobCache`]) and the record of pushed digests
/// (`push-cache.json`) are kept.
pub fn push(state: &Path, image: &Path, reference: &Reference, options: Options) -> Result<Report> {
    push_image(state, &inspect::locate(image)?, reference, options)
}

/// Pushes `image` (located on disk by `inspect::locate`, or a streamed
/// image's layers made from the store) to `reference`; see [`push`].
pub fn push_image(state: &Path, image: &LocatedImage, reference: &Reference, options: Options) -> Result<Report> {
    let layers = BlobCache::under(state).compressed(&image.layers, options.compression)?;
    let client = Client::new(&reference.host, options.insecure, auth::lookup(&reference.host))?;
    let ping = client.send("GET", &client.url("/v2/"), Body::Empty, &format!("reaching {}", reference.host))?;
    expect(&ping, &[200], &format!("reaching {}", reference.host))?;

    let config_digest = crate::sha256_digest(&image.config);
    let mut wanted: Vec<(String, u64, Data<'_>)> =
        vec![(config_digest.clone(), image.config.len() as u64, Data::Bytes(&image.config))];
    let mut seen = HashSet::from([config_digest.clone()]);
    for blob in &layers {
        if seen.insert(blob.digest.clone()) {
            wanted.push((blob.digest.clone(), blob.size, Data::File(&blob.path)));
        }
    }
    let record_path = state.join("push-cache.json");
    let mut record = PushRecord::load(&record_path);
    let outcomes: Vec<Result<Outcome>> = wanted
        .par_iter()
        .map(|(digest, _, data)| {
            let from = record.repo_with(&reference.host, digest).filter(|r| *r != reference.repo);
            push_blob(&client, &reference.repo, digest, data, from)
        })
        .collect();
    let mut pushed = Vec::with_capacity(wanted.len());
    for ((digest, size, _), outcome) in wanted.iter().zip(outcomes) {
        pushed.push(Pushed { outcome: outcome?, digest: digest.clone(), size: *size });
    }

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": image.config.len() },
        "layers": layers.iter().map(|b| json!({
            "mediaType": options.compression.media_type(),
            "digest": b.digest,
            "size": b.size,
        })).collect::<Vec<_>>(),
    })
    .to_string();
    let url = client.url(&format!("/v2/{}/manifests/{}", reference.repo, reference.tag));
    let what = format!("putting the manifest of {reference}");
    let reply = client.send("PUT", &url, Body::Bytes(manifest.as_bytes(), MANIFEST_MEDIA_TYPE), &what)?;
    expect(&reply, &[201, 200], &what)?;

    for blob in &pushed {
        record.remember(&reference.host, &blob.digest, &reference.repo);
    }
    // The record only saves uploads later; failing to write it loses nothing.
    let _ = record.save(&record_path);
    Ok(Report {
        blobs: pushed,
        manifest_digest: crate::sha256_digest(manifest.as_bytes()),
        manifest_size: manifest.len() as u64,
    })
}

pub(crate) fn push_blob(
    client: &Client,
    repo: &str,
    digest: &str,
    data: &Data<'_>,
    from: Option<&str>,
) -> Result<Outcome> {
    let what = format!("pushing blob {digest}");
    let head = client.send("HEAD", &client.url(&format!("/v2/{repo}/blobs/{digest}")), Body::Empty, &what)?;
    match head.status {
        200 => return Ok(Outcome::Exists),
        404 => {}
        _ => expect(&head, &[200, 404], &what)?,
    }
    let mut location = None;
    if let Some(from) = from {
        let url = client.url(&format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"));
        let reply = client.send("POST", &url, Body::Empty, &what)?;
        match reply.status {
            201 => return Ok(Outcome::Mounted),
            // Not mountable: the registry opened an ordinary upload instead.
            202 => location = reply.location,
            _ => {}
        }
    }
    let location = match location {
        Some(location) => location,
        None => {
            let url = client.url(&format!("/v2/{repo}/blobs/uploads/"));
            let reply = client.send("POST", &url, Body::Empty, &what)?;
            expect(&reply, &[202], &what)?;
            reply.location.ok_or_else(|| RegistryError::Http {
                what: what.clone(),
                message: "the registry started an upload but gave no Location".into(),
            })?
        }
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{separator}digest={digest}");
    let body = match data {
        Data::Bytes(bytes) => Body::Bytes(bytes, "application/octet-stream"),
        Data::File(path) => Body::File(path),
    };
    let reply = client.send("PUT", &url, body, &what)?;
    expect(&reply, &[201], &what)?;
    Ok(Outcome::Uploaded)
}

/// An error unless the registry answered one of `statuses`.
pub(crate) fn expect(reply: &Reply, statuses: &[u16], what: &str) -> Result<()> {
    if statuses.contains(&reply.status) {
        return Ok(());
    }
    let detail = crate::excerpt::excerpt(&reply.body);
    let message = if detail.is_empty() {
        format!("the registry answered {}", reply.status)
    } else {
        format!("the registry answered {}: {detail}", reply.status)
    };
    Err(RegistryError::Http { what: what.to_string(), message })
}

/// Which repository on each registry this machine last pushed each digest
/// to: the `from` of a cross-repository mount.
#[derive(Debug, Default)]
struct PushRecord(BTreeMap<String, BTreeMap<String, String>>);

impl PushRecord {
    fn load(path: &Path) -> PushRecord {
        let doc: Option<Value> = std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let map = doc.and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default();
        PushRecord(map)
    }

    fn repo_with(&self, host: &str, digest: &str) -> Option<&str> {
        self.0.get(host)?.get(digest).map(String::as_str)
    }

    fn remember(&mut self, host: &str, digest: &str, repo: &str) {
        self.0.entry(host.to_string()).or_default().insert(digest.to_string(), repo.to_string());
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(&self.0).unwrap_or_default())?;
        std::fs::rename(&tmp, path)
    }
}
