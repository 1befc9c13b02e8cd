//! `mini build --check` must compare a rebuild with the files in the
//! store, not with the record of what was built: a path whose files were
//! changed after it was registered used to pass, since the rebuild matched
//! the record. It now fails and names the files that differ, and
//! `mini store verify --repair` puts the path back.

use std::os::unix::fs::PermissionsExt;

use crate::{ok, text, users, Attempt};

#[test]
fn check_finds_files_changed_in_the_store() {
    for who in users() {
        let a = Attempt::new("check-tampered", who);
        a.flake(&[("thing", "mkdir $out; echo good > $out/data; echo same > $out/other")], "");
        let out = a.build("thing");
        ok(&a.mini(&["build", "--check", ".#thing", "--no-link"]));

        let data = a.physical(&out).join("data");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o644)).expect("make data writable");
        std::fs::write(&data, "evil\n").expect("tamper with data");

        let check = a.mini(&["build", "--check", ".#thing", "--no-link"]);
        let said = text(&check.stderr);
        assert!(!check.status.success(), "{who:?}: --check passed on a modified path:\n{said}");
        assert!(said.contains(&format!("'{out}' was modified in the store")), "{who:?}: {said}");
        assert!(said.contains("differ from a rebuild: data)"), "{who:?}: only data differs: {said}");
        assert!(said.contains("mini store verify --repair"), "{who:?}: {said}");
        assert_eq!(std::fs::read_to_string(&data).unwrap_or_default(), "evil\n", "--check changes nothing");

        let repaired = a.mini(&["store", "verify", "--repair"]);
        assert!(repaired.status.success(), "{who:?}: {}", text(&repaired.stderr));
        assert_eq!(std::fs::read_to_string(&data).unwrap_or_default(), "good\n");
        ok(&a.mini(&["build", "--check", ".#thing", "--no-link"]));
    }
}
