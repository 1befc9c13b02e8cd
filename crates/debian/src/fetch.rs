//! `builtin:fetchdeb` (the prelude's `pkgs.debian.fetchDeb`): brings one
//! `.deb` into the store with the host's apt ([`apt::download`]), so the
//! host's sources, mirrors, proxies and credentials are the ones used.
//! The derivation is a fixed output, the flat SHA-256 `debian.lock` pins:
//! the scheduler checks the file against it afterwards, so whatever the
//! host's apt serves, only the pinned bytes become valid.
//!
//! The package, version and architecture come from the recipe and go to
//! apt's command line, so [`apt::download`] checks them first: none can
//! become an option.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use mini_build::builtin_builders::{BuiltinBuilder, BuiltinJob};
use mini_build::error::{BuildError, Result};
use mini_store::derivation::HashMode;
use mini_store::store::discard_tree;

use crate::apt::{self, Apt};

/// `builtin:fetchdeb` run with `apt`.
pub fn fetchdeb(apt: Apt) -> Box<dyn BuiltinBuilder> {
    Box::new(FetchDeb { apt })
}

/// `builtin:fetchdeb`: env `package`, `version` (with its epoch) and
/// `architecture`; `$out` is the `.deb` file (0444).
struct FetchDeb {
    apt: Apt,
}

impl BuiltinBuilder for FetchDeb {
    fn name(&self) -> &'static str {
        "fetchdeb"
    }

    fn build(&self, job: &mut BuiltinJob<'_>) -> Result<()> {
        match job.drv.fixed_output() {
            Some(fixed) if fixed.algo == "sha256" && fixed.mode == HashMode::Flat => {}
            _ => return Err(job.error("builtin:fetchdeb requires a fixed output: a flat sha256 (outputHash)")),
        }
        let env = |name: &str| {
            job.drv.env.get(name).cloned().ok_or_else(|| job.error(format!("the derivation sets no '{name}'")))
        };
        let (package, version, architecture) = (env("package")?, env("version")?, env("architecture")?);
        let out = job.output("out")?.to_path_buf();
        let staging = job.store.staging_dir()?;
        let downloaded = apt::download(&self.apt, &package, &version, &architecture, &staging.join("apt"), job.log)
            .map_err(|e| job.error(e.to_string()));
        let result = downloaded.and_then(|file| {
            fs::rename(&file, &out).map_err(|source| io_error("moving into place", &out, source))?;
            fs::set_permissions(&out, fs::Permissions::from_mode(0o444))
                .map_err(|source| io_error("setting the mode of", &out, source))
        });
        discard_tree(&staging);
        if result.is_err() {
            let _ = fs::remove_file(&out);
        }
        result
    }
}

