//! How a derivation becomes an REAPI Action, and how a worker reads one
//! back: the pure format, with no I/O.
//!
//! The input root is
//!
//! ```text
//! mini/
//!   paths              one line per store path: "<base> <reference base>…"
//!   store/<base>.nar   the NAR of each path of the closure, the .drv included
//! ```
//!
//! Store paths travel as NAR blobs, not as REAPI Directory trees, because
//! they hold absolute symlinks (servers answer
//! `symlinkAbsolutePathStrategy: DISALLOWED`) and because the NAR is the
//! store's one canonical serialisation, so a path has one digest wherever
//! it is. The `paths` manifest carries what a NAR does not: references, so
//! the worker registers each input as the client's store has it.
//!
//! The Command is `mini build-derivation <drv path>`, its output paths are
//! `mini/store/<output base>.nar`, and its platform asks for
//! `OSFamily=linux`, `ISA=x86-64` and `network=none` (fixed-output
//! derivations, which need the network, are built by the client). Every
//! list is sorted, so the same derivation over the same inputs is the same
//! Action digest on every machine: that is what makes the action cache
//! shared.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mini_store::store_path::StorePath;

use crate::digest::Digest;
use crate::error::{RemoteError, Result};
use crate::proto::re;

/// `arguments[1]` of every Action mini sends.
pub const BUILD_DERIVATION: &str = "build-derivation";
/// The platform every Action asks for, sorted by name as REAPI requires.
pub const PLATFORM: [(&str, &str); 3] = [("ISA", "x86-64"), ("OSFamily", "linux"), ("network", "none")];
/// The manifest's name, in `mini/`.
pub const MANIFEST: &str = "paths";

/// A store path of an action's input closure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputPath {
    pub path: StorePath,
    /// The digest of its NAR.
    pub digest: Digest,
    pub references: BTreeSet<StorePath>,
}

/// An Action and the messages it needs in CAS besides the NARs.
pub struct Prepared {
    pub action: Digest,
    /// The Action, Command, Directories and manifest, encoded.
    pub messages: Vec<(Digest, Vec<u8>)>,
}

/// Where an output (or input) travels in the input root or the result.
pub fn nar_file(path: &StorePath) -> String {
    format!("mini/store/{}.nar", path.base_name())
}

pub fn platform() -> re::Platform {
    re::Platform {
        properties: PLATFORM
            .iter()
            .map(|(name, value)| re::platform::Property { name: name.to_string(), value: value.to_string() })
            .collect(),
    }
}

