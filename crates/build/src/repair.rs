//! Repairing the store (`mini store verify --repair`), as Nix's `--repair`
//! does: every path `verify` found missing or modified, or that a valid
//! path refers to but is gone, is put back: built again from the
//! derivation that makes it, or downloaded from a binary cache. A `.drv`
//! that nothing can put back is removed instead, with the `.drv`s that
//! refer to it, since evaluating again writes them back. What cannot be
//! repaired is reported with the reason.
//!
//! A broken path is invalidated just before it is rebuilt or downloaded
//! (a rebuild would otherwise find it valid and do nothing), so a failed
//! repair leaves it missing rather than modified; `verify` says so.

use std::collections::{BTreeMap, BTreeSet};

use mini_store::store::{PathInfo, Problem, Store};
use mini_store::store_path::StorePath;

use crate::error::Result;
use crate::schedule::{Builder, Substituter};

/// One thing a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repaired {
    /// `path` was built again from `drv`.
    Rebuilt { path: StorePath, drv: StorePath },
    /// Downloaded again from a binary cache.
    Substituted(StorePath),
    /// A `.drv` nothing could put back, or one referring to such a `.drv`,
    /// was removed; evaluating again writes it back.
    Removed(StorePath),
}

/// What a repair did, and what it could not do.
#[derive(Debug, Default)]
pub struct RepairReport {
    pub repaired: Vec<Repaired>,
    /// What is still broken (a store path, or an unreadable record) and why.
    pub unrepaired: Vec<(String, String)>,
}

/// Repairs what `problems` (from [`Store::verify`]) name. `builder`
/// rebuilds (give it `substituter` too, so that a rebuild is downloaded
/// when it can be); `substituter` also downloads paths no derivation in
/// the store makes.
pub fn repair(
    store: &Store,
    builder: &Builder<'_>,
    substituter: Option<&dyn Substituter>,
    problems: &[Problem],
) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    let mut broken = BTreeSet::new();
    for problem in problems {
        match problem {
            Problem::Missing(path) | Problem::Modified(path) => {
                broken.insert(path.clone());
            }
            Problem::MissingReference { reference, .. } => {
                broken.insert(reference.clone());
            }
            Problem::BadRecord(what) => report
                .unrepaired
                .push((what.clone(), "the record cannot be read; fix or delete the record file".into())),
        }
    }
    let offered = |path: &StorePath| substituter.is_some_and(|s| s.has(path));
    let nowhere = if substituter.is_some() { "no binary cache has it" } else { "no binary cache is configured" };
    // `.drv`s first: removing one may make a derivation unusable for rebuilds.
    let (drvs, others): (Vec<StorePath>, Vec<StorePath>) = broken.into_iter().partition(is_drv);
    let mut downloads = Vec::new();
    for drv in drvs {
        if offered(&drv) {
            downloads.push(drv);
        } else {
            remove_with_referrers(store, &drv, nowhere, &mut report)?;
        }
    }
    let mut producers = Producers::default();
    let mut rebuilds: BTreeMap<StorePath, Vec<StorePath>> = BTreeMap::new();
    for path in others {
        match producers.of(store, &path)? {
            Some(drv) => rebuilds.entry(drv).or_default().push(path),
            None if offered(&path) => downloads.push(path),
            None => report.unrepaired.push((
                path.to_string(),
                format!("nothing can put it back: no derivation in the store makes it, and {nowhere}"),
            )),
        }
    }
    if let Some(substituter) = substituter {
        for path in downloads {
            download(store, substituter, &path, &mut report)?;
        }
    }
    for (drv, paths) in rebuilds {
        rebuild(store, builder, &drv, paths, &mut report)?;
    }
    Ok(report)
}

fn is_drv(path: &StorePath) -> bool {
    path.name().ends_with(".drv")
}

