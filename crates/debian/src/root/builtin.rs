//! `builtin:debroot`: the root of `pkgs.debian.root`. Its env `debs` is a
//! JSON list of `{ "name", "version", "architecture", "path", "depends" }`
//! (`path` a `.deb` in the store, `/mini/store/...`), and its output `out`
//! is the root [`super::assemble`] makes of them. The list comes from a
//! recipe, so it is checked like any untrusted input: every field present
//! and well-formed, each name once, each dependency among the names, and
//! each path one of the derivation's inputs (a recipe cannot make mini
//! read an arbitrary file of the host through it).

use std::collections::BTreeSet;
use std::path::PathBuf;

use mini_build::builtin_builders::{BuiltinBuilder, BuiltinJob};
use mini_store::store_path::StorePath;
use serde_json::Value;

use super::{check_architecture, check_package_name, check_version, RootInput};

/// `builtin:debroot`.
pub fn debroot() -> Box<dyn BuiltinBuilder> {
    Box::new(DebRoot)
}

struct DebRoot;

/// One entry of `debs`, its `path` still the logical store path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    name: String,
    version: String,
    architecture: String,
    path: StorePath,
    depends: Vec<String>,
}

const FIELDS: [&str; 5] = ["name", "version", "architecture", "path", "depends"];

impl BuiltinBuilder for DebRoot {
    fn name(&self) -> &'static str {
        "debroot"
    }

    fn build(&self, job: &mut BuiltinJob<'_>) -> mini_build::Result<()> {
        let text = job.drv.env.get("debs").ok_or_else(|| {
            job.error("the derivation sets no 'debs' (the JSON list of packages pkgs.debian.root writes)")
        })?;
        let listed = parse_debs(text).map_err(|e| job.error(format!("in 'debs': {e}")))?;
        let inputs = input_paths(job)?;
        let mut roots = Vec::with_capacity(listed.len());
        for entry in listed {
            if !inputs.contains(&entry.path) {
                return Err(job.error(format!(
                    "in 'debs': the path of '{}' ({}) is not an input of this derivation; \
                     pkgs.debian.root takes the .deb files from pkgs.debian.fetchDeb",
                    entry.name, entry.path
                )));
            }
            roots.push(RootInput {
                path: job.store.physical_path(&entry.path),
                name: entry.name,
                version: entry.version,
                architecture: entry.architecture,
                depends: entry.depends,
            });
        }
        let out: PathBuf = job.output("out")?.to_path_buf();
        let assembled = super::assemble(&roots, &out, job.log).map_err(|e| job.error(e.to_string()))?;
        let _ = writeln!(
            job.log,
            "assembled {} packages, {} entries ({} replaced), {} alternatives",
            assembled.order.len(),
            assembled.entries,
            assembled.replaced,
            assembled.alternatives.len()
        );
        Ok(())
    }
}

/// The store paths the derivation may read: its input sources, the
/// outputs it names of its input derivations, and their closures.
fn input_paths(job: &BuiltinJob<'_>) -> mini_build::Result<BTreeSet<StorePath>> {
    let mut direct: BTreeSet<StorePath> = job.drv.input_srcs.clone();
    for (drv_path, outputs) in &job.drv.input_drvs {
        let drv = job.store.read_derivation(drv_path)?;
        for name in outputs {
            if let Some(path) = drv.outputs.get(name).and_then(|o| o.path.clone()) {
                direct.insert(path);
            }
        }
    }
    let valid: Vec<StorePath> = direct.iter().filter(|p| job.store.is_valid(p)).cloned().collect();
    let mut all = direct;
    all.extend(job.store.closure(&valid)?.into_iter().map(|info| info.path));
    Ok(all)
}

/// Parses and checks the `debs` list.
fn parse_debs(text: &str) -> Result<Vec<Listed>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = value.as_array().ok_or("not a JSON list")?;
    if items.is_empty() {
        return Err("the list is empty; a root needs at least one package".into());
    }
    let mut listed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let entry = parse_entry(item).map_err(|e| format!("entry {i}: {e}"))?;
        if listed.iter().any(|l: &Listed| l.name == entry.name) {
            return Err(format!("the package '{}' is listed twice", entry.name));
        }
        listed.push(entry);
    }
    for entry in &listed {
        if let Some(missing) = entry.depends.iter().find(|d| !listed.iter().any(|l| &l.name == *d)) {
            return Err(format!("'{}' depends on '{missing}', which is not in the list", entry.name));
        }
    }
    Ok(listed)
}

fn parse_entry(item: &Value) -> Result<Listed, String> {
    let object = item.as_object().ok_or("not a JSON object")?;
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field '{}' (the fields are {})", crate::deb::shown(unknown), FIELDS.join(", ")));
    }
    let string = |field: &str| -> Result<String, String> {
        object
            .get(field)
            .ok_or_else(|| format!("no '{field}'"))?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("'{field}' is not a string"))
    };
    let (name, version, architecture) = (string("name")?, string("version")?, string("architecture")?);
    check_package_name(&name).map_err(|e| e.to_string())?;
    check_version(&version).map_err(|e| e.to_string())?;
    check_architecture(&architecture).map_err(|e| e.to_string())?;
    let path_text = string("path")?;
    let path = StorePath::parse(&path_text).map_err(|e| format!("'path' of '{name}': {e}"))?;
    let depends = object
        .get("depends")
        .ok_or("no 'depends'")?
        .as_array()
        .ok_or("'depends' is not a list")?
        .iter()
        .map(|d| d.as_str().map(str::to_string).ok_or_else(|| format!("'depends' of '{name}' holds a non-string")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Listed { name, version, architecture, path, depends })
}

#[cfg(test)]
mod tests;