/// The Action that builds `drv_path` (whose closure and input closure
/// `inputs` must be, with their digests) into `outputs`.
pub fn prepare(
    drv_path: &StorePath,
    outputs: &[StorePath],
    inputs: &[InputPath],
    timeout: Option<Duration>,
) -> Prepared {
    let mut messages = Vec::new();
    let mut sorted: Vec<&InputPath> = inputs.iter().collect();
    sorted.sort_by_key(|input| nar_name(&input.path));
    let manifest = render_manifest(&sorted);
    let manifest_digest = Digest::of(manifest.as_bytes());
    messages.push((manifest_digest, manifest.into_bytes()));
    let store = re::Directory {
        files: sorted
            .iter()
            .map(|input| re::FileNode {
                name: nar_name(&input.path),
                digest: Some(input.digest.to_proto()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let (store_digest, bytes) = Digest::of_message(&store);
    messages.push((store_digest, bytes));
    let mini = re::Directory {
        files: vec![re::FileNode {
            name: MANIFEST.into(),
            digest: Some(manifest_digest.to_proto()),
            ..Default::default()
        }],
        directories: vec![re::DirectoryNode { name: "store".into(), digest: Some(store_digest.to_proto()) }],
        ..Default::default()
    };
    let (mini_digest, bytes) = Digest::of_message(&mini);
    messages.push((mini_digest, bytes));
    let root = re::Directory {
        directories: vec![re::DirectoryNode { name: "mini".into(), digest: Some(mini_digest.to_proto()) }],
        ..Default::default()
    };
    let (root_digest, bytes) = Digest::of_message(&root);
    messages.push((root_digest, bytes));
    let mut output_paths: Vec<String> = outputs.iter().map(nar_file).collect();
    output_paths.sort();
    #[allow(deprecated)]
    let command = re::Command {
        arguments: vec!["mini".into(), BUILD_DERIVATION.into(), drv_path.to_string()],
        output_files: output_paths.clone(),
        output_paths,
        platform: Some(platform()),
        ..Default::default()
    };
    let (command_digest, bytes) = Digest::of_message(&command);
    messages.push((command_digest, bytes));
    let action = re::Action {
        command_digest: Some(command_digest.to_proto()),
        input_root_digest: Some(root_digest.to_proto()),
        timeout: timeout
            .map(|t| bazel_remote_apis::google::protobuf::Duration { seconds: t.as_secs() as i64, nanos: 0 }),
        platform: Some(platform()),
        ..Default::default()
    };
    let (action_digest, bytes) = Digest::of_message(&action);
    messages.push((action_digest, bytes));
    Prepared { action: action_digest, messages }
}

fn nar_name(path: &StorePath) -> String {
    format!("{}.nar", path.base_name())
}

fn render_manifest(sorted: &[&InputPath]) -> String {
    let mut text = String::new();
    for input in sorted {
        text.push_str(&input.path.base_name());
        for reference in &input.references {
            text.push(' ');
            text.push_str(&reference.base_name());
        }
        text.push('\n');
    }
    text
}

/// What a worker takes from a Command: the derivation and its outputs.
#[derive(Debug, PartialEq, Eq)]
pub struct Requested {
    pub drv_path: StorePath,
    pub outputs: Vec<StorePath>,
}

/// The Command of an Action mini sent; anything else is refused, since a
/// mini worker runs nothing but derivations, and never with the network.
pub fn read_command(action: &re::Action, command: &re::Command) -> Result<Requested> {
    let bad = |why: String| RemoteError::Refused(format!("the Action's Command is not one mini sends: {why}"));
    let [program, verb, drv] = command.arguments.as_slice() else {
        return Err(bad(format!("arguments {:?}", command.arguments)));
    };
    if program != "mini" || verb != BUILD_DERIVATION {
        return Err(bad(format!("arguments {:?}", command.arguments)));
    }
    let drv_path = StorePath::parse(drv).map_err(|e| bad(format!("'{drv}': {e}")))?;
    if !drv_path.name().ends_with(".drv") {
        return Err(bad(format!("'{drv}' is not a derivation")));
    }
    #[allow(deprecated)]
    let paths = if command.output_paths.is_empty() { &command.output_files } else { &command.output_paths };
    if paths.is_empty() {
        return Err(bad("it names no outputs".into()));
    }
    let mut outputs = Vec::new();
    for file in paths {
        let base = file.strip_prefix("mini/store/").and_then(|f| f.strip_suffix(".nar"));
        let path = base
            .and_then(|b| StorePath::parse_base_name(b).ok())
            .ok_or_else(|| bad(format!("output '{file}' is not mini/store/<store path>.nar")))?;
        outputs.push(path);
    }
    #[allow(deprecated)]
    let platforms = [&action.platform, &command.platform];
    for property in platforms.into_iter().flatten().flat_map(|p| &p.properties) {
        if property.name == "network" && property.value != "none" {
            return Err(bad(format!(
                "it asks for network={}, and mini workers build without the network",
                property.value
            )));
        }
    }
    Ok(Requested { drv_path, outputs })
}

/// The digest of the directory `name` in `dir`.
pub fn subdirectory(dir: &re::Directory, name: &str) -> Result<Digest> {
    entry(dir.directories.iter().map(|d| (&d.name, d.digest.as_ref())), name, "directory")
}

/// The digest of the file `name` in `dir`.
pub fn file(dir: &re::Directory, name: &str) -> Result<Digest> {
    entry(dir.files.iter().map(|f| (&f.name, f.digest.as_ref())), name, "file")
}

fn entry<'a>(
    mut entries: impl Iterator<Item = (&'a String, Option<&'a re::Digest>)>,
    name: &str,
    kind: &str,
) -> Result<Digest> {
    let (_, digest) = entries
        .find(|(n, _)| n.as_str() == name)
        .ok_or_else(|| RemoteError::Refused(format!("the input root has no {kind} '{name}'")))?;
    Digest::required(digest, name)
}

/// The NARs of `mini/store`: each a file named `<store path base>.nar`;
/// links, subdirectories and other names are refused.
pub fn read_store_dir(dir: &re::Directory) -> Result<BTreeMap<StorePath, Digest>> {
    let bad = |why: String| RemoteError::Refused(format!("mini/store in the input root: {why}"));
    if !dir.directories.is_empty() || !dir.symlinks.is_empty() {
        return Err(bad("it holds something other than files".into()));
    }
    let mut paths = BTreeMap::new();
    for file in &dir.files {
        let path = file
            .name
            .strip_suffix(".nar")
            .and_then(|b| StorePath::parse_base_name(b).ok())
            .ok_or_else(|| bad(format!("'{}' is not <store path>.nar", file.name)))?;
        let digest = Digest::required(file.digest.as_ref(), &file.name)?;
        if paths.insert(path, digest).is_some() {
            return Err(bad(format!("'{}' appears twice", file.name)));
        }
    }
    Ok(paths)
}

/// The manifest read against the NARs: every path in exactly one line,
/// every reference one of them.
pub fn read_manifest(text: &str, nars: &BTreeMap<StorePath, Digest>) -> Result<Vec<InputPath>> {
    let bad = |why: String| RemoteError::Refused(format!("mini/{MANIFEST} in the input root: {why}"));
    let mut seen = BTreeSet::new();
    let mut inputs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut words = line.split(' ');
        let base = words.next().unwrap_or_default();
        let path = StorePath::parse_base_name(base).map_err(|e| bad(format!("line {}: '{base}': {e}", number + 1)))?;
        let digest = *nars.get(&path).ok_or_else(|| bad(format!("line {}: {base} has no NAR", number + 1)))?;
        if !seen.insert(path.clone()) {
            return Err(bad(format!("{base} is listed twice")));
        }
        let mut references = BTreeSet::new();
        for word in words {
            let reference =
                StorePath::parse_base_name(word).map_err(|e| bad(format!("line {}: '{word}': {e}", number + 1)))?;
            if !nars.contains_key(&reference) {
                return Err(bad(format!("{base} refers to {word}, which the input root does not hold")));
            }
            references.insert(reference);
        }
        inputs.push(InputPath { path, digest, references });
    }
    if let Some(unlisted) = nars.keys().find(|p| !seen.contains(*p)) {
        return Err(bad(format!("{} has a NAR but no line", unlisted.base_name())));
    }
    Ok(inputs)
}

/// The digest of each of `outputs` in a result; every one must be there.
pub fn read_outputs(result: &re::ActionResult, outputs: &[StorePath]) -> Result<Vec<(StorePath, Digest)>> {
    outputs
        .iter()
        .map(|path| {
            let name = nar_file(path);
            let file = result
                .output_files
                .iter()
                .find(|f| f.path == name)
                .ok_or_else(|| RemoteError::Refused(format!("the ActionResult has no output {name}")))?;
            Ok((path.clone(), Digest::required(file.digest.as_ref(), &name)?))
        })
        .collect()
}

#[cfg(test)]
mod tests;
