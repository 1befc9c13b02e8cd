//! The model as an SPDX 2.3 JSON document. Pure.
//!
//! Every component is a package (a store path's package file name is the
//! path itself), the document `DESCRIBES` the roots, and dependencies are
//! `DEPENDS_ON` relationships. `creationInfo.created` is fixed at the
//! epoch, and `documentNamespace`, which SPDX wants unique per document,
//! is `urn:uuid:` and a UUID of the rest of the document: a URI that names
//! no host, the same for the same closure and different for any other.
//!
//! BLAKE3 digests (the store's archive hashes) are stated in a package's
//! `comment`, not its `checksums`: SPDX 2.3 allows BLAKE3 checksums of
//! "at least 256 bits", and spdx-tools (0.8.5, the reference validator)
//! counts that as 256 hex digits, rejecting BLAKE3's standard 64.

use serde_json::{json, Map, Value};

use mini_store::store_path::StorePath;

use crate::model::{content_uuid, Algorithm, Component, Hash, Kind, Sbom};

/// The creation time every document states: documents must not depend on
/// when they were made.
pub const CREATED: &str = "1970-01-01T00:00:00Z";

/// The document, pretty-printed with sorted keys, ending in a newline.
pub fn render(sbom: &Sbom) -> String {
    let mut doc = body(sbom);
    let namespace = content_uuid(doc.to_string().as_bytes());
    doc["documentNamespace"] = json!(format!("urn:uuid:{namespace}"));
    format!("{doc:#}\n")
}

