//! The model as a CycloneDX 1.5 JSON document. Pure.
//!
//! With one root, the root is the document's subject (`metadata.component`)
//! and the other components are listed under `components`; with several,
//! the subject is an application named after the document that depends on
//! them. Every component has a `dependencies` entry, empty or not, so "no
//! dependencies" is said rather than left unknown. The serial number is a
//! UUID of the rest of the document; there is no timestamp.

use serde_json::{json, Map, Value};

use crate::model::{content_uuid, Component, Kind, Sbom};

/// The document, pretty-printed with sorted keys, ending in a newline.
pub fn render(sbom: &Sbom) -> String {
    let mut doc = body(sbom);
    let serial = content_uuid(doc.to_string().as_bytes());
    doc["serialNumber"] = json!(format!("urn:uuid:{serial}"));
    format!("{doc:#}\n")
}

/// Everything but the serial number.
fn body(sbom: &Sbom) -> Value {
    let single_root = match sbom.roots.iter().collect::<Vec<_>>().as_slice() {
        [root] => sbom.components.get(*root),
        _ => None,
    };
    let mut dependencies: Vec<Value> = Vec::new();
    let subject = match single_root {
        Some(root) => component(root),
        None => {
            let reference = format!("mini:subject:{}", sbom.name);
            dependencies.push(json!({ "ref": reference, "dependsOn": sbom.roots }));
            json!({ "type": "application", "bom-ref": reference, "name": sbom.name })
        }
    };
    let components: Vec<Value> = sbom
        .components
        .values()
        .filter(|c| single_root.is_none_or(|root| root.reference != c.reference))
        .map(component)
        .collect();
    dependencies.extend(sbom.dependencies.iter().map(|(from, to)| json!({ "ref": from, "dependsOn": to })));
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "tools": { "components": [{ "type": "application", "name": crate::TOOL, "version": crate::TOOL_VERSION }] },
            "component": subject,
        },
        "components": components,
        "dependencies": dependencies,
    })
}

fn component(c: &Component) -> Value {
    let kind = match c.kind {
        Kind::Application => "application",
        Kind::Library => "library",
        Kind::File => "file",
    };
    let mut o = Map::new();
    o.insert("type".into(), json!(kind));
    o.insert("bom-ref".into(), json!(c.reference));
    o.insert("name".into(), json!(c.name));
    if !c.version.is_empty() {
        o.insert("version".into(), json!(c.version));
    }
    if let Some(purl) = &c.purl {
        o.insert("purl".into(), json!(purl));
    }
    if !c.hashes.is_empty() {
        let hashes: Vec<Value> =
            c.hashes.iter().map(|h| json!({ "alg": h.algorithm.cyclonedx(), "content": h.hex })).collect();
        o.insert("hashes".into(), json!(hashes));
    }
    if !c.urls.is_empty() {
        let refs: Vec<Value> = c.urls.iter().map(|url| json!({ "type": "distribution", "url": url })).collect();
        o.insert("externalReferences".into(), json!(refs));
    }
    if !c.properties.is_empty() {
        let props: Vec<Value> =
            c.properties.iter().map(|(name, value)| json!({ "name": name, "value": value })).collect();
        o.insert("properties".into(), json!(props));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::example;

    #[test]
    fn one_root_is_the_subject_and_every_component_has_dependencies() {
        let text = render(&example());
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["bomFormat"], "CycloneDX");
        assert_eq!(doc["specVersion"], "1.5");
        let subject = &doc["metadata"]["component"];
        assert_eq!(subject["bom-ref"], "/mini/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0");
        assert_eq!(subject["type"], "application");
        assert_eq!(subject["version"], "1.0");
        assert_eq!(subject["hashes"][0], json!({ "alg": "BLAKE3", "content": "ab".repeat(32) }));
        let refs: Vec<&str> =
            doc["components"].as_array().unwrap().iter().map(|c| c["bom-ref"].as_str().unwrap()).collect();
        assert_eq!(
            refs,
            [
                "/mini/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-src.tar",
                "/mini/store/cccccccccccccccccccccccccccccccc-lib-2"
            ],
            "sorted, without the subject"
        );
        let source = &doc["components"][0];
        assert_eq!(source["type"], "file");
        assert_eq!(source["externalReferences"][0], json!({ "type": "distribution", "url": "file:///srv/src.tar" }));
        assert_eq!(source["hashes"][0]["alg"], "SHA-256");
        assert_eq!(
            source["properties"][0],
            json!({ "name": "mini:deriver", "value": "/mini/store/dddddddddddddddddddddddddddddddd-src.tar.drv" })
        );
        let deps: Vec<(&str, usize)> = doc["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["ref"].as_str().unwrap(), d["dependsOn"].as_array().unwrap().len()))
            .collect();
        assert_eq!(
            deps,
            [
                ("/mini/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0", 2),
                ("/mini/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-src.tar", 0),
                ("/mini/store/cccccccccccccccccccccccccccccccc-lib-2", 0),
            ]
        );
        assert!(doc.get("metadata").unwrap().get("timestamp").is_none());
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn the_serial_number_is_a_uuid_of_the_content() {
        let text = render(&example());
        assert_eq!(text, render(&example()), "the same model, the same bytes");
        let doc: Value = serde_json::from_str(&text).unwrap();
        let serial = doc["serialNumber"].as_str().unwrap();
        let uuid = serial.strip_prefix("urn:uuid:").unwrap();
        assert_eq!(uuid.as_bytes()[14], b'5', "{serial}");
        let mut other = example();
        other.components.values_mut().next().unwrap().version = "1.1".into();
        let other: Value = serde_json::from_str(&render(&other)).unwrap();
        assert_ne!(other["serialNumber"], doc["serialNumber"]);
    }

    #[test]
    fn several_roots_get_a_named_subject() {
        let mut sbom = example();
        sbom.roots.insert("/mini/store/cccccccccccccccccccccccccccccccc-lib-2".into());
        let doc: Value = serde_json::from_str(&render(&sbom)).unwrap();
        assert_eq!(
            doc["metadata"]["component"],
            json!({ "type": "application", "bom-ref": "mini:subject:app", "name": "app" })
        );
        assert_eq!(doc["components"].as_array().unwrap().len(), 3);
        assert_eq!(doc["dependencies"][0]["ref"], "mini:subject:app");
        assert_eq!(doc["dependencies"][0]["dependsOn"].as_array().unwrap().len(), 2);
    }
}
