//! Showing image summaries: as text for people (one block per image, then
//! the layers several images share) and as one JSON document for scripts.
//! Pure functions of the summaries, so the exact output is unit-tested.

use std::fmt::Write;

use serde_json::{json, Value};

use super::{escape_controls as clean, ImageSummary, LayerSummary, Provenance, CONFIG_KEYS};

/// Where values start in the text: after a label and padding.
const VALUE_COLUMN: usize = 16;

/// A layer that more than one image holds.
struct Shared<'a> {
    layer: &'a LayerSummary,
    /// Indexes of the images holding it, in order.
    images: Vec<usize>,
    /// What storing it once instead of in every image saves.
    saved: u64,
}

/// The layers (by diff_id) that appear in more than one image, in order of
/// first appearance.
fn shared_layers(images: &[ImageSummary]) -> Vec<Shared<'_>> {
    let mut all: Vec<Shared> = Vec::new();
    for (i, image) in images.iter().enumerate() {
        for layer in &image.layers {
            match all.iter_mut().find(|s| s.layer.diff_id == layer.diff_id) {
                Some(s) if s.images.last() == Some(&i) => {}
                Some(s) => {
                    s.images.push(i);
                    s.saved += layer.size;
                }
                None => all.push(Shared { layer, images: vec![i], saved: 0 }),
            }
        }
    }
    all.retain(|s| s.images.len() > 1);
    all
}

/// The summaries as text; with several images, a shared-layers section.
pub fn render_text(images: &[ImageSummary]) -> String {
    let mut out = String::new();
    for (i, image) in images.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        image_text(&mut out, image);
    }
    if images.len() > 1 {
        out.push('\n');
        shared_text(&mut out, images);
    }
    out
}

fn image_text(out: &mut String, image: &ImageSummary) {
    let title = if image.tags.is_empty() { "(untagged)".to_string() } else { image.tags.join(", ") };
    let _ = writeln!(out, "{}", clean(&title));
    field(out, 2, "source", [format!("{} ({})", image.source, image.format)]);
    for (label, value) in [("architecture", &image.architecture), ("os", &image.os), ("created", &image.created)] {
        if let Some(value) = value {
            field(out, 2, label, [value.clone()]);
        }
    }
    for key in CONFIG_KEYS {
        if let Some(value) = image.config.get(key) {
            field(out, 2, key, setting_lines(key, value));
        }
    }
    if let Some(provenance) = image.provenance() {
        field(out, 2, "provenance", provenance_lines(&provenance));
    }
    for (i, layer) in image.layers.iter().enumerate() {
        let kind = match (layer.store_paths.is_empty(), layer.other_entries.is_empty()) {
            _ if layer.debian_root.is_some() => " (Debian root)",
            (false, _) => "",
            (true, false) => " (customisation layer)",
            (true, true) => " (empty)",
        };
        field(out, 2, &format!("layer {}", i + 1), [format!("{}{kind}", human(layer.size))]);
        field(out, 4, "digest", [layer.digest.clone()]);
        field(out, 4, "diff_id", [layer.diff_id.clone()]);
        field(out, 4, "holds", holds(layer));
    }
    let (total, store) = (image.total_size(), image.store_path_size());
    let count = plural(image.layers.len(), "layer");
    field(
        out,
        2,
        "total",
        [format!(
            "{} in {count}: {} in store-path layers (shareable), {} other",
            human(total),
            human(store),
            human(total - store)
        )],
    );
}

/// Provenance one item a line, names aligned: revision, source, each
/// input, the derivation.
fn provenance_lines(provenance: &Provenance) -> Vec<String> {
    let mut items: Vec<(String, &str)> = Vec::new();
    if let Some(revision) = &provenance.revision {
        items.push(("revision".into(), revision));
    }
    if let Some(source) = &provenance.source {
        items.push(("source".into(), source));
    }
    for (name, pin) in &provenance.inputs {
        items.push((format!("input {name}"), pin));
    }
    if let Some(derivation) = &provenance.derivation {
        items.push(("derivation".into(), derivation));
    }
    let width = items.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    items.iter().map(|(k, v)| clean(&format!("{k:width$}  {v}")).into_owned()).collect()
}

