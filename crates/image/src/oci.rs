//! The JSON documents of an image: the image config, the docker-archive
//! `manifest.json`, and the OCI manifest, index and layout marker. Keys are
//! sorted and there is no insignificant whitespace, so the same image
//! always gives the same bytes and digests. Pure: no I/O.

use mini_store::encoding::hex;
use serde_json::{json, Map, Value};

use crate::spec::ImageSpec;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

// The annotation and label names mini writes and reads, defined here once.

/// The OCI annotation tagging an image in an index: its tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and `docker save`'s) full image name annotation.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The annotation naming the file an artifact layer is fetched to.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// The provenance labels flake writes and inspect reads (defined in store,
/// which both stand on).
pub use mini_store::provenance::{INPUT_LABEL_PREFIX, REVISION_LABEL, SOURCE_LABEL};

/// A blob as manifests refer to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: [u8; 32],
    pub size: u64,
}

impl Descriptor {
    fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": digest(&self.digest), "size": self.size })
    }
}

/// `sha256:<hex>`.
pub fn digest(bytes: &[u8; 32]) -> String {
    format!("sha256:{}", hex(bytes))
}

/// The image config: the runtime settings, and the layers by the digest of
/// their uncompressed tars, bottom first. `comments` says what each layer
/// holds, in the history.
pub fn config(spec: &ImageSpec, diff_ids: &[[u8; 32]], comments: &[String]) -> String {
    let history: Vec<Value> =
        comments.iter().map(|c| json!({ "created": spec.created, "created_by": "mini", "comment": c })).collect();
    let value = json!({
        "architecture": spec.architecture,
        "config": Value::Object(spec.config.clone()),
        "created": spec.created,
        "history": history,
        "os": spec.os,
        "rootfs": { "type": "layers", "diff_ids": diff_ids.iter().map(digest).collect::<Vec<_>>() },
    });
    value.to_string()
}

/// `manifest.json` of a docker-archive.
pub fn docker_manifest(config_file: &str, repo_tag: &str, layer_files: &[String]) -> String {
    json!([{ "Config": config_file, "Layers": layer_files, "RepoTags": [repo_tag] }]).to_string()
}

/// An OCI image manifest.
pub fn oci_manifest(config: &Descriptor, layers: &[Descriptor]) -> String {
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.to_json(),
        "layers": layers.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The `index.json` of an OCI layout: `others` (the layout's other
/// manifests, as they were), then `manifest` with the tag as the OCI
/// reference name, and `name:tag` as containerd names images.
pub fn oci_index(manifest: &Descriptor, tag: &str, repo_tag: &str, others: &[Value]) -> String {
    let mut descriptor = manifest.to_json();
    if let Value::Object(map) = &mut descriptor {
        let annotations =
            Map::from_iter([(CONTAINERD_NAME.to_string(), repo_tag.into()), (REF_NAME.to_string(), tag.into())]);
        map.insert("annotations".into(), Value::Object(annotations));
    }
    let mut manifests = others.to_vec();
    manifests.push(descriptor);
    json!({ "schemaVersion": 2, "manifests": manifests }).to_string()
}

/// The `oci-layout` marker file.
pub fn oci_layout() -> &'static str {
    "{\"imageLayoutVersion\":\"1.0.0\"}"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn documents_are_compact_and_sorted() {
        let env: BTreeMap<String, String> =
            [("imageName", "hello"), ("config", r#"{"Env":["A=1"],"Cmd":["/bin/hello"]}"#)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let spec = ImageSpec::from_env(&env).unwrap();
        let text = config(&spec, &[[0xab; 32]], &["busybox".into()]);
        assert_eq!(
            text,
            format!(
                "{{\"architecture\":\"amd64\",\"config\":{{\"Cmd\":[\"/bin/hello\"],\"Env\":[\"A=1\"]}},\
                 \"created\":\"1970-01-01T00:00:01Z\",\"history\":[{{\"comment\":\"busybox\",\
                 \"created\":\"1970-01-01T00:00:01Z\",\"created_by\":\"mini\"}}],\"os\":\"linux\",\
                 \"rootfs\":{{\"diff_ids\":[\"sha256:{}\"],\"type\":\"layers\"}}}}",
                "ab".repeat(32)
            )
        );
        assert_eq!(
            docker_manifest("c.json", "hello:v1", &["l1.tar".into()]),
            r#"[{"Config":"c.json","Layers":["l1.tar"],"RepoTags":["hello:v1"]}]"#
        );
        let d = Descriptor { media_type: MANIFEST_MEDIA_TYPE.into(), digest: [1; 32], size: 7 };
        assert!(oci_index(&d, "v1", "hello:v1", &[]).contains(
            r#""annotations":{"io.containerd.image.name":"hello:v1","org.opencontainers.image.ref.name":"v1"}"#
        ));
    }
}
