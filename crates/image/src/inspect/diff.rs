//! Two images side by side, for `mini image inspect A B --diff`: which of
//! B's layers A already has, and how many bytes a registry holding A still
//! needs to hold B. Pure functions of the summaries, like `render`.
//!
//! A layer of B is *in A* when A has a layer with the same diff_id (the
//! same uncompressed tar): `mini push` compresses layers by content, so it
//! gives both the same blob. When A stores it as another blob (other
//! compression), that is said, and its bytes are shown apart: a registry
//! that was given A's blobs as they are needs that blob again.
//!
//! What *needed* counts: B's layer blobs that are not in A, each distinct
//! digest once, at their size as B stores them; plus B's config document
//! unless A's is the same. Not counted: the manifest, which `mini push`
//! writes when it pushes (a few hundred bytes), and recompression: a layer
//! B stores uncompressed goes up compressed, so fewer bytes cross the wire.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::{json, Value};

use super::render::{field, holds, human, plural};
use super::{escape_controls as clean, ImageSummary, LayerSummary};

/// Whether A has one of B's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence<'a> {
    /// A has the same blob, as its layer `layer` (counting from 1).
    SameBlob { layer: usize },
    /// A has the same content as another blob, `digest`, its layer `layer`.
    OtherBlob { layer: usize, digest: &'a str },
    /// A does not have it.
    New,
}

/// One of B's layers, against A.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDiff<'a> {
    pub layer: &'a LayerSummary,
    pub presence: Presence<'a>,
    /// Whether its bytes count as needed: new, and the first of B's layers
    /// with its digest.
    pub counted: bool,
}

/// B against A.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDiff<'a> {
    pub a: &'a ImageSummary,
    pub b: &'a ImageSummary,
    /// B's layers, bottom first.
    pub layers: Vec<LayerDiff<'a>>,
    /// Whether A's config is B's, the same document.
    pub config_in_a: bool,
}

/// Compares `b` with `a`: what of `b` is in `a`.
pub fn compare<'a>(a: &'a ImageSummary, b: &'a ImageSummary) -> ImageDiff<'a> {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let layers = b
        .layers
        .iter()
        .map(|layer| {
            let same_blob = a.layers.iter().position(|l| l.digest == layer.digest && l.diff_id == layer.diff_id);
            let same_content = a.layers.iter().position(|l| l.diff_id == layer.diff_id);
            let presence = match (same_blob, same_content) {
                (Some(i), _) => Presence::SameBlob { layer: i + 1 },
                (None, Some(i)) => Presence::OtherBlob { layer: i + 1, digest: &a.layers[i].digest },
                (None, None) => Presence::New,
            };
            let counted = presence == Presence::New && seen.insert(&layer.digest);
            LayerDiff { layer, presence, counted }
        })
        .collect();
    ImageDiff { a, b, layers, config_in_a: a.config_digest == b.config_digest }
}

impl ImageDiff<'_> {
    /// B's layers that A has (by content).
    fn shared(&self) -> impl Iterator<Item = &LayerDiff<'_>> {
        self.layers.iter().filter(|l| l.presence != Presence::New)
    }

    /// Bytes of B's layers that A has as another blob.
    pub fn other_blob_size(&self) -> u64 {
        self.layers.iter().filter(|l| matches!(l.presence, Presence::OtherBlob { .. })).map(|l| l.layer.size).sum()
    }

    /// B's distinct layer blobs that A lacks, and their bytes.
    pub fn needed_layers(&self) -> (usize, u64) {
        let counted = self.layers.iter().filter(|l| l.counted);
        (counted.clone().count(), counted.map(|l| l.layer.size).sum())
    }

    /// Bytes a registry holding A needs for B: new layer blobs and config.
    pub fn needed_size(&self) -> u64 {
        let config = if self.config_in_a { 0 } else { self.b.config_size };
        self.needed_layers().1 + config
    }
}