fn shared_text(out: &mut String, images: &[ImageSummary]) {
    let shared = shared_layers(images);
    if shared.is_empty() {
        out.push_str("shared layers: none\n");
        return;
    }
    let size: u64 = shared.iter().map(|s| s.layer.size).sum();
    let saved: u64 = shared.iter().map(|s| s.saved).sum();
    let _ = writeln!(
        out,
        "shared layers: {}, {} (stored once, they save {})",
        plural(shared.len(), "layer"),
        human(size),
        human(saved)
    );
    for s in &shared {
        field(out, 2, &s.layer.diff_id, [human(s.layer.size)]);
        let names: Vec<String> = s.images.iter().map(|&i| clean(images[i].label()).into_owned()).collect();
        field(out, 4, "in", [names.join(", ")]);
        field(out, 4, "holds", holds(s.layer));
    }
}

/// A layer's Debian root, its store paths one per line, then its other
/// entries on one line.
pub(super) fn holds(layer: &LayerSummary) -> Vec<String> {
    let mut lines: Vec<String> = layer.debian_root.iter().map(|root| format!("Debian root {root} at /")).collect();
    lines.extend(layer.store_paths.iter().cloned());
    if !layer.other_entries.is_empty() {
        lines.push(layer.other_entries.iter().map(|e| clean(e)).collect::<Vec<_>>().join(" "));
    }
    if layer.unlisted_entries > 0 {
        lines.push(format!("and {} more entries", layer.unlisted_entries));
    }
    if lines.is_empty() {
        lines.push("nothing".into());
    }
    lines
}

/// A labelled value; further lines continue under the first.
pub(super) fn field(out: &mut String, indent: usize, label: &str, lines: impl IntoIterator<Item = String>) {
    let mut lines = lines.into_iter();
    let first = lines.next().unwrap_or_default();
    let label = format!("{:indent$}{label}", "");
    let _ = writeln!(out, "{label:width$}  {first}", width = VALUE_COLUMN - 2);
    for rest in lines {
        let _ = writeln!(out, "{:VALUE_COLUMN$}{rest}", "");
    }
}

/// A config setting as text lines: `Env` and `Labels` one per line,
/// `ExposedPorts` and `Volumes` by their keys, strings as they are, and
/// anything else (`Cmd`, `Entrypoint`) as compact JSON, which keeps
/// argument boundaries visible.
fn setting_lines(key: &str, value: &Value) -> Vec<String> {
    let lines: Vec<String> = match (key, value) {
        (_, Value::String(s)) => vec![clean(s).into_owned()],
        ("Env", Value::Array(items)) => items.iter().map(|v| clean(&plain(v)).into_owned()).collect(),
        ("Labels", Value::Object(map)) => {
            map.iter().map(|(k, v)| clean(&format!("{k}={}", plain(v))).into_owned()).collect()
        }
        ("ExposedPorts" | "Volumes", Value::Object(map)) if !map.is_empty() => {
            vec![clean(&map.keys().cloned().collect::<Vec<_>>().join(" ")).into_owned()]
        }
        _ => vec![value.to_string()],
    };
    if lines.is_empty() {
        vec![value.to_string()]
    } else {
        lines
    }
}

fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

