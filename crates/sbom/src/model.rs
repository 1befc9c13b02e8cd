//! What an SBOM says, whatever format writes it: components (store paths,
//! fetched sources, Go modules) keyed by a reference, and which depend on
//! which. Gathering fills it from the store (`gather`); `cyclonedx` and
//! `spdx` write it. Pure: no I/O, and everything ordered, so one model is
//! one document.

use std::collections::{BTreeMap, BTreeSet};

use sha1::{Digest, Sha1};

/// The SBOM of a closure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sbom {
    /// What the document is about: its name in SPDX, and the name of the
    /// CycloneDX subject when there are several roots.
    pub name: String,
    /// The references of the components the document describes.
    pub roots: BTreeSet<String>,
    /// Every component, by its reference.
    pub components: BTreeMap<String, Component>,
    /// For each component, the references of those it depends on.
    pub dependencies: BTreeMap<String, BTreeSet<String>>,
}

impl Sbom {
    /// Adds `component` unless one with its reference is there already.
    pub fn add(&mut self, component: Component) {
        self.dependencies.entry(component.reference.clone()).or_default();
        self.components.entry(component.reference.clone()).or_insert(component);
    }

    /// Records that `from` depends on `to` (both added before or after).
    pub fn depend(&mut self, from: &str, to: &str) {
        if from != to {
            self.dependencies.entry(from.to_string()).or_default().insert(to.to_string());
        }
    }
}

/// What a component is, in the vocabulary both formats share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Application,
    Library,
    File,
}

/// One component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Unique in the document: a store path, or the purl of a Go module.
    pub reference: String,
    pub kind: Kind,
    pub name: String,
    /// Empty when there is none.
    pub version: String,
    pub purl: Option<String>,
    /// At most one per algorithm, the first given kept.
    pub hashes: Vec<Hash>,
    /// Where a fetched source was downloaded from, in the recipe's order.
    pub urls: Vec<String>,
    /// mini's own facts (`mini:deriver`, …), by name.
    pub properties: BTreeMap<String, String>,
}

impl Component {
    /// A component with nothing but its reference, kind, name and version.
    pub fn new(reference: &str, kind: Kind, name: &str, version: &str) -> Component {
        Component {
            reference: reference.to_string(),
            kind,
            name: name.to_string(),
            version: version.to_string(),
            purl: None,
            hashes: Vec::new(),
            urls: Vec::new(),
            properties: BTreeMap::new(),
        }
    }

    /// Adds a hash, unless one of that algorithm is there already.
    pub fn add_hash(&mut self, hash: Hash) {
        if !self.hashes.iter().any(|h| h.algorithm == hash.algorithm) {
            self.hashes.push(hash);
        }
    }
}

/// A hash algorithm both formats name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
    Blake3,
}

impl Algorithm {
    /// The algorithm of a derivation's `outputHashAlgo`, if both formats know it.
    pub fn from_nix(name: &str) -> Option<Algorithm> {
        match name {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            "blake3" => Some(Algorithm::Blake3),
            _ => None,
        }
    }

    /// CycloneDX's name (`hash-alg`).
    pub fn cyclonedx(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA-1",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512 => "SHA-512",
            Algorithm::Blake3 => "BLAKE3",
        }
    }

    /// SPDX's name (`checksum.algorithm`).
    pub fn spdx(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
            Algorithm::Blake3 => "BLAKE3",
        }
    }
}

/// A digest, as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hash {
    pub algorithm: Algorithm,
    pub hex: String,
}

/// A name-based (version 5, SHA-1) UUID of the BLAKE3 digest of `content`,
/// in the URL namespace of RFC 4122: the serial number or namespace of a
/// document, derived from the document itself so that the same closure
/// gives the same bytes, yet two different documents never share one.
pub fn content_uuid(content: &[u8]) -> String {
    // RFC 4122's NameSpace_URL.
    const NAMESPACE: [u8; 16] =
        [0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8];
    let name = format!("urn:mini:sbom:blake3:{}", blake3::hash(content).to_hex());
    let digest = Sha1::new().chain_update(NAMESPACE).chain_update(name.as_bytes()).finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = mini_store::encoding::hex(&bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small model the writers' tests share: an application referring
    /// to a library and to a fetched file.
    pub(crate) fn example() -> Sbom {
        let app = "/mini/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0";
        let src = "/mini/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-src.tar";
        let lib = "/mini/store/cccccccccccccccccccccccccccccccc-lib-2";
        let mut sbom = Sbom { name: "app".into(), roots: BTreeSet::from([app.to_string()]), ..Sbom::default() };
        let mut root = Component::new(app, Kind::Application, "app", "1.0");
        root.purl = Some("pkg:generic/app@1.0".into());
        root.add_hash(Hash { algorithm: Algorithm::Blake3, hex: "ab".repeat(32) });
        sbom.add(root);
        let mut fetched = Component::new(src, Kind::File, "src.tar", "");
        fetched.add_hash(Hash { algorithm: Algorithm::Sha256, hex: "cd".repeat(32) });
        fetched.urls.push("file:///srv/src.tar".into());
        fetched.purl =
            Some(format!("pkg:generic/src.tar?checksum=sha256:{}&download_url=file:///srv/src.tar", "cd".repeat(32)));
        fetched
            .properties
            .insert("mini:deriver".into(), "/mini/store/dddddddddddddddddddddddddddddddd-src.tar.drv".into());
        sbom.add(fetched);
        sbom.add(Component::new(lib, Kind::Library, "lib", "2"));
        sbom.depend(app, lib);
        sbom.depend(app, src);
        sbom
    }

    #[test]
    fn content_uuids_are_version_5_and_follow_the_content() {
        let a = content_uuid(b"one");
        assert_eq!(a, content_uuid(b"one"));
        assert_ne!(a, content_uuid(b"two"));
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(groups[2].starts_with('5'), "{a}");
        assert!("89ab".contains(&groups[3][..1]), "{a}");
        assert!(a.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    /// Golden: pins the namespace and the name, which every serial number
    /// mini has written depends on (checked with Python's `uuid.uuid5`).
    #[test]
    fn content_uuid_golden() {
        assert_eq!(content_uuid(b""), "34f86883-e79d-547d-803e-7ddd4a14c073");
    }

    #[test]
    fn components_are_added_once_and_never_depend_on_themselves() {
        let mut sbom = Sbom::default();
        let mut first = Component::new("/mini/store/x-src", Kind::Application, "src", "");
        first.add_hash(Hash { algorithm: Algorithm::Blake3, hex: "aa".into() });
        first.add_hash(Hash { algorithm: Algorithm::Blake3, hex: "bb".into() });
        first.add_hash(Hash { algorithm: Algorithm::Sha256, hex: "cc".into() });
        sbom.add(first.clone());
        sbom.add(Component::new("/mini/store/x-src", Kind::File, "other", ""));
        assert_eq!(sbom.components["/mini/store/x-src"], first);
        assert_eq!(first.hashes.iter().map(|h| h.hex.as_str()).collect::<Vec<_>>(), ["aa", "cc"]);
        sbom.depend("/mini/store/x-src", "/mini/store/x-src");
        assert!(sbom.dependencies["/mini/store/x-src"].is_empty(), "a self-reference is no dependency");
    }
}
