use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use mini_store::derivation::{Derivation, Output};
use mini_store::store::Store;
use mini_store::testing::Scratch;

use super::*;
use crate::deb::testing::{control, deb, Entry};
use crate::deb::Compression;

/// Adds a `.deb` of `name` to the store; its store path.
fn add_deb(s: &Scratch, store: &Store, name: &str) -> StorePath {
    let file = s.0.join(format!("{name}.deb"));
    let data = [Entry::Dir("./"), Entry::Dir("./bin/"), Entry::File("./bin/dash", 0o755, b"dash")];
    let data: &[Entry] = if name == "dash" { &data } else { &data[..1] };
    fs::write(&file, deb(&control(name, "1.0-1", "amd64"), None, data, Compression::Gzip)).unwrap();
    store.add_path(&file, &format!("{name}_1.0-1_amd64.deb")).unwrap()
}

fn entry(name: &str, path: &StorePath, depends: &[&str]) -> Value {
    serde_json::json!({ "name": name, "version": "1.0-1", "architecture": "amd64", "path": path.to_string(), "depends": depends })
}

fn debroot_drv(debs: Option<String>, inputs: &[&StorePath]) -> Derivation {
    Derivation {
        name: "debian-root".into(),
        outputs: BTreeMap::from([("out".to_string(), Output { path: None, fixed: None })]),
        input_drvs: BTreeMap::new(),
        input_srcs: inputs.iter().map(|p| (*p).clone()).collect(),
        system: "x86_64-linux".into(),
        builder: "builtin:debroot".into(),
        args: vec![],
        env: debs.map(|d| BTreeMap::from([("debs".to_string(), d)])).unwrap_or_default(),
    }
}

/// Runs `builtin:debroot`; the log, or the error's text, and where the output was to go.
fn run(s: &Scratch, store: &Store, drv: &Derivation) -> (Result<String, String>, PathBuf) {
    let out = s.0.join("out");
    mini_store::store::discard_tree(&out);
    let outputs = BTreeMap::from([("out".to_string(), out.clone())]);
    let drv_path = drv.drv_path().unwrap();
    let mut log = Vec::new();
    let result = debroot()
        .build(&mut BuiltinJob {
            drv_path: &drv_path,
            drv,
            outputs: &outputs,
            store,
            log: &mut log,
            references: BTreeMap::new(),
            archive_hashes: BTreeMap::new(),
        })
        .map(|()| String::from_utf8(log).unwrap())
        .map_err(|e| e.to_string());
    (result, out)
}

#[test]
fn the_listed_debs_become_a_root() {
    let s = Scratch::new("debroot-ok");
    let store = Store::open(&s.0.join("store")).unwrap();
    let (dash, base) = (add_deb(&s, &store, "dash"), add_deb(&s, &store, "base-files"));
    let debs =
        serde_json::to_string(&[entry("base-files", &base, &[]), entry("dash", &dash, &["base-files"])]).unwrap();
    let (result, out) = run(&s, &store, &debroot_drv(Some(debs), &[&dash, &base]));
    let log = result.unwrap();
    assert!(log.contains("assembled 2 packages") && log.contains("unpacking dash 1.0-1 (amd64)"), "{log}");
    assert_eq!(fs::read(out.join("usr/bin/dash")).unwrap(), b"dash");
    let status = fs::read_to_string(out.join("var/lib/dpkg/status")).unwrap();
    assert!(status.starts_with("Package: base-files\nStatus: install ok installed\n"), "{status}");
}