pub(super) fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `2.0 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The summaries as one JSON document: `{"images": [...], "sharedLayers":
/// [...], "sharedSize": n, "savedSize": n}`; shared layers name images by
/// their index in `images`.
pub fn render_json(images: &[ImageSummary]) -> Value {
    let shared = shared_layers(images);
    json!({
        "images": images.iter().map(image_json).collect::<Vec<_>>(),
        "sharedLayers": shared.iter().map(|s| {
            let mut v = layer_json(s.layer);
            if let Value::Object(map) = &mut v {
                map.remove("digest");
                map.remove("mediaType");
                map.insert("images".into(), json!(s.images));
                map.insert("savedSize".into(), json!(s.saved));
            }
            v
        }).collect::<Vec<_>>(),
        "sharedSize": shared.iter().map(|s| s.layer.size).sum::<u64>(),
        "savedSize": shared.iter().map(|s| s.saved).sum::<u64>(),
    })
}

fn image_json(image: &ImageSummary) -> Value {
    let total = image.total_size();
    let store = image.store_path_size();
    json!({
        "source": image.source,
        "format": image.format,
        "tags": image.tags,
        "architecture": image.architecture,
        "os": image.os,
        "created": image.created,
        "config": image.config,
        "provenance": image.provenance().map(|p| json!({
            "revision": p.revision,
            "source": p.source,
            "inputs": p.inputs,
            "derivation": p.derivation,
        })),
        "layers": image.layers.iter().map(layer_json).collect::<Vec<_>>(),
        "totalSize": total,
        "storePathsSize": store,
        "otherSize": total - store,
    })
}

fn layer_json(layer: &LayerSummary) -> Value {
    let mut v = json!({
        "digest": layer.digest,
        "diffId": layer.diff_id,
        "size": layer.size,
        "mediaType": layer.media_type,
        "storePaths": layer.store_paths,
        "otherEntries": layer.other_entries,
    });
    if let Some(root) = &layer.debian_root {
        v["debianRoot"] = json!(root);
    }
    if layer.unlisted_entries > 0 {
        v["unlistedEntries"] = json!(layer.unlisted_entries);
    }
    v
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const BUSYBOX: &str = "/mini/store/0123456789abcdfghijklmnpqrsvwxyz-busybox";

    fn layer(n: char, size: u64, store_paths: &[&str], other: &[&str]) -> LayerSummary {
        LayerSummary {
            digest: format!("sha256:{}", n.to_string().repeat(64)),
            diff_id: format!("sha256:{}", n.to_ascii_uppercase().to_string().repeat(8)),
            size,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            store_paths: store_paths.iter().map(|s| s.to_string()).collect(),
            debian_root: None,
            other_entries: other.iter().map(|s| s.to_string()).collect(),
            unlisted_entries: 0,
        }
    }

    fn images() -> Vec<ImageSummary> {
        let web_config: BTreeMap<String, Value> = [
            ("Cmd", json!(["/bin/httpd", "-f", "-p", "80"])),
            ("Env", json!(["PATH=/bin", "LANG=C"])),
            ("ExposedPorts", json!({"80/tcp": {}, "443/tcp": {}})),
            ("Labels", json!({"org.example.team": "web", "bad": "a\u{1b}[31mb"})),
            ("User", json!("1000:100")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let web = ImageSummary {
            source: "web.tar".into(),
            format: "docker-archive",
            tags: vec!["web:1.0".into()],
            architecture: Some("amd64".into()),
            os: Some("linux".into()),
            created: Some("1970-01-01T00:00:01Z".into()),
            config: web_config,
            config_digest: format!("sha256:{}", "1".repeat(64)),
            config_size: 700,
            layers: vec![
                layer('a', 1_200_000, &[BUSYBOX], &[]),
                layer('b', 3072, &["/mini/store/00000000000000000000000000000000-site"], &[]),
                layer('c', 512, &[], &["bin", "etc", "tmp"]),
            ],
            derivation: None,
        };
        let worker = ImageSummary {
            source: "worker".into(),
            format: "oci-layout",
            tags: vec![],
            architecture: None,
            os: None,
            created: None,
            config: BTreeMap::new(),
            config_digest: format!("sha256:{}", "2".repeat(64)),
            config_size: 300,
            layers: vec![layer('a', 1_200_000, &[BUSYBOX], &[]), layer('d', 1024, &[], &[])],
            derivation: None,
        };
        vec![web, worker]
    }

    #[test]
    fn text_shows_each_image_then_what_they_share() {
        let expected = "\
web:1.0
  source        web.tar (docker-archive)
  architecture  amd64
  os            linux
  created       1970-01-01T00:00:01Z
  Cmd           [\"/bin/httpd\",\"-f\",\"-p\",\"80\"]
  Env           PATH=/bin
                LANG=C
  User          1000:100
  ExposedPorts  443/tcp 80/tcp
  Labels        bad=a\\u{1b}[31mb
                org.example.team=web
  layer 1       1.1 MiB
    digest      sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    diff_id     sha256:AAAAAAAA
    holds       /mini/store/0123456789abcdfghijklmnpqrsvwxyz-busybox
  layer 2       3.0 KiB
    digest      sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
    diff_id     sha256:BBBBBBBB
    holds       /mini/store/00000000000000000000000000000000-site
  layer 3       512 B (customisation layer)
    digest      sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
    diff_id     sha256:CCCCCCCC
    holds       bin etc tmp
  total         1.1 MiB in 3 layers: 1.1 MiB in store-path layers (shareable), 512 B other

(untagged)
  source        worker (oci-layout)
  layer 1       1.1 MiB
    digest      sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    diff_id     sha256:AAAAAAAA
    holds       /mini/store/0123456789abcdfghijklmnpqrsvwxyz-busybox
  layer 2       1.0 KiB (empty)
    digest      sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd
    diff_id     sha256:DDDDDDDD
    holds       nothing
  total         1.1 MiB in 2 layers: 1.1 MiB in store-path layers (shareable), 1.0 KiB other

shared layers: 1 layer, 1.1 MiB (stored once, they save 1.1 MiB)
  sha256:AAAAAAAA  1.1 MiB
    in          web:1.0, worker
    holds       /mini/store/0123456789abcdfghijklmnpqrsvwxyz-busybox
";
        let text = render_text(&images());
        assert_eq!(text, expected, "got:\n{text}");
    }

    #[test]
    fn one_image_has_no_shared_section_and_disjoint_ones_say_none() {
        let images = images();
        assert!(!render_text(&images[..1]).contains("shared layers"));
        let mut other = images[1].clone();
        other.layers.remove(0);
        assert!(render_text(&[images[0].clone(), other]).ends_with("\nshared layers: none\n"));
    }

    #[test]
    fn json_holds_the_same_with_sizes_and_shared_layers() {
        let doc = render_json(&images());
        let web = &doc["images"][0];
        assert_eq!(web["tags"], json!(["web:1.0"]));
        assert_eq!(web["config"]["User"], json!("1000:100"));
        assert_eq!(web["totalSize"], json!(1_203_584));
        assert_eq!(web["storePathsSize"], json!(1_203_072));
        assert_eq!(web["otherSize"], json!(512));
        assert_eq!(web["layers"][2]["otherEntries"], json!(["bin", "etc", "tmp"]));
        assert_eq!(doc["images"][1]["architecture"], Value::Null);
        assert_eq!(
            doc["sharedLayers"],
            json!([{"diffId": "sha256:AAAAAAAA", "size": 1_200_000, "images": [0, 1], "savedSize": 1_200_000,
                    "storePaths": [BUSYBOX], "otherEntries": []}])
        );
        assert_eq!(doc["sharedSize"], json!(1_200_000));
        // Keys are sorted, so the document is the same bytes every time.
        let text = doc.to_string();
        assert!(text.starts_with("{\"images\":[{\"architecture\":\"amd64\",\"config\":{\"Cmd\":"), "{text}");
    }

    #[test]
    fn provenance_comes_from_labels_and_the_caller() {
        let mut image = images().remove(1);
        assert!(image.provenance().is_none());
        assert_eq!(render_json(std::slice::from_ref(&image))["images"][0]["provenance"], Value::Null);
        let rev = "0123456789abcdef0123456789abcdef01234567";
        image.config.insert(
            "Labels".into(),
            json!({
                "org.opencontainers.image.revision": rev,
                "org.opencontainers.image.source": "https://git.example/shop",
                "dev.mini.input.lib": "git+file:../lib rev=ab narHash=blake3:cd",
                "org.example.team": "web",
            }),
        );
        image.derivation = Some("/mini/store/00000000000000000000000000000000-shop.tar.drv".into());
        let text = render_text(std::slice::from_ref(&image));
        let expected = format!(
            "  provenance    revision    {rev}\n\
             \x20               source      https://git.example/shop\n\
             \x20               input lib   git+file:../lib rev=ab narHash=blake3:cd\n\
             \x20               derivation  /mini/store/00000000000000000000000000000000-shop.tar.drv\n"
        );
        assert!(text.contains(&expected), "{text}");
        let doc = render_json(&[image]);
        assert_eq!(
            doc["images"][0]["provenance"],
            json!({"revision": rev, "source": "https://git.example/shop",
                   "inputs": {"lib": "git+file:../lib rev=ab narHash=blake3:cd"},
                   "derivation": "/mini/store/00000000000000000000000000000000-shop.tar.drv"})
        );
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
        assert_eq!(human(u64::MAX), "16384.0 PiB");
    }
}