/// The comparison as text: both images, B's layers each with where A has
/// it, then the totals.
pub fn render_diff_text(diff: &ImageDiff<'_>) -> String {
    let (a, b) = (diff.a, diff.b);
    let mut out = String::new();
    let _ = writeln!(out, "{} against {}", clean(b.label()), clean(a.label()));
    field(&mut out, 2, "B", [format!("{} ({})", clean(&b.source), b.format)]);
    field(&mut out, 2, "A", [format!("{} ({})", clean(&a.source), a.format)]);
    for (i, l) in diff.layers.iter().enumerate() {
        let first = |digest: &str| diff.layers.iter().position(|d| d.layer.digest == digest).unwrap_or(i) + 1;
        let presence = match l.presence {
            Presence::SameBlob { layer } => format!("in A (its layer {layer})"),
            Presence::OtherBlob { layer, .. } => format!("in A as another blob (its layer {layer})"),
            Presence::New if l.counted => "new".to_string(),
            Presence::New => format!("new, the same blob as layer {}", first(&l.layer.digest)),
        };
        field(&mut out, 2, &format!("layer {}", i + 1), [format!("{}, {presence}", human(l.layer.size))]);
        let mut digests = vec![l.layer.digest.clone()];
        if let Presence::OtherBlob { digest, .. } = l.presence {
            digests.push(format!("A's: {digest}"));
        }
        field(&mut out, 4, "digest", digests);
        field(&mut out, 4, "diff_id", [l.layer.diff_id.clone()]);
        field(&mut out, 4, "holds", holds(l.layer));
    }
    let shared: u64 = diff.shared().map(|l| l.layer.size).sum();
    let count = diff.shared().count();
    field(&mut out, 2, "shared", [format!("{count} of {}, {}", plural(b.layers.len(), "layer"), human(shared))]);
    let other = diff.other_blob_size();
    if other > 0 {
        let n = diff.layers.iter().filter(|l| matches!(l.presence, Presence::OtherBlob { .. })).count();
        field(
            &mut out,
            2,
            "other blobs",
            [
                format!("{} ({}) A holds as other blobs:", plural(n, "layer"), human(other)),
                "shared when pushed by mini push (it compresses by content),".to_string(),
                "needed again where A's blobs were pushed as they are".to_string(),
            ],
        );
    }
    let config =
        if diff.config_in_a { "the same as A's".to_string() } else { format!("{}, new", human(b.config_size)) };
    field(&mut out, 2, "config", [config]);
    let (blobs, bytes) = diff.needed_layers();
    let mut needed = format!("{} ({})", plural(blobs, "layer blob"), human(bytes));
    if !diff.config_in_a {
        let _ = write!(needed, " and the config ({})", human(b.config_size));
    }
    field(
        &mut out,
        2,
        "needed",
        [
            format!("{} ({} bytes) for a registry holding A:", human(diff.needed_size()), diff.needed_size()),
            needed,
            "as B stores them; the manifest mini push writes is not counted".to_string(),
        ],
    );
    out
}