#[test]
fn bad_lists_and_paths_outside_the_inputs_are_refused() {
    let s = Scratch::new("debroot-refused");
    let store = Store::open(&s.0.join("store")).unwrap();
    let (dash, other) = (add_deb(&s, &store, "dash"), add_deb(&s, &store, "other"));
    let ok = entry("dash", &dash, &[]);
    let with = |field: &str, value: Value| {
        let mut e = ok.clone();
        e[field] = value;
        serde_json::to_string(&[e]).unwrap()
    };
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "the derivation sets no 'debs'"),
        (Some("{".into()), "in 'debs': not JSON"),
        (Some("{}".into()), "not a JSON list"),
        (Some("[]".into()), "the list is empty"),
        (Some("[1]".into()), "entry 0: not a JSON object"),
        (Some(with("version", Value::from(1))), "'version' is not a string"),
        (Some(with("name", Value::from("--force"))), "invalid package name '--force'"),
        (Some(with("architecture", Value::from("amd 64"))), "invalid architecture"),
        (Some(with("depends", Value::from("base"))), "'depends' is not a list"),
        (
            Some(with("depends", serde_json::json!(["base-files"]))),
            "'dash' depends on 'base-files', which is not in the list",
        ),
        (Some(with("path", Value::from("/etc/passwd"))), "'path' of 'dash'"),
        (Some(with("extra", Value::from(1))), "unknown field 'extra'"),
        (Some(serde_json::to_string(&[ok.clone(), ok.clone()]).unwrap()), "the package 'dash' is listed twice"),
        (Some(serde_json::to_string(&[entry("other", &other, &[])]).unwrap()), "is not an input of this derivation"),
    ];
    for (debs, expected) in cases {
        let (result, out) = run(&s, &store, &debroot_drv(debs, &[&dash]));
        let err = result.unwrap_err();
        assert!(err.contains(expected), "expected '{expected}' in: {err}");
        assert!(!out.exists());
    }
    let mut missing = ok.clone();
    missing.as_object_mut().unwrap().remove("depends");
    let (result, _) = run(&s, &store, &debroot_drv(Some(serde_json::to_string(&[missing]).unwrap()), &[&dash]));
    assert!(result.unwrap_err().contains("no 'depends'"));
}

/// Installs a `.deb` of `name` as the output of a derivation (as
/// `pkgs.debian.fetchDeb` makes it); the derivation's path and the output's.
fn deb_from_a_derivation(s: &Scratch, store: &Store, name: &str) -> (StorePath, StorePath) {
    let base = format!("{}-{name}_1.0-1_amd64.deb", "0".repeat(32));
    let output = StorePath::parse_base_name(&base).unwrap();
    let drv = Derivation {
        name: format!("{name}_1.0-1_amd64.deb"),
        outputs: BTreeMap::from([("out".to_string(), Output { path: Some(output.clone()), fixed: None })]),
        input_drvs: BTreeMap::new(),
        input_srcs: BTreeSet::new(),
        system: "builtin".into(),
        builder: "builtin:fetchdeb".into(),
        args: vec![],
        env: BTreeMap::new(),
    };
    let text = mini_store::store::TextFile {
        name: format!("{}.drv", drv.name),
        text: drv.to_json(),
        references: BTreeSet::new(),
    };
    let drv_path = store.add_texts(&[text]).unwrap().remove(0);
    assert_eq!(drv_path, drv.drv_path().unwrap());
    let file = add_deb(s, store, name);
    let staged = store.staging_dir().unwrap().join("deb");
    fs::copy(store.physical_path(&file), &staged).unwrap();
    let _lock = store.lock(&output).unwrap();
    store.install(&output, &staged, BTreeSet::new(), Some(drv_path.clone())).unwrap();
    (drv_path, output)
}

#[test]
fn a_deb_made_by_an_input_derivation_is_an_input() {
    let s = Scratch::new("debroot-drv");
    let store = Store::open(&s.0.join("store")).unwrap();
    let (fetch_drv, deb) = deb_from_a_derivation(&s, &store, "dash");
    let debs = serde_json::to_string(&[entry("dash", &deb, &[])]).unwrap();
    let mut drv = debroot_drv(Some(debs), &[]);
    drv.input_drvs.insert(fetch_drv.clone(), BTreeSet::from(["out".to_string()]));
    let (result, out) = run(&s, &store, &drv);
    result.unwrap();
    assert_eq!(fs::read(out.join("usr/bin/dash")).unwrap(), b"dash");
    // Naming another output of the same derivation does not make `out` an input.
    drv.input_drvs.insert(fetch_drv, BTreeSet::from(["dev".to_string()]));
    let (result, _) = run(&s, &store, &drv);
    assert!(result.unwrap_err().contains("is not an input of this derivation"));
}
