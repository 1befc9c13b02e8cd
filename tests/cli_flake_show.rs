//! `mini flake show` lists a flake's attributes as `nix flake show` draws
//! them, evaluating only what it must; `mini eval DIR#ATTR` (and
//! `git+file:…#ATTR`) prints one attribute as `mini eval` prints a file.

use std::path::Path;

mod common;
use common::clients::{git, have_git};
use common::{failed, mini_at, ok, Scratch};

/// Derivations without the prelude (no busybox needed): `builder` says
/// what they are, and they are never built.
const FLAKE: &str = r#"{ system, self, ... }:
let
  drv = name: builder: derivation { inherit name system builder; };
in {
  hello = drv "hello-2.12" "/bin/sh";
  docker = drv "svc.tar" "builtin:image";
  version = "1.0";
  rev = self.shortRev or "none";
  meta = { a = 1; b = [ "x" ]; deep.never = throw "a deeper set is not opened"; };
  lib.twice = x: x * 2;
  packages.${system}.default = drv "def" "/bin/sh";
  packages.aarch64-darwin.default = throw "another system is not evaluated";
  checks.${system}.unit = drv "unit-test" "/bin/sh";
  devShells.${system}.default = drv "shell" "/bin/sh";
}
"#;

fn system(s: &Scratch) -> String {
    let out = ok(&mini_at(&s.0.join("store"), &s.0, &["eval", "--expr", "builtins.currentSystem"]));
    out.trim().trim_matches('"').to_string()
}

/// `mini ARGS` in `dir`: its output, trimmed.
fn mini(s: &Scratch, dir: &Path, args: &[&str]) -> String {
    ok(&mini_at(&s.0.join("store"), dir, args))
}

#[test]
fn show_draws_the_tree_with_types_and_forces_nothing_else() {
    let s = Scratch::new("flake-show");
    s.write("proj/flake.nixlike", FLAKE);
    let proj = s.0.join("proj");
    let system = system(&s);
    let expected = format!(
        "proj
├───checks
│   └───{system}
│       └───unit: derivation 'unit-test'
├───devShells
│   └───{system}
│       └───default: development environment 'shell'
├───docker: image 'svc.tar'
├───hello: package 'hello-2.12'
├───lib
│   └───twice: function
├───meta
│   ├───a: integer
│   ├───b: list
│   └───deep: attribute set
├───packages
│   ├───aarch64-darwin: omitted (use '--all-systems' to show)
│   └───{system}
│       └───default: package 'def'
├───rev: string
└───version: string"
    );
    assert_eq!(mini(&s, &s.0, &["flake", "show", "proj"]), expected);
    assert_eq!(mini(&s, &proj, &["flake", "show"]), expected.replacen("proj\n", ".\n", 1));
    let all = mini_at(&s.0.join("store"), &proj, &["flake", "show", "--all-systems"]);
    assert!(failed(&all).contains("another system is not evaluated"), "--all-systems opens them");

    let not_a_flake = mini_at(&s.0.join("store"), &s.0, &["flake", "show"]);
    assert!(failed(&not_a_flake).contains("is not a flake: it has no flake.nixlike"));
    let with_attr = mini_at(&s.0.join("store"), &proj, &["flake", "show", ".#hello"]);
    assert!(failed(&with_attr).contains("`mini eval DIR#ATTR` shows one attribute"));
}

#[test]
fn eval_prints_one_attribute_of_a_flake() {
    let s = Scratch::new("flake-eval");
    s.write("proj/flake.nixlike", FLAKE);
    let proj = s.0.join("proj");
    assert_eq!(mini(&s, &proj, &["eval", ".#version"]), "\"1.0\"");
    assert_eq!(mini(&s, &s.0, &["eval", "proj#lib"]), "{ twice = <CODE>; }", "lazily, as nix-instantiate --eval");
    assert_eq!(mini(&s, &s.0, &["eval", "--strict", "proj#lib"]), "{ twice = <LAMBDA>; }");
    assert_eq!(mini(&s, &proj, &["eval", ".#default.name"]), "\"def\"", "found under packages.<system>");
    assert_eq!(mini(&s, &proj, &["eval", "--json", ".#meta.b"]), "[\"x\"]");
    let strict = mini_at(&s.0.join("store"), &proj, &["eval", "--strict", ".#meta"]);
    assert!(failed(&strict).contains("a deeper set is not opened"), "--strict forces everything");
    let missing = mini_at(&s.0.join("store"), &proj, &["eval", ".#verison"]);
    assert!(failed(&missing).contains("has no attribute 'verison'; did you mean 'version'?"));
    assert!(
        std::fs::read_dir(s.0.join("store/store")).unwrap().all(|e| !e
            .unwrap()
            .path()
            .to_string_lossy()
            .ends_with(".drv")),
        "evaluating writes no derivation"
    );

    if !have_git() {
        return;
    }
    git(&proj, &["init", "-q"]);
    git(&proj, &["add", "."]);
    git(&proj, &["commit", "-qm", "A"]);
    let a = git(&proj, &["rev-parse", "HEAD"]);
    let short = format!("\"{}\"", &a[..7]);
    assert_eq!(mini(&s, &proj, &["eval", ".#rev"]), short, "a clean tree is its commit");
    assert_eq!(mini(&s, &s.0, &["eval", &format!("git+file:{}#rev", proj.display())]), short);
    assert!(mini(&s, &proj, &["flake", "show"]).starts_with(&format!(". at revision {a}\n")));
}
