//! Attaching an artifact (such as an SBOM) to an image already on a
//! registry, the way the OCI distribution spec 1.1 does: an image manifest
//! whose `subject` is the image's manifest, with the artifact's
//! `artifactType`, the empty config (`{}`) and the artifact as its one
//! layer. A registry with the referrers API lists it under the image on
//! its own; many deployed registries (docker-registry 2.x among them) have
//! none, so the manifest is also tagged `sha256-<hex of the image's
//! digest>.<suffix>`, the tag scheme clients such as cosign and oras look
//! up when the API is missing.

use mini_image::oci::{MANIFEST_MEDIA_TYPE as MANIFEST_TYPE, TITLE_ANNOTATION};
use serde_json::json;

use crate::client::{Body, Client};
use crate::push::{expect, push_blob, Data, Pushed};
use crate::reference::Reference;
use crate::{auth, RegistryError, Result};

/// The media type of the empty config an artifact manifest carries.
pub const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's bytes.
const EMPTY: &[u8] = b"{}";

/// An artifact to attach.
#[derive(Debug, Clone, Copy)]
pub struct Artifact<'a> {
    /// Its media type, which is also the manifest's `artifactType`.
    pub media_type: &'a str,
    /// Its file name (the title annotation), for clients that
    /// fetch it to a file.
    pub file_name: &'a str,
    /// The tag suffix of the fallback tag: `sbom` gives `sha256-<hex>.sbom`.
    pub tag_suffix: &'a str,
    pub bytes: &'a [u8],
}

/// The image manifest an artifact is attached to.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `sha256:<hex>`.
    pub digest: &'a str,
    pub size: u64,
}

/// What attaching did.
#[derive(Debug)]
pub struct Attached {
    /// The artifact's blob, then the empty config's.
    pub blobs: Vec<Pushed>,
    pub manifest_digest: String,
    pub manifest_size: u64,
    /// The fallback tag the manifest was also put under.
    pub tag: String,
}

/// Attaches `artifact` to `subject`, an image manifest in `reference`'s
/// repository: pushes its blobs, puts the artifact manifest by digest and
/// under the fallback tag. Plain HTTP if `insecure`.
pub fn attach(reference: &Reference, insecure: bool, subject: Subject<'_>, artifact: Artifact<'_>) -> Result<Attached> {
    let client = Client::new(&reference.host, insecure, auth::lookup(&reference.host))?;
    let artifact_digest = crate::sha256_digest(artifact.bytes);
    let empty_digest = crate::sha256_digest(EMPTY);
    let mut blobs = Vec::new();
    for (digest, bytes) in [(&artifact_digest, artifact.bytes), (&empty_digest, EMPTY)] {
        let outcome = push_blob(&client, &reference.repo, digest, &Data::Bytes(bytes), None)?;
        blobs.push(Pushed { outcome, digest: digest.clone(), size: bytes.len() as u64 });
    }
    let manifest = manifest(subject, artifact, &artifact_digest);
    let manifest_digest = crate::sha256_digest(manifest.as_bytes());
    let tag = fallback_tag(subject.digest, artifact.tag_suffix)?;
    for target in [&manifest_digest, &tag] {
        put_manifest(&client, reference, target, &manifest)?;
    }
    Ok(Attached { blobs, manifest_digest, manifest_size: manifest.len() as u64, tag })
}

fn put_manifest(client: &Client, reference: &Reference, target: &str, manifest: &str) -> Result<()> {
    let url = client.url(&format!("/v2/{}/manifests/{target}", reference.repo));
    let what = format!("putting the artifact manifest as {}:{target}", reference.repo);
    let reply = client.send("PUT", &url, Body::Bytes(manifest.as_bytes(), MANIFEST_TYPE), &what)?;
    expect(&reply, &[201, 200], &what)
}

/// The artifact manifest: compact JSON, keys sorted.
fn manifest(subject: Subject<'_>, artifact: Artifact<'_>, artifact_digest: &str) -> String {
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": artifact.media_type,
        "config": { "mediaType": EMPTY_TYPE, "digest": crate::sha256_digest(EMPTY), "size": EMPTY.len() },
        "layers": [{
            "mediaType": artifact.media_type,
            "digest": artifact_digest,
            "size": artifact.bytes.len(),
            "annotations": { TITLE_ANNOTATION: artifact.file_name },
        }],
        "subject": { "mediaType": MANIFEST_TYPE, "digest": subject.digest, "size": subject.size },
    })
    .to_string()
}

/// `sha256-<hex>.<suffix>` for the subject `sha256:<hex>`.
fn fallback_tag(subject_digest: &str, suffix: &str) -> Result<String> {
    let hex =
        subject_digest.strip_prefix("sha256:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    match hex {
        Some(hex) => Ok(format!("sha256-{hex}.{suffix}")),
        None => Err(RegistryError::Http {
            what: "attaching an artifact".into(),
            message: format!("'{subject_digest}' is not a sha256 manifest digest"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_points_at_its_subject_with_the_empty_config() {
        let subject_digest = format!("sha256:{}", "ab".repeat(32));
        let subject = Subject { digest: &subject_digest, size: 123 };
        let artifact = Artifact {
            media_type: "application/vnd.cyclonedx+json",
            file_name: "sbom.cdx.json",
            tag_suffix: "sbom",
            bytes: b"{\"bomFormat\":\"CycloneDX\"}",
        };
        let text = manifest(subject, artifact, &crate::sha256_digest(artifact.bytes));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["artifactType"], "application/vnd.cyclonedx+json");
        assert_eq!(doc["mediaType"], MANIFEST_TYPE);
        assert_eq!(
            doc["config"],
            json!({
                "mediaType": EMPTY_TYPE,
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2
            })
        );
        assert_eq!(doc["layers"][0]["size"], artifact.bytes.len());
        assert_eq!(doc["layers"][0]["mediaType"], "application/vnd.cyclonedx+json");
        assert_eq!(doc["subject"], json!({ "mediaType": MANIFEST_TYPE, "digest": subject_digest, "size": 123 }));
        assert_eq!(text, manifest(subject, artifact, &crate::sha256_digest(artifact.bytes)));
    }

    #[test]
    fn the_fallback_tag_is_the_subject_digest() {
        let digest = format!("sha256:{}", "0f".repeat(32));
        assert_eq!(fallback_tag(&digest, "sbom").unwrap(), format!("sha256-{}.sbom", "0f".repeat(32)));
        assert!(fallback_tag("sha512:00", "sbom").is_err());
        assert!(fallback_tag("sha256:zz", "sbom").is_err());
    }
}
