//! What an image derivation asks for, read from its environment. The
//! prelude's `dockerTools` writes these attributes; this is the contract:
//!
//! | attribute | meaning |
//! |---|---|
//! | `imageName`, `imageTag` | the name and tag (`""`: the output's hash part) |
//! | `layering` | `popularity` (one layer per path) or `single` (one layer in all) |
//! | `maxLayers` | at most this many layers, the customisation layer (and a Debian root's) included |
//! | `minLayerSize` | bytes; a store path smaller than this gets no layer of its own unless it is shared (0: off) |
//! | `created`, `architecture`, `os` | copied into the image config |
//! | `contents` | store paths whose top-level directories' entries are linked into `/` |
//! | `config` | JSON: `Cmd`, `Entrypoint`, `Env`, `WorkingDir`, `User`, `ExposedPorts`, `Labels`, `Volumes` |
//! | `extraFiles` | JSON: image path → `{ text, mode }` or `{ source, mode }` |
//! | `users` | JSON: `[{ name, uid, gid, home }]` |
//! | `format` | `docker` (a docker-archive file), `oci` (an OCI layout directory) or `stream` (a description streamed later by `mini image stream`/`copy`) |
//! | `compressor` | `none`, `gzip` or `zstd` |
//! | `fromDebian` | a store path (an input, normally `pkgs.debian.root`'s output): a directory with `usr/` and `var/lib/dpkg/status`, whose tree is the image's bottom layer, at `/`; the customisation layer's paths go through its top-level links to `usr/<dir>` (`bin/sh` → `usr/bin/sh`); the path itself is under `/mini/store` only if the image's closure refers to it |
//! | `sbom` | `cyclonedx` or `spdx`: the closure's SBOM in the image at `/var/lib/db/sbom/image.{cdx,spdx}.json` |
//!
//! Pure: no I/O.

use std::collections::BTreeMap;

use mini_store::store_path::StorePath;

use crate::compress::Compressor;
use crate::error::{ImageError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layering {
    Popularity,
    Single,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Docker,
    Oci,
    /// `streamLayeredImage`: a small description of the image (its config,
    /// its layers with their store paths and digests); the layer
    /// tars are made when the image is streamed or copied.
    Stream,
}

/// A file added to the customisation layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    pub path: String,
    pub contents: ExtraContents,
    /// `None`: 0644, or the source's executable bit.
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraContents {
    Text(String),
    /// A store path (logical) whose file is copied.
    Source(String),
}

/// A user the image can run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u64,
    pub gid: u64,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    pub name: String,
    pub tag: Option<String>,
    pub layering: Layering,
    pub max_layers: usize,
    /// Bytes; see `layers::plan_layers`. 0: every path may have a layer of its own.
    pub min_layer_size: u64,
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub contents: Vec<String>,
    /// The `config` object, as given.
    pub config: serde_json::Map<String, serde_json::Value>,
    pub extra_files: Vec<ExtraFile>,
    pub users: Vec<User>,
    pub format: Format,
    pub compressor: Compressor,
    /// Embed the closure's SBOM in this format.
    pub sbom: Option<mini_sbom::Format>,
    /// `fromDebian`: the Debian root whose tree is the bottom layer.
    pub from_debian: Option<StorePath>,
}

fn bad(name: &str, message: impl Into<String>) -> ImageError {
    ImageError::BadSpec { name: name.into(), message: message.into() }
}

fn json(env: &BTreeMap<String, String>, name: &str, default: &str) -> Result<serde_json::Value> {
    let text = env.get(name).map(String::as_str).unwrap_or(default);
    let text = if text.is_empty() { default } else { text };
    serde_json::from_str(text).map_err(|e| bad(name, format!("not JSON: {e}")))
}

/// A relative path inside the image, without `..`, `.` or empty parts.
fn image_path(name: &str, path: &str) -> Result<String> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() || trimmed.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(bad(name, format!("'{path}' is not a plain path inside the image")));
    }
    Ok(trimmed.to_string())
}

fn octal_mode(name: &str, text: &str) -> Result<u32> {
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| bad(name, format!("bad mode '{text}'")))
}

