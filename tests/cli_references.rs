//! Reference constraints end to end: `allowedReferences`,
//! `allowedRequisites`, `disallowedReferences` and `disallowedRequisites`
//! refuse an output that breaks them, with a `why-depends`-style chain,
//! and register nothing; an output that keeps them builds.
//!
//! Builders are the prelude's busybox: under CI=true these tests fail, not
//! skip, where it is missing.

use std::path::Path;
use std::process::Output;

mod common;
use common::{flake_with, have_busybox, mini_at as mini, ok, text, Scratch};

/// `dep`; `mid` mentions dep; the rest mention them and set constraints.
const RECIPES: &str = r#"
  withAttrs = name: script: attrs: derivation ({
    inherit name;
    system = "x86_64-linux";
    builder = "${pkgs.busybox}/bin/sh";
    args = [ "-c" script ];
    PATH = "${pkgs.busybox}/bin";
  } // attrs);
  dep = sh "dep" "echo dep > $out";
  mid = sh "mid" "echo ${dep} > $out";
  forbidden = withAttrs "forbidden" "mkdir $out; echo uses ${dep} > $out/config" { disallowedReferences = [ dep ]; };
  closed = withAttrs "closed" "echo ${dep} > $out" { allowedReferences = [ ]; };
  indirect = withAttrs "indirect" "echo ${mid} > $out" { allowedRequisites = [ mid ]; };
  kept = withAttrs "kept" "mkdir $out; echo ${mid} > $out/mid; echo $out > $out/self" {
    allowedReferences = [ mid "out" ];
    allowedRequisites = [ mid dep ];
    disallowedRequisites = [ pkgs.busybox ];
  };
  misspelt = withAttrs "misspelt" "echo > $out" { allowedReferences = [ "bin" ]; };
"#;

/// A flake with [`RECIPES`], its store, and whether busybox is here.
fn setup(s: &Scratch) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    if !have_busybox(s) {
        return None;
    }
    let dir = s.0.join("flake");
    flake_with(&dir, &[], RECIPES);
    Some((s.0.join("store"), dir))
}

fn build(store: &Path, dir: &Path, attr: &str) -> Output {
    mini(store, dir, &["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"])
}

/// The store path of `attr`'s output, without building it.
fn out_path(store: &Path, dir: &Path, attr: &str) -> String {
    let shown = ok(&mini(store, dir, &["derivation", "show", &format!(".#{attr}")]));
    let drvs: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let drv = drvs.as_object().and_then(|d| d.values().next()).unwrap_or_else(|| panic!("no derivation: {shown}"));
    drv["outputs"]["out"]["path"].as_str().unwrap_or_else(|| panic!("no out path: {shown}")).to_string()
}

/// The stderr of a build that must have failed.
fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "the build succeeded:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stderr)
}

fn assert_not_registered(store: &Path, dir: &Path, path: &str) {
    let info = mini(store, dir, &["path-info", path]);
    assert!(!info.status.success(), "{path} was registered: {}", text(&info.stdout));
    let file = store.join("store").join(path.trim_start_matches("/mini/store/"));
    assert!(!file.exists(), "{} is in the store", file.display());
}

/// Builds `attr`, which must be refused and register nothing; the error
/// and the output path the build would have had.
fn refused(store: &Path, dir: &Path, attr: &str) -> (String, String) {
    let err = failure(&build(store, dir, attr));
    let out = out_path(store, dir, attr);
    assert_not_registered(store, dir, &out);
    (err, out)
}

#[test]
fn disallowed_references_refuse_an_output_that_mentions_the_dependency() {
    let s = Scratch::new("refs-disallowed");
    let Some((store, dir)) = setup(&s) else { return };
    let (err, out) = refused(&store, &dir, "forbidden");
    let dep = out_path(&store, &dir, "dep");
    let expected = format!(
        "-forbidden.drv' refers to {dep}, which its disallowedReferences forbids:\n  {out}\n  └───{dep}\n      config: …uses {dep}"
    );
    assert!(err.contains(&expected), "expected:\n{expected}\nin:\n{err}");
    assert!(err.contains("nothing was registered; remove the reference from the output"), "{err}");
    assert!(err.contains("or change disallowedReferences in the recipe"), "{err}");
}

#[test]
fn allowed_references_empty_refuse_any_reference() {
    let s = Scratch::new("refs-allowed-empty");
    let Some((store, dir)) = setup(&s) else { return };
    let (err, out) = refused(&store, &dir, "closed");
    let dep = out_path(&store, &dir, "dep");
    let expected = format!(
        "refers to {dep}, which its allowedReferences does not list:\n  {out}\n  └───{dep}\n      (the file itself): …"
    );
    assert!(err.contains(&expected), "expected:\n{expected}\nin:\n{err}");
    assert!(err.contains("change allowedReferences in the recipe"), "{err}");
}

#[test]
fn allowed_requisites_follow_the_closure_and_show_the_chain() {
    let s = Scratch::new("refs-requisites");
    let Some((store, dir)) = setup(&s) else { return };
    let (err, out) = refused(&store, &dir, "indirect");
    let (dep, mid) = (out_path(&store, &dir, "dep"), out_path(&store, &dir, "mid"));
    // indirect mentions only mid; dep comes through mid.
    let expected = format!(
        "-indirect.drv' depends on {dep}, which its allowedRequisites does not list:\n  {out}\n  └───{mid}\n      \
         (the file itself): …"
    );
    assert!(err.contains(&expected), "expected:\n{expected}\nin:\n{err}");
    assert!(err.contains(&format!("\n      └───{dep}\n")), "{err}");
    assert!(!err.contains(&format!("depends on {mid}")), "mid is allowed: {err}");
    // The inputs themselves were built and stay valid.
    ok(&mini(&store, &dir, &["path-info", &mid]));
}

#[test]
fn kept_constraints_build_and_a_bad_entry_is_named() {
    let s = Scratch::new("refs-kept");
    let Some((store, dir)) = setup(&s) else { return };
    let out = ok(&build(&store, &dir, "kept"));
    let mid = out_path(&store, &dir, "mid");
    let refs = ok(&mini(&store, &dir, &["path-info", "--json", &out]));
    assert!(refs.contains(&mid), "{refs}");
    let err = failure(&build(&store, &dir, "misspelt"));
    assert!(
        err.contains(
            "'bin' in allowedReferences is neither a store path nor one of its outputs (out); \
             list packages (store paths) or output names"
        ),
        "{err}"
    );
}
