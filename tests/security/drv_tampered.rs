//! A `.drv` is content-addressed: one edited on disk no longer hashes to
//! its path. It used to be built anyway, so whoever could write to the
//! store could change what a derivation runs while its outputs kept their
//! paths. Every reader now checks the text against the path and refuses a
//! modified one, saying what to do; `mini store verify --repair` removes
//! it, and evaluating again writes it back.

use std::os::unix::fs::PermissionsExt;

use crate::{ok, text, users, Attempt};

/// A flake with one derivation, `thing`, written to the store: its `.drv`
/// path and its JSON.
fn the_derivation(a: &Attempt) -> (String, serde_json::Value) {
    a.flake(&[("thing", "echo good > $out")], "");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&a.mini(&["derivation", "show", ".#thing"]))).expect("derivation show is JSON");
    let (drv, recipe) = shown.as_object().and_then(|o| o.iter().next()).expect("one derivation");
    (drv.clone(), recipe.clone())
}

#[test]
fn a_modified_derivation_is_refused() {
    for who in users() {
        let a = Attempt::new("drv-tampered", who);
        let (drv, recipe) = &the_derivation(&a);
        let out = recipe["outputs"]["out"]["path"].as_str().expect("an output path").to_string();

        let file = a.physical(drv);
        let original = std::fs::read_to_string(&file).expect("read the .drv");
        assert!(original.contains("echo good"), "{original}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("make the .drv writable");
        std::fs::write(&file, original.replace("echo good", "echo EVIL")).expect("tamper with the .drv");

        for args in [&["build", ".#thing", "--no-link"][..], &["build", drv, "--no-link"], &["derivation", "show", drv]]
        {
            let run = a.mini(args);
            let said = text(&run.stderr);
            assert!(!run.status.success(), "{who:?}: {args:?} used a modified .drv:\n{said}");
            assert!(said.contains(drv) && said.contains("was modified after it was written"), "{who:?}: {said}");
            assert!(said.contains("mini store verify --repair"), "{who:?}: {said}");
        }
        assert!(!a.physical(&out).exists(), "{who:?}: the modified recipe was built");

        let repaired = a.mini(&["store", "verify", "--repair"]);
        let said = text(&repaired.stderr);
        assert!(repaired.status.success(), "{who:?}: {said}");
        assert!(said.contains(&format!("removed {drv}")), "{who:?}: {said}");
        ok(&a.mini(&["build", ".#thing", "--no-link"]));
        assert_eq!(std::fs::read_to_string(a.physical(&out)).unwrap_or_default(), "good\n");
        assert_eq!(std::fs::read_to_string(&file).unwrap_or_default(), original);
    }
}

/// A `.drv` replaced by a link, even to a file holding its exact text, is
/// not read through: the one `.drv` reader never follows a link it did not
/// create, so the link cannot make mini read a file elsewhere.
#[test]
fn a_derivation_replaced_by_a_link_is_not_followed() {
    for who in users() {
        let a = Attempt::new("drv-linked", who);
        let (drv, _) = the_derivation(&a);
        let file = a.physical(&drv);
        let elsewhere = a.scratch.0.join("elsewhere.drv");
        std::fs::copy(&file, &elsewhere).expect("copy the .drv out of the store");
        let parent = file.parent().expect("the store directory");
        let writable = std::fs::metadata(parent).expect("the store directory").permissions();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).expect("open the store directory");
        std::fs::remove_file(&file).expect("remove the .drv");
        std::os::unix::fs::symlink(&elsewhere, &file).expect("put a link in its place");
        std::fs::set_permissions(parent, writable).expect("restore the store directory's mode");

        let run = a.mini(&["derivation", "show", &drv]);
        let said = text(&run.stderr);
        assert!(!run.status.success(), "{who:?}: the link was followed:\n{}", text(&run.stdout));
        assert!(said.contains("reading") && said.contains(&*file.to_string_lossy()), "{who:?}: {said}");
    }
}