/// Everything but the namespace.
fn body(sbom: &Sbom) -> Value {
    let id = |reference: &str| sbom.components.get(reference).map_or_else(|| spdx_id(reference, ""), package_id);
    let packages: Vec<Value> = sbom.components.values().map(package).collect();
    let mut relationships: Vec<Value> =
        sbom.roots.iter().map(|root| relationship("SPDXRef-DOCUMENT", "DESCRIBES", &id(root))).collect();
    for (from, to) in &sbom.dependencies {
        relationships.extend(to.iter().map(|to| relationship(&id(from), "DEPENDS_ON", &id(to))));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": sbom.name,
        "creationInfo": {
            "created": CREATED,
            "creators": [format!("Tool: {}-{}", crate::TOOL, crate::TOOL_VERSION)],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({ "spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to })
}

fn package(c: &Component) -> Value {
    let purpose = match c.kind {
        Kind::Application => "APPLICATION",
        Kind::Library => "LIBRARY",
        Kind::File => "FILE",
    };
    let mut o = Map::new();
    o.insert("SPDXID".into(), json!(package_id(c)));
    o.insert("name".into(), json!(c.name));
    if !c.version.is_empty() {
        o.insert("versionInfo".into(), json!(c.version));
    }
    if StorePath::parse(&c.reference).is_ok() {
        o.insert("packageFileName".into(), json!(c.reference));
    }
    let download = c.urls.iter().find(|url| is_network_url(url)).map_or("NOASSERTION", String::as_str);
    o.insert("downloadLocation".into(), json!(download));
    if !c.urls.is_empty() {
        o.insert("sourceInfo".into(), json!(format!("fetched from {}", c.urls.join(" "))));
    }
    o.insert("filesAnalyzed".into(), json!(false));
    o.insert("primaryPackagePurpose".into(), json!(purpose));
    let (blake3, checksums): (Vec<&Hash>, Vec<&Hash>) = c.hashes.iter().partition(|h| h.algorithm == Algorithm::Blake3);
    if !checksums.is_empty() {
        let sums: Vec<Value> =
            checksums.iter().map(|h| json!({ "algorithm": h.algorithm.spdx(), "checksumValue": h.hex })).collect();
        o.insert("checksums".into(), json!(sums));
    }
    if let Some(purl) = &c.purl {
        let refs =
            json!([{ "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl }]);
        o.insert("externalRefs".into(), refs);
    }
    let lines: Vec<String> = blake3
        .iter()
        .map(|h| format!("checksum BLAKE3: {}", h.hex))
        .chain(c.properties.iter().map(|(name, value)| format!("{name}: {value}")))
        .collect();
    if !lines.is_empty() {
        o.insert("comment".into(), json!(lines.join("\n")));
    }
    Value::Object(o)
}

/// `SPDXRef-HASH-NAME` for a store path (its hash part makes it unique),
/// `SPDXRef-NAME-DIGEST` for anything else (a digest of its reference).
fn package_id(c: &Component) -> String {
    spdx_id(&c.reference, &c.name)
}

fn spdx_id(reference: &str, name: &str) -> String {
    match StorePath::parse(reference) {
        Ok(path) => format!("SPDXRef-{}-{}", path.hash_part(), sanitise(path.name())),
        Err(_) => {
            let digest = blake3::hash(reference.as_bytes()).to_hex();
            format!("SPDXRef-{}-{}", sanitise(name), &digest[..16])
        }
    }
}

/// SPDX identifiers take letters, digits, `.` and `-`.
fn sanitise(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect()
}

/// A URL SPDX accepts as a download location; others (`file://`,
/// `mirror://`) are stated in `sourceInfo` and the purl only.
fn is_network_url(url: &str) -> bool {
    ["http://", "https://", "ftp://"].iter().any(|scheme| url.starts_with(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::example;

    #[test]
    fn packages_relationships_and_fixed_creation_info() {
        let text = render(&example());
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], CREATED);
        assert_eq!(doc["creationInfo"]["creators"][0], format!("Tool: mini-{}", env!("CARGO_PKG_VERSION")));
        let app = "SPDXRef-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0";
        let src = "SPDXRef-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-src.tar";
        let lib = "SPDXRef-cccccccccccccccccccccccccccccccc-lib-2";
        let ids: Vec<&str> =
            doc["packages"].as_array().unwrap().iter().map(|p| p["SPDXID"].as_str().unwrap()).collect();
        assert_eq!(ids, [app, src, lib]);
        let root = &doc["packages"][0];
        assert_eq!(root["packageFileName"], "/mini/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0");
        assert!(root.get("checksums").is_none(), "BLAKE3 is stated in the comment");
        assert_eq!(root["comment"], format!("checksum BLAKE3: {}", "ab".repeat(32)));
        assert_eq!(root["primaryPackagePurpose"], "APPLICATION");
        assert_eq!(root["downloadLocation"], "NOASSERTION");
        let source = &doc["packages"][1];
        assert_eq!(source["downloadLocation"], "NOASSERTION", "file:// is no download location for SPDX");
        assert_eq!(source["sourceInfo"], "fetched from file:///srv/src.tar");
        assert_eq!(source["externalRefs"][0]["referenceType"], "purl");
        assert_eq!(source["checksums"][0], json!({ "algorithm": "SHA256", "checksumValue": "cd".repeat(32) }));
        let rels: Vec<(String, String, String)> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let field = |name: &str| r[name].as_str().unwrap().to_string();
                (field("spdxElementId"), field("relationshipType"), field("relatedSpdxElement"))
            })
            .collect();
        let rel = |a: &str, k: &str, b: &str| (a.to_string(), k.to_string(), b.to_string());
        assert_eq!(
            rels,
            [rel("SPDXRef-DOCUMENT", "DESCRIBES", app), rel(app, "DEPENDS_ON", src), rel(app, "DEPENDS_ON", lib)]
        );
        let namespace = doc["documentNamespace"].as_str().unwrap();
        assert!(namespace.starts_with("urn:uuid:"), "{namespace}");
        assert_eq!(text, render(&example()));
    }

    #[test]
    fn identifiers_are_valid_and_distinct() {
        assert_eq!(
            spdx_id("/mini/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a+b_c", "a"),
            "SPDXRef-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a-b-c"
        );
        let one = spdx_id("pkg:golang/example.com/a_b@v1.0.0", "example.com/a_b");
        let two = spdx_id("pkg:golang/example.com/a-b@v1.0.0", "example.com/a-b");
        assert!(one.starts_with("SPDXRef-example.com-a-b-"), "{one}");
        assert_ne!(one, two);
        assert!(one.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    }
}
