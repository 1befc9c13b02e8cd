//! Teardown and reuse: a builder plants links where mini's cleanup or the
//! next build's preparation would follow them (its `/mini/store`, `/build`
//! and `/etc` replaced by links to a host directory), and files a later
//! build would see (`/etc/hosts`, `/planted`). The host directory must
//! survive untouched, and the next build must see a root of its own.

use crate::{flake_with, listing, users, Attempt};

#[test]
fn links_planted_in_the_root_are_never_followed() {
    for who in users() {
        let attempt = Attempt::new("teardown", who);
        let victim = attempt.victim();
        let v = victim.display();
        // Run as root, the builder may not even rename these (it is not
        // their owner); unprivileged, it owns them. Either way the build
        // goes on to exit 0 and mini must clean up after it.
        let swap_store = format!("mv /mini/store /mini/old; ln -s {v} /mini/store; exit 0");
        let swap_build = format!("cd /; mv build old-build; ln -s {v} /build; mkdir -p $out; exit 0");
        let swap_etc = format!("mv /etc /old-etc; ln -s {v} /etc; mkdir -p $out; exit 0");
        let after = "cat /etc/passwd > /dev/null; mkdir -p $out; exit 0";
        flake_with(
            &attempt.dir(),
            &[("store", &swap_store), ("build", &swap_build), ("etc", &swap_etc), ("after", after)],
            "",
        );
        for attr in ["store", "build", "etc", "after"] {
            // Sequentially, one worker: with a reused root the next build would be prepared in it.
            let _ = attempt.mini(&["build", &format!(".#{attr}"), "--no-link", "-j", "1"]);
            assert_eq!(listing(&victim), ["keep.txt"], "after '{attr}' as {who:?}");
            assert_eq!(std::fs::read_to_string(victim.join("keep.txt")).unwrap(), "keep me\n");
        }
        // Nothing is left behind in the store's staging directory either.
        assert_eq!(listing(&attempt.store().join("tmp")), Vec::<String>::new(), "as {who:?}");
    }
}

#[test]
fn what_one_build_plants_another_never_sees() {
    for who in users() {
        let attempt = Attempt::new("planted", who);
        let plant = "echo 6.6.6.6 evil.example >> /etc/hosts; echo evil >> /etc/passwd; echo x > /planted; \
                     echo x > /tmp/planted; echo x > /build/planted; echo planted > $out";
        // `look` names plant's output, so it is built after it, on the one worker.
        let look = "look = sh \"look\" \": ${plant}; { cat /etc/hosts /etc/passwd; ls / /tmp /build; } > $out\";\n";
        flake_with(&attempt.dir(), &[("plant", plant)], look);
        let out = crate::ok(&attempt.mini(&["build", ".#look", "--no-link", "--print-out-paths", "-j", "1"]));
        let seen = std::fs::read_to_string(attempt.physical(&out)).unwrap();
        assert!(!seen.contains("evil") && !seen.contains("planted"), "as {who:?}, look saw:\n{seen}");
    }
}