/// Removes `drv` and every valid path that refers to it, directly or not,
/// if all of them are `.drv`s (which evaluation writes back); otherwise
/// reports `drv` as unrepaired.
fn remove_with_referrers(store: &Store, drv: &StorePath, nowhere: &str, report: &mut RepairReport) -> Result<()> {
    let infos: Vec<PathInfo> = store.infos(&store.all_valid()?)?;
    let mut doomed = BTreeSet::from([drv.clone()]);
    loop {
        let more: Vec<StorePath> = infos
            .iter()
            .filter(|i| !doomed.contains(&i.path) && i.references.iter().any(|r| doomed.contains(r)))
            .map(|i| i.path.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        doomed.extend(more);
    }
    if let Some(other) = doomed.iter().find(|p| !is_drv(p)) {
        report.unrepaired.push((
            drv.to_string(),
            format!("nothing can put it back ({nowhere}), and {other}, which is not a derivation, refers to it"),
        ));
        return Ok(());
    }
    for path in doomed {
        store.invalidate(&path)?;
        report.repaired.push(Repaired::Removed(path));
    }
    Ok(())
}

/// Downloads `path` again from `substituter`.
fn download(store: &Store, substituter: &dyn Substituter, path: &StorePath, report: &mut RepairReport) -> Result<()> {
    store.invalidate(path)?;
    store.add_temp_root(path)?;
    let _lock = store.lock(path)?;
    if store.is_valid(path) {
        // Another process put it back meanwhile.
        report.repaired.push(Repaired::Substituted(path.clone()));
        return Ok(());
    }
    match substituter.substitute(store, path) {
        Ok(true) => report.repaired.push(Repaired::Substituted(path.clone())),
        Ok(false) => report.unrepaired.push((path.to_string(), "the binary cache no longer offers it".into())),
        Err(why) => report.unrepaired.push((path.to_string(), format!("downloading it failed: {why}"))),
    }
    Ok(())
}

/// Builds `drv` again for `paths`, its broken outputs (or downloads
/// them, if the builder has a substituter that offers them).
fn rebuild(
    store: &Store,
    builder: &Builder<'_>,
    drv: &StorePath,
    paths: Vec<StorePath>,
    report: &mut RepairReport,
) -> Result<()> {
    for path in &paths {
        store.invalidate(path)?;
    }
    let (why, downloaded) = match builder.realise(std::slice::from_ref(drv), false) {
        Ok(built) => {
            let downloaded = built.substituted.contains(drv);
            match built.failed.into_iter().next() {
                Some((_, error)) => (error.to_string(), downloaded),
                None if built.not_attempted.is_empty() => (String::new(), downloaded),
                None => ("its inputs could not be built".into(), downloaded),
            }
        }
        Err(error) => (error.to_string(), false),
    };
    for path in paths {
        if store.is_valid(&path) && downloaded {
            report.repaired.push(Repaired::Substituted(path));
        } else if store.is_valid(&path) {
            report.repaired.push(Repaired::Rebuilt { path, drv: drv.clone() });
        } else {
            report.unrepaired.push((path.to_string(), format!("building it again from {drv} failed: {why}")));
        }
    }
    Ok(())
}

/// Which derivation makes a path: its record's deriver if that is in the
/// store as written, else any `.drv` in the store that has it as an output
/// (a path referred to but gone has no record), found on first need.
#[derive(Default)]
struct Producers {
    index: Option<BTreeMap<StorePath, StorePath>>,
}

impl Producers {
    fn of(&mut self, store: &Store, path: &StorePath) -> Result<Option<StorePath>> {
        let makes = |drv: &StorePath| {
            store.read_derivation(drv).is_ok_and(|d| d.outputs.values().any(|o| o.path.as_ref() == Some(path)))
        };
        if let Some(deriver) = store.query(path)?.and_then(|info| info.deriver) {
            if makes(&deriver) {
                return Ok(Some(deriver));
            }
        }
        if self.index.is_none() {
            let mut index = BTreeMap::new();
            for drv in store.all_valid()?.into_iter().filter(is_drv) {
                if let Ok(d) = store.read_derivation(&drv) {
                    for output in d.outputs.into_values().filter_map(|o| o.path) {
                        index.insert(output, drv.clone());
                    }
                }
            }
            self.index = Some(index);
        }
        Ok(self.index.as_ref().and_then(|index| index.get(path).cloned()))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::builtin_builders::{BuiltinBuilder, BuiltinJob};
    use crate::error::io_err;
    use crate::schedule::{BuildOptions, Silent};
    use crate::testing::{add_drv, Scratch};

    /// Writes its name and its inputs' output paths (so it refers to them).
    struct Echo;

    impl BuiltinBuilder for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }

        fn build(&self, job: &mut BuiltinJob<'_>) -> Result<()> {
            let mut text = job.drv.name.clone();
            for input in job.drv.input_drvs.keys() {
                let drv = job.store.read_derivation(input)?;
                text.extend(drv.outputs.values().filter_map(|o| o.path.as_ref()).map(|p| format!(" {p}")));
            }
            let out = &job.outputs["out"];
            fs::write(out, text).map_err(io_err("writing", out))
        }
    }

    fn out_of(store: &Store, drv: &StorePath) -> StorePath {
        store.read_derivation(drv).unwrap().outputs["out"].path.clone().unwrap()
    }

    /// A store with `dep` and `app` (which refers to `dep`) built.
    fn built(s: &Scratch) -> (Store, StorePath, StorePath) {
        let store = Store::open(&s.0).unwrap();
        let dep = add_drv(&store, "dep", "builtin:echo", &[]);
        let app = add_drv(&store, "app", "builtin:echo", &[&dep]);
        let report = Builder::new(&store, BuildOptions::default(), &Silent)
            .with_builtin(Box::new(Echo))
            .realise(std::slice::from_ref(&app), false)
            .unwrap();
        assert_eq!(report.built.len(), 2, "{report:?}");
        (store, dep, app)
    }

    fn repaired(store: &Store, substituter: Option<&dyn Substituter>) -> RepairReport {
        let problems = store.verify(true).unwrap();
        let mut builder = Builder::new(store, BuildOptions::default(), &Silent).with_builtin(Box::new(Echo));
        if let Some(s) = substituter {
            builder = builder.with_substituter(s);
        }
        repair(store, &builder, substituter, &problems).unwrap()
    }

    fn tamper(store: &Store, path: &StorePath, text: &str) {
        let file = store.physical_path(path);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&file, text).unwrap();
    }

    #[test]
    fn a_reference_gone_from_the_store_is_built_again() {
        let s = Scratch::new("repair-gone");
        let (store, dep, app) = built(&s);
        let (dep_out, app_out) = (out_of(&store, &dep), out_of(&store, &app));
        store.invalidate(&dep_out).unwrap();
        assert_eq!(
            store.verify(true).unwrap(),
            [Problem::MissingReference { path: app_out.clone(), reference: dep_out.clone() }]
        );
        let report = repaired(&store, None);
        assert_eq!(report.repaired, [Repaired::Rebuilt { path: dep_out.clone(), drv: dep }]);
        assert!(report.unrepaired.is_empty(), "{:?}", report.unrepaired);
        assert_eq!(store.verify(true).unwrap(), []);
        assert_eq!(fs::read_to_string(store.physical_path(&dep_out)).unwrap(), "dep");
    }

    #[test]
    fn a_modified_output_is_built_again() {
        let s = Scratch::new("repair-modified");
        let (store, _, app) = built(&s);
        let app_out = out_of(&store, &app);
        let good = fs::read_to_string(store.physical_path(&app_out)).unwrap();
        tamper(&store, &app_out, "evil");
        assert_eq!(store.verify(true).unwrap(), [Problem::Modified(app_out.clone())]);
        let report = repaired(&store, None);
        assert_eq!(report.repaired, [Repaired::Rebuilt { path: app_out.clone(), drv: app }]);
        assert_eq!(fs::read_to_string(store.physical_path(&app_out)).unwrap(), good);
        assert_eq!(store.verify(true).unwrap(), []);
    }

    #[test]
    fn a_modified_drv_is_removed_with_the_drvs_that_refer_to_it() {
        let s = Scratch::new("repair-drv");
        let (store, dep, app) = built(&s);
        tamper(&store, &dep, "{}");
        let report = repaired(&store, None);
        let mut removed = vec![Repaired::Removed(dep.clone()), Repaired::Removed(app.clone())];
        removed.sort_by_key(|r| format!("{r:?}"));
        let mut got = report.repaired.clone();
        got.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(got, removed);
        assert!(!store.is_valid(&dep) && !store.is_valid(&app));
        assert_eq!(store.verify(true).unwrap(), []);
        // Writing the derivations again (as evaluating does) restores them.
        let again = add_drv(&store, "dep", "builtin:echo", &[]);
        assert_eq!(again, dep);
    }

    /// Offers one path, which it installs with the given text.
    struct Cache(StorePath, &'static str);

    impl Substituter for Cache {
        fn has(&self, path: &StorePath) -> bool {
            *path == self.0
        }

        fn substitute(&self, store: &Store, path: &StorePath) -> std::result::Result<bool, String> {
            if *path != self.0 {
                return Ok(false);
            }
            let staged = store.staging_dir().map_err(|e| e.to_string())?;
            fs::write(staged.join("f"), self.1).map_err(|e| e.to_string())?;
            store.install(path, &staged.join("f"), BTreeSet::new(), None).map_err(|e| e.to_string())?;
            Ok(true)
        }
    }

    #[test]
    fn a_path_no_derivation_makes_is_downloaded_or_reported() {
        let s = Scratch::new("repair-source");
        let store = Store::open(&s.0).unwrap();
        let source = store.add_text("source", "hello", &BTreeSet::new()).unwrap();
        tamper(&store, &source, "evil");
        let report = repaired(&store, None);
        assert!(report.repaired.is_empty());
        assert_eq!(report.unrepaired.len(), 1);
        assert!(report.unrepaired[0].1.contains("no binary cache is configured"), "{:?}", report.unrepaired);
        assert_eq!(store.verify(true).unwrap(), [Problem::Modified(source.clone())], "left as it was");

        let cache = Cache(source.clone(), "hello");
        let report = repaired(&store, Some(&cache));
        assert_eq!(report.repaired, [Repaired::Substituted(source.clone())]);
        assert_eq!(fs::read_to_string(store.physical_path(&source)).unwrap(), "hello");
        assert_eq!(store.verify(true).unwrap(), []);
    }
}
