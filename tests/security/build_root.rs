//! A derivation's `buildRoot` becomes the sandbox's `/usr`, `/bin`, `/lib`
//! and `/etc`. The root is a store path, which a hostile builder may have
//! made: its top-level links and the links in its `etc` point at host
//! directories, and its builder-made `usr` is writable by its maker. None
//! of that may reach the host: links are made again inside the sandbox
//! (where they resolve inside it), the root's directories are bound
//! read-only, and a root whose `usr` is a link is refused.

use crate::{nix_string, users, Attempt};

/// A flake whose `root` is a hostile root (top-level and etc links at
/// `victim`, a `usr` holding a marker) and whose `use` builds in it,
/// trying to write through every one of them.
fn hostile_root(a: &Attempt, victim: &str, usr_as_link: bool) {
    let usr = if usr_as_link { format!("ln -s {victim} $out/usr") } else { "mkdir -p $out/usr/bin".to_string() };
    let make_root = format!(
        "mkdir -p $out/etc; {usr}; echo original > $out/etc/marker; \
         ln -s {victim} $out/lib; ln -s {victim} $out/lib64; ln -s {victim} $out/etc/evil"
    );
    let attack = "for target in /lib/pwned /lib64/pwned /etc/evil/pwned /usr/pwned /usr/bin/pwned /etc/marker; do \
                  if (echo pwned > $target) 2>/dev/null; then echo \"$target written\"; else echo \"$target refused\"; fi; \
                  done > $out";
    a.flake(
        &[("root", &make_root)],
        &format!(
            "  use = derivation {{ name = \"use\"; system = \"x86_64-linux\"; builder = \"${{pkgs.busybox}}/bin/sh\"; \
             PATH = \"${{pkgs.busybox}}/bin\"; buildRoot = root; args = [ \"-c\" {} ]; }};\n",
            nix_string(attack)
        ),
    );
}

#[test]
fn a_build_root_cannot_write_through_its_links_or_into_itself() {
    for who in users() {
        let a = Attempt::new("build-root-links", who);
        let victim = a.victim();
        hostile_root(&a, &victim.display().to_string(), false);
        let root = a.build("root");
        let out = a.build("use");
        let seen = std::fs::read_to_string(a.physical(&out)).unwrap();
        assert!(!seen.contains("written"), "as {who:?}:\n{seen}");
        assert_eq!(seen.matches("refused").count(), 6, "as {who:?}:\n{seen}");
        assert_eq!(crate::listing(&victim), ["keep.txt"], "the victim was written as {who:?}");
        let root = a.physical(&root);
        assert_eq!(std::fs::read_to_string(root.join("etc/marker")).unwrap(), "original\n");
        assert_eq!(crate::listing(&root.join("usr")), ["bin"], "the root was written as {who:?}");
    }
}

#[test]
fn a_build_root_whose_usr_is_a_link_is_refused() {
    for who in users() {
        let a = Attempt::new("build-root-usr-link", who);
        let victim = a.victim();
        hostile_root(&a, &victim.display().to_string(), true);
        a.build("root");
        let out = a.mini(&["build", ".#use", "--no-link"]);
        let stderr = crate::text(&out.stderr);
        assert!(!out.status.success(), "as {who:?}: {stderr}");
        assert!(stderr.contains("buildRoot") && stderr.contains("holds no usr directory"), "as {who:?}: {stderr}");
        assert_eq!(crate::listing(&victim), ["keep.txt"]);
    }
}

#[test]
fn a_build_root_must_be_an_input() {
    let a = Attempt::new("build-root-not-input", crate::Who::Caller);
    a.flake(
        &[("root", "mkdir -p $out/usr")],
        "  use = derivation { name = \"use\"; system = \"x86_64-linux\"; builder = \"${pkgs.busybox}/bin/sh\"; \
         buildRoot = builtins.unsafeDiscardStringContext \"${root}\"; args = [ \"-c\" \"echo > $out\" ]; };\n",
    );
    a.build("root");
    let out = a.mini(&["build", ".#use", "--no-link"]);
    let stderr = crate::text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("buildRoot") && stderr.contains("not a store path among the derivation's inputs"),
        "{stderr}"
    );
}