impl ImageSpec {
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<ImageSpec> {
        let get = |name: &str| env.get(name).cloned().unwrap_or_default();
        let name = get("imageName");
        if name.is_empty() {
            return Err(bad("imageName", "an image needs a name"));
        }
        let layering = match get("layering").as_str() {
            "" | "popularity" => Layering::Popularity,
            "single" => Layering::Single,
            other => return Err(bad("layering", format!("'{other}' is not popularity or single"))),
        };
        let max_layers = match get("maxLayers").as_str() {
            "" => 100,
            text => text.parse::<usize>().ok().filter(|n| *n >= 2).ok_or_else(|| {
                bad(
                    "maxLayers",
                    format!("'{text}' is not a number of at least 2 (one layer is the customisation layer)"),
                )
            })?,
        };
        let min_layer_size = match get("minLayerSize").as_str() {
            "" => 0,
            text => {
                text.parse::<u64>().map_err(|_| bad("minLayerSize", format!("'{text}' is not a number of bytes")))?
            }
        };
        let format = match get("format").as_str() {
            "" | "docker" => Format::Docker,
            "oci" => Format::Oci,
            "stream" => Format::Stream,
            other => return Err(bad("format", format!("'{other}' is not docker, oci or stream"))),
        };
        if format == Format::Stream && layering == Layering::Single {
            return Err(bad("format", "a streamed image is layered: use layering = \"popularity\""));
        }
        let compressor = match get("compressor").as_str() {
            "" => Compressor::None,
            text => Compressor::parse(text)
                .ok_or_else(|| bad("compressor", format!("'{text}' is not none, gzip or zstd")))?,
        };
        let config = match json(env, "config", "{}")? {
            serde_json::Value::Object(map) => map,
            _ => return Err(bad("config", "not an object")),
        };
        let mut extra_files = Vec::new();
        let extra = json(env, "extraFiles", "{}")?;
        for (path, value) in extra.as_object().ok_or_else(|| bad("extraFiles", "not an object"))? {
            let path = image_path("extraFiles", path)?;
            let mode = match value.get("mode").and_then(|m| m.as_str()) {
                Some(m) => Some(octal_mode("extraFiles", m)?),
                None => None,
            };
            let contents =
                match (value.get("text").and_then(|t| t.as_str()), value.get("source").and_then(|s| s.as_str())) {
                    (Some(text), None) => ExtraContents::Text(text.to_string()),
                    (None, Some(source)) => ExtraContents::Source(source.to_string()),
                    _ => return Err(bad("extraFiles", format!("'{path}' needs exactly one of text or source"))),
                };
            extra_files.push(ExtraFile { path, contents, mode });
        }
        let mut users = Vec::new();
        for user in json(env, "users", "[]")?.as_array().ok_or_else(|| bad("users", "not a list"))? {
            let field = |k: &str| user.get(k).ok_or_else(|| bad("users", format!("a user has no '{k}'")));
            let number = |k: &str| {
                field(k).and_then(|v| v.as_u64().ok_or_else(|| bad("users", format!("'{k}' is not a number"))))
            };
            let name = field("name")?.as_str().ok_or_else(|| bad("users", "'name' is not a string"))?.to_string();
            if name.is_empty() || name.contains([':', '\n', '/']) {
                return Err(bad("users", format!("'{name}' is not a user name")));
            }
            let uid = number("uid")?;
            let gid = if user.get("gid").is_some() { number("gid")? } else { uid };
            let home = match user.get("home").and_then(|h| h.as_str()) {
                Some(h) => format!("/{}", image_path("users", h)?),
                None => format!("/home/{name}"),
            };
            users.push(User { name, uid, gid, home });
        }
        let sbom = match get("sbom").as_str() {
            "" => None,
            "cyclonedx" => Some(mini_sbom::Format::CycloneDx),
            "spdx" => Some(mini_sbom::Format::Spdx),
            other => return Err(bad("sbom", format!("'{other}' is not cyclonedx or spdx"))),
        };
        let from_debian = match get("fromDebian").as_str() {
            "" => None,
            text => Some(StorePath::parse(text).map_err(|e| {
                bad("fromDebian", format!("'{text}' is not a store path ({e}): give it the output of pkgs.debian.root"))
            })?),
        };
        if from_debian.is_some() && layering == Layering::Popularity && max_layers < 3 {
            return Err(bad(
                "maxLayers",
                format!("{max_layers} is too few with fromDebian: one layer is the Debian root, one the store paths, one the customisation"),
            ));
        }
        let tag = Some(get("imageTag")).filter(|t| !t.is_empty());
        Ok(ImageSpec {
            name,
            tag,
            layering,
            max_layers,
            min_layer_size,
            created: Some(get("created")).filter(|c| !c.is_empty()).unwrap_or_else(|| "1970-01-01T00:00:01Z".into()),
            architecture: Some(get("architecture")).filter(|a| !a.is_empty()).unwrap_or_else(|| "amd64".into()),
            os: Some(get("os")).filter(|o| !o.is_empty()).unwrap_or_else(|| "linux".into()),
            contents: get("contents").split_whitespace().map(str::to_string).collect(),
            config,
            extra_files,
            users,
            format,
            compressor,
            sbom,
            from_debian,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_follow_nixpkgs() {
        let spec = ImageSpec::from_env(&env(&[("imageName", "hello")])).unwrap();
        assert_eq!(spec.max_layers, 100);
        assert_eq!(spec.created, "1970-01-01T00:00:01Z");
        assert_eq!(
            (spec.layering, spec.format, spec.compressor),
            (Layering::Popularity, Format::Docker, Compressor::None)
        );
        assert_eq!(spec.tag, None);
    }

    #[test]
    fn settings_are_read_and_checked() {
        let spec = ImageSpec::from_env(&env(&[
            ("imageName", "svc"),
            ("imageTag", "v1"),
            ("contents", "/mini/store/a-x /mini/store/b-y"),
            ("config", r#"{"Cmd":["/bin/sh"]}"#),
            ("extraFiles", r#"{"/etc/motd":{"text":"hi","mode":"0600"}}"#),
            ("users", r#"[{"name":"app","uid":1000}]"#),
            ("format", "oci"),
            ("compressor", "zstd"),
        ]))
        .unwrap();
        assert_eq!(spec.contents.len(), 2);
        assert_eq!(spec.extra_files[0].path, "etc/motd");
        assert_eq!(spec.extra_files[0].mode, Some(0o600));
        assert_eq!(spec.users[0], User { name: "app".into(), uid: 1000, gid: 1000, home: "/home/app".into() });
        for (name, value) in [
            ("maxLayers", "1"),
            ("format", "tarball"),
            ("compressor", "bz2"),
            ("config", "[1]"),
            ("extraFiles", r#"{"../etc/x":{"text":""}}"#),
            ("users", r#"[{"name":"a:b","uid":1}]"#),
            ("fromDebian", "/etc"),
            ("fromDebian", "/mini/store/0123456789abcdfghijklmnpqrsvwxyz-root/usr"),
        ] {
            let e = ImageSpec::from_env(&env(&[("imageName", "x"), (name, value)])).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn a_debian_root_is_one_store_path_and_takes_a_layer() {
        let root = "/mini/store/0123456789abcdfghijklmnpqrsvwxyz-debian-root";
        let spec = ImageSpec::from_env(&env(&[("imageName", "x"), ("fromDebian", root)])).unwrap();
        assert_eq!(spec.from_debian.map(|p| p.to_string()).as_deref(), Some(root));
        assert_eq!(ImageSpec::from_env(&env(&[("imageName", "x")])).unwrap().from_debian, None);
        let few = [("imageName", "x"), ("fromDebian", root), ("maxLayers", "2")];
        let e = ImageSpec::from_env(&env(&few)).unwrap_err().to_string();
        assert!(e.contains("maxLayers") && e.contains("fromDebian"), "{e}");
        // One layer for everything but the root: two suffice.
        let single = [("imageName", "x"), ("fromDebian", root), ("maxLayers", "2"), ("layering", "single")];
        assert!(ImageSpec::from_env(&env(&single)).is_ok());
    }
}