/// The comparison as one JSON document (sorted keys): `a` and `b` (source,
/// format, tags), `layers` (B's: `presence` is `sameBlob`, `otherBlob` or
/// `new`; `inA` the layer of A, counting from 1), and the totals.
pub fn render_diff_json(diff: &ImageDiff<'_>) -> Value {
    let image = |i: &ImageSummary| {
        json!({"source": i.source, "format": i.format, "tags": i.tags,
               "configDigest": i.config_digest, "configSize": i.config_size})
    };
    let layers: Vec<Value> = diff
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (presence, in_a, a_digest) = match l.presence {
                Presence::SameBlob { layer } => ("sameBlob", Some(layer), None),
                Presence::OtherBlob { layer, digest } => ("otherBlob", Some(layer), Some(digest)),
                Presence::New => ("new", None, None),
            };
            json!({
                "layer": i + 1,
                "digest": l.layer.digest,
                "diffId": l.layer.diff_id,
                "size": l.layer.size,
                "storePaths": l.layer.store_paths,
                "otherEntries": l.layer.other_entries,
                "presence": presence,
                "inA": in_a,
                "digestInA": a_digest,
                "counted": l.counted,
            })
        })
        .collect();
    let (blobs, bytes) = diff.needed_layers();
    json!({
        "a": image(diff.a),
        "b": image(diff.b),
        "layers": layers,
        "sharedLayers": diff.shared().count(),
        "sharedSize": diff.shared().map(|l| l.layer.size).sum::<u64>(),
        "otherBlobSize": diff.other_blob_size(),
        "configInA": diff.config_in_a,
        "neededLayers": blobs,
        "neededLayerSize": bytes,
        "neededSize": diff.needed_size(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn layer(digest: char, diff_id: char, size: u64, store_paths: &[&str]) -> LayerSummary {
        LayerSummary {
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
            diff_id: format!("sha256:{}", diff_id.to_string().repeat(8)),
            size,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            store_paths: store_paths.iter().map(|s| format!("/mini/store/{s}")).collect(),
            debian_root: None,
            other_entries: if store_paths.is_empty() { vec!["bin".into()] } else { vec![] },
            unlisted_entries: 0,
        }
    }

    fn image(source: &str, tag: &str, config: char, layers: Vec<LayerSummary>) -> ImageSummary {
        ImageSummary {
            source: source.into(),
            format: "docker-archive",
            tags: vec![tag.into()],
            architecture: None,
            os: None,
            created: None,
            config: BTreeMap::new(),
            config_digest: format!("sha256:{}", config.to_string().repeat(64)),
            config_size: 600,
            layers,
            derivation: None,
        }
    }

    /// v1: busybox, lib, app, customisation. v2: the same busybox, lib
    /// stored gzipped, a new app twice (same blob), a new customisation.
    fn pair() -> (ImageSummary, ImageSummary) {
        let v1 = image(
            "v1.tar",
            "app:1",
            '1',
            vec![
                layer('a', 'A', 1 << 20, &["busybox"]),
                layer('b', 'B', 4096, &["lib"]),
                layer('c', 'C', 2048, &["app-1"]),
                layer('d', 'D', 512, &[]),
            ],
        );
        let v2 = image(
            "v2.tar",
            "app:2",
            '2',
            vec![
                layer('a', 'A', 1 << 20, &["busybox"]),
                layer('e', 'B', 1000, &["lib"]),
                layer('f', 'F', 3000, &["app-2"]),
                layer('f', 'F', 3000, &["app-2"]),
                layer('g', 'G', 500, &[]),
            ],
        );
        (v1, v2)
    }

    #[test]
    fn layers_are_found_by_content_and_needed_bytes_count_each_blob_once() {
        let (v1, v2) = pair();
        let diff = compare(&v1, &v2);
        let presence: Vec<Presence> = diff.layers.iter().map(|l| l.presence).collect();
        let gz = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            presence,
            [
                Presence::SameBlob { layer: 1 },
                Presence::OtherBlob { layer: 2, digest: &gz },
                Presence::New,
                Presence::New,
                Presence::New
            ]
        );
        assert_eq!(diff.layers.iter().map(|l| l.counted).collect::<Vec<_>>(), [false, false, true, false, true]);
        assert_eq!(diff.needed_layers(), (2, 3500));
        assert_eq!(diff.needed_size(), 3500 + 600);
        assert_eq!(diff.other_blob_size(), 1000);
        // An image against itself needs nothing.
        let same = compare(&v1, &v1);
        assert_eq!(same.needed_size(), 0);
        assert!(same.config_in_a && same.layers.iter().all(|l| matches!(l.presence, Presence::SameBlob { .. })));
    }

    #[test]
    fn text_shows_where_each_layer_is_and_what_is_counted() {
        let (v1, v2) = pair();
        let text = render_diff_text(&compare(&v1, &v2));
        let [a, b, e, f, g] = ["a", "b", "e", "f", "g"].map(|c| format!("sha256:{}", c.repeat(64)));
        let expected = format!(
            "\
app:2 against app:1
  B             v2.tar (docker-archive)
  A             v1.tar (docker-archive)
  layer 1       1.0 MiB, in A (its layer 1)
    digest      {a}
    diff_id     sha256:AAAAAAAA
    holds       /mini/store/busybox
  layer 2       1000 B, in A as another blob (its layer 2)
    digest      {e}
                A's: {b}
    diff_id     sha256:BBBBBBBB
    holds       /mini/store/lib
  layer 3       2.9 KiB, new
    digest      {f}
    diff_id     sha256:FFFFFFFF
    holds       /mini/store/app-2
  layer 4       2.9 KiB, new, the same blob as layer 3
    digest      {f}
    diff_id     sha256:FFFFFFFF
    holds       /mini/store/app-2
  layer 5       500 B, new
    digest      {g}
    diff_id     sha256:GGGGGGGG
    holds       bin
  shared        2 of 5 layers, 1.0 MiB
  other blobs   1 layer (1000 B) A holds as other blobs:
                shared when pushed by mini push (it compresses by content),
                needed again where A's blobs were pushed as they are
  config        600 B, new
  needed        4.0 KiB (4100 bytes) for a registry holding A:
                2 layer blobs (3.4 KiB) and the config (600 B)
                as B stores them; the manifest mini push writes is not counted
"
        );
        assert_eq!(text, expected, "got:\n{text}");
    }

    #[test]
    fn json_holds_the_same() {
        let (v1, v2) = pair();
        let doc = render_diff_json(&compare(&v1, &v2));
        assert_eq!(doc["a"]["source"], json!("v1.tar"));
        assert_eq!(doc["b"]["configSize"], json!(600));
        assert_eq!(doc["layers"][1]["presence"], json!("otherBlob"));
        assert_eq!(doc["layers"][1]["inA"], json!(2));
        assert_eq!(doc["layers"][1]["digestInA"], json!(format!("sha256:{}", "b".repeat(64))));
        assert_eq!(doc["layers"][2]["presence"], json!("new"));
        assert_eq!(doc["layers"][2]["inA"], Value::Null);
        assert_eq!(doc["layers"][3]["counted"], json!(false));
        assert_eq!(doc["sharedLayers"], json!(2));
        assert_eq!(doc["sharedSize"], json!((1 << 20) + 1000));
        assert_eq!(doc["neededLayers"], json!(2));
        assert_eq!(doc["neededLayerSize"], json!(3500));
        assert_eq!(doc["neededSize"], json!(4100));
        assert_eq!(doc["configInA"], json!(false));
        assert!(doc.to_string().starts_with("{\"a\":{\"configDigest\":"), "keys are sorted");
    }
}
