//! What the unit tests of this crate share.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use mini_store::derivation::{Derivation, Output};
use mini_store::store::{Store, TextFile};
use mini_store::store_path::StorePath;

/// A fresh scratch directory, removed (made writable first) on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> Scratch {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mini-build-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chmod").arg("-R").arg("u+rwx").arg(&self.0).status();
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes a derivation named `name`, run by `builder`, depending on the
/// `out` output of each of `inputs`; its `.drv` path.
pub(crate) fn add_drv(store: &Store, name: &str, builder: &str, inputs: &[&StorePath]) -> StorePath {
    let mut drv = Derivation {
        name: name.into(),
        outputs: BTreeMap::from([("out".to_string(), Output { path: None, fixed: None })]),
        input_drvs: inputs.iter().map(|p| ((*p).clone(), BTreeSet::from(["out".to_string()]))).collect(),
        input_srcs: BTreeSet::new(),
        system: "x86_64-linux".into(),
        builder: builder.into(),
        args: vec![],
        env: BTreeMap::new(),
    };
    let modulo = drv.hash_modulo(&mut |p| modulo_of(store, p));
    drv.fill_output_paths(modulo).unwrap();
    let references = drv.input_drvs.keys().cloned().collect();
    let file = TextFile { name: format!("{name}.drv"), text: drv.to_json(), references };
    let path = store.add_texts(&[file]).unwrap().remove(0);
    assert_eq!(path, drv.drv_path().unwrap());
    path
}

fn modulo_of(store: &Store, drv_path: &StorePath) -> mini_store::derivation::ModuloHash {
    store.read_derivation(drv_path).unwrap().hash_modulo(&mut |p| modulo_of(store, p))
}