fn io_error(action: &'static str, path: &std::path::Path, source: std::io::Error) -> BuildError {
    BuildError::Io { action, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use mini_build::schedule::{BuildOptions, Builder, Silent, SYSTEM};
    use mini_store::derivation::{Derivation, FixedHash, Output};
    use mini_store::encoding::sri_decode;
    use mini_store::store::{Store, TextFile};
    use mini_store::store_path::StorePath;
    use mini_store::testing::Scratch;

    /// A fake apt: `apt-config` says where the lists are, `apt-get` logs its
    /// arguments and, for `download`, runs `download` in its directory.
    fn fake_apt(s: &Scratch, download: &str, exit: i32) -> Apt {
        let dir = s.0.join("bin");
        let _ = fs::create_dir(&dir);
        let config = dir.join("apt-config");
        fs::write(&config, "#!/bin/sh\necho \"LISTS='/var/lib/apt/lists/'\"\necho \"ARCH='amd64'\"\n").unwrap();
        let get = dir.join("apt-get");
        let body = format!("#!/bin/sh\necho \"args: $*\"\necho 'Get:1 somewhere' >&2\n{download}\nexit {exit}\n");
        fs::write(&get, body).unwrap();
        // Run by sh, not executed itself: a file just written may be busy
        // (ETXTBSY) while another test's child still holds it open.
        let sh = |script: &Path| vec!["sh".into(), script.into()];
        Apt::new(sh(&get), sh(&dir.join("no-apt-cache")), sh(&config))
    }

    /// A fixed-output `builtin:fetchdeb` derivation of `digest`, with `env`
    /// over the usual package, version and architecture, written to `store`.
    fn fetchdeb_drv(store: &Store, digest: Vec<u8>, env: &[(&str, &str)]) -> (StorePath, Derivation) {
        let mut vars: BTreeMap<String, String> =
            [("package", "hostname"), ("version", "3.23+nmu1"), ("architecture", "amd64")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let fixed = FixedHash { algo: "sha256".into(), mode: HashMode::Flat, digest };
        let mut drv = Derivation {
            name: "hostname_3.23+nmu1_amd64.deb".into(),
            outputs: BTreeMap::from([("out".to_string(), Output { path: None, fixed: Some(fixed) })]),
            input_drvs: BTreeMap::new(),
            input_srcs: BTreeSet::new(),
            system: SYSTEM.into(),
            builder: "builtin:fetchdeb".into(),
            args: vec![],
            env: vars,
        };
        let modulo = drv.hash_modulo(&mut |_| unreachable!("no inputs"));
        drv.fill_output_paths(modulo).unwrap();
        let file = TextFile { name: format!("{}.drv", drv.name), text: drv.to_json(), references: BTreeSet::new() };
        let path = store.add_texts(&[file]).unwrap().remove(0);
        (path, drv)
    }

    /// Runs `builtin:fetchdeb` with `apt` on `drv`; the outcome as text, the log, and where `$out` was.
    fn run(s: &Scratch, apt: Apt, drv: &Derivation) -> (std::result::Result<(), String>, String, PathBuf) {
        let store = Store::open(&s.0.join("store")).unwrap();
        let out = s.0.join("out");
        let _ = fs::remove_file(&out);
        let outputs = BTreeMap::from([("out".to_string(), out.clone())]);
        let drv_path = drv.drv_path().unwrap();
        let mut log = Vec::new();
        let result = fetchdeb(apt)
            .build(&mut BuiltinJob {
                drv_path: &drv_path,
                drv,
                outputs: &outputs,
                store: &store,
                log: &mut log,
                references: BTreeMap::new(),
                archive_hashes: BTreeMap::new(),
            })
            .map_err(|e| e.to_string());
        let leftovers: Vec<_> = fs::read_dir(s.0.join("store/tmp")).unwrap().collect();
        assert!(leftovers.is_empty(), "apt's directory is removed: {leftovers:?}");
        (result, String::from_utf8(log).unwrap(), out)
    }

    const ONE_DEB: &str = "printf 'a deb' > hostname_3.23+nmu1_amd64.deb";

    #[test]
    fn the_one_file_apt_downloads_becomes_the_output() {
        let s = Scratch::new("fetchdeb-ok");
        let store = Store::open(&s.0.join("store")).unwrap();
        let (_, drv) = fetchdeb_drv(&store, vec![0; 32], &[("version", "1:2.0~rc1-1")]);
        let (result, log, out) = run(&s, fake_apt(&s, ONE_DEB, 0), &drv);
        result.unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"a deb");
        assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o444);
        // apt's output, both streams, is the build log; what it was asked is exactly the package.
        assert!(log.contains("args: download -q -o Debug::NoLocking=1"), "{log}");
        assert!(log.contains("-o Dir::State::Lists=/var/lib/apt/lists/"), "{log}");
        assert!(log.contains(" hostname:amd64=1:2.0~rc1-1\n") && log.contains("Get:1 somewhere"), "{log}");
    }

    #[test]
    fn anything_but_one_regular_file_is_an_error_that_says_what_came() {
        let s = Scratch::new("fetchdeb-wrong");
        let store = Store::open(&s.0.join("store")).unwrap();
        let (_, drv) = fetchdeb_drv(&store, vec![0; 32], &[]);
        for (download, exit, expected) in [
            ("touch a.deb b.deb", 0, "it left 2 files, not one: 'a.deb', 'b.deb'"),
            ("", 0, "it left 0 files, not one: none"),
            ("ln -s /etc/passwd x.deb", 0, "it left 'x.deb', which is not a regular file"),
            ("mkdir x.deb", 0, "it left 'x.deb', which is not a regular file"),
            ("echo 'E: Can not find version' >&2", 100, "apt-get failed (exit status: 100) to download"),
        ] {
            let (result, _, out) = run(&s, fake_apt(&s, download, exit), &drv);
            let err = result.unwrap_err();
            assert!(err.contains(expected), "{download}: {err}");
            assert!(fs::symlink_metadata(&out).is_err(), "{download}: no output is left");
        }
        let (result, _, _) = run(&s, fake_apt(&s, "echo 'E: Can not find version' >&2", 100), &drv);
        assert!(result.unwrap_err().contains("> E: Can not find version"));
    }

    #[test]
    fn nothing_from_the_recipe_becomes_an_option_and_the_output_must_be_a_flat_sha256() {
        let s = Scratch::new("fetchdeb-checks");
        let store = Store::open(&s.0.join("store")).unwrap();
        for (env, expected) in [
            (("package", "-oAPT::x=1"), "the package name '-oAPT::x=1' is not valid"),
            (("package", "hostname=1"), "the package name 'hostname=1' is not valid"),
            (("version", "-1"), "the version '-1' is not valid"),
            (("version", "1 --x"), "the version '1 --x' is not valid"),
            (("architecture", "amd64/../x"), "the architecture 'amd64/../x' is not valid"),
        ] {
            let (_, drv) = fetchdeb_drv(&store, vec![0; 32], &[env]);
            let (result, log, _) = run(&s, fake_apt(&s, ONE_DEB, 0), &drv);
            let err = result.unwrap_err();
            assert!(err.contains(expected), "{env:?}: {err}");
            assert!(!log.contains("args:"), "apt-get never ran: {log}");
        }
        let (_, mut drv) = fetchdeb_drv(&store, vec![0; 32], &[]);
        drv.env.remove("architecture");
        let (result, _, _) = run(&s, fake_apt(&s, ONE_DEB, 0), &drv);
        assert!(result.unwrap_err().contains("the derivation sets no 'architecture'"));
        let fixed = drv.outputs.get_mut("out").unwrap().fixed.as_mut().unwrap();
        fixed.mode = HashMode::Recursive;
        let (result, _, _) = run(&s, fake_apt(&s, ONE_DEB, 0), &drv);
        assert!(result.unwrap_err().contains("requires a fixed output: a flat sha256"));
        drv.outputs.get_mut("out").unwrap().fixed = None;
        let (result, _, _) = run(&s, fake_apt(&s, ONE_DEB, 0), &drv);
        assert!(result.unwrap_err().contains("requires a fixed output"));
    }

    #[test]
    fn the_scheduler_checks_the_pinned_hash_and_registers_nothing_else() {
        let s = Scratch::new("fetchdeb-hash");
        let store = Store::open(&s.0.join("store")).unwrap();
        let (wrong, drv) = fetchdeb_drv(&store, vec![0; 32], &[]);
        let builder =
            Builder::new(&store, BuildOptions::default(), &Silent).with_builtin(fetchdeb(fake_apt(&s, ONE_DEB, 0)));
        let report = builder.realise(std::slice::from_ref(&wrong), false).unwrap();
        let got = match &report.failed[..] {
            [(_, BuildError::HashMismatch { specified, got, .. })] => {
                assert!(specified.starts_with("sha256-AAAA"), "{specified}");
                got.clone()
            }
            other => panic!("expected a hash mismatch: {other:?}"),
        };
        let out = drv.outputs["out"].path.clone().unwrap();
        assert!(!store.is_valid(&out) && fs::symlink_metadata(store.physical_path(&out)).is_err());

        // Pinned to what it got, the same download is the output.
        let (_, digest) = sri_decode(&got).unwrap();
        let (right, drv) = fetchdeb_drv(&store, digest, &[]);
        let report = builder.realise(std::slice::from_ref(&right), false).unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
        let out = drv.outputs["out"].path.clone().unwrap();
        assert!(store.is_valid(&out));
        assert_eq!(fs::read(store.physical_path(&out)).unwrap(), b"a deb");
    }

    #[test]
    fn the_hosts_apt_downloads_a_pinned_deb() {
        if !crate::apt::tests::have_apt() {
            return;
        }
        let apt = Apt::host();
        let lock = apt::resolve(&apt, None, None, &["hostname".to_string()]).unwrap();
        let hostname = lock.packages.iter().find(|p| p.name == "hostname").unwrap();
        let s = Scratch::new("fetchdeb-real");
        let store = Store::open(&s.0.join("store")).unwrap();
        let digest = mini_store::encoding::hex_decode(&hostname.sha256).unwrap();
        let env = [("version", hostname.version.as_str()), ("architecture", hostname.architecture.as_str())];
        let (drv_path, drv) = fetchdeb_drv(&store, digest, &env);
        let report = Builder::new(&store, BuildOptions::default(), &Silent)
            .with_builtin(fetchdeb(apt))
            .realise(std::slice::from_ref(&drv_path), false)
            .unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
        let out = store.physical_path(&drv.outputs["out"].path.clone().unwrap());
        let size = fs::metadata(&out).unwrap().len();
        assert_eq!(size, hostname.size);
        assert_eq!(&fs::read(&out).unwrap()[..8], b"!<arch>\n", "a .deb is an ar archive");
    }
}
