//! The nixpkgs functions the prelude imitates, against what nixpkgs gives:
//! `lib`'s string, set, package and source helpers, `makeOverridable` and
//! `callPackage`, and the writers (`writeShellApplication`,
//! `writeScriptBin`, `runCommandLocal`, …) built for real and run.
//!
//! Expected values are written by hand from nixpkgs' definitions. The pure
//! ones are also checked against real Nix evaluating the same lib file
//! (`nix-instantiate`, skipped where it is missing, required under CI).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{have_busybox, ok, text, Scratch};

/// The prelude's lib, which needs nothing else of the prelude.
const LIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/flake/src/prelude/lib.nixlike");

/// Runs mini with its own store in `dir`.
fn mini(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(dir.join("store"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run mini")
}

/// `body` with lib's attributes in scope, as a file in the scratch dir.
fn with_lib(s: &Scratch, name: &str, body: &str) -> PathBuf {
    s.write(name, &format!("with import {LIB} {{ }};\n{body}\n"))
}

/// `mini eval --strict FILE`, which must succeed.
fn eval(s: &Scratch, file: &Path) -> String {
    ok(&mini(&s.0, &["eval", "--strict", &file.to_string_lossy()]))
}

/// `nix-instantiate --eval --strict FILE`: real Nix's output, or None
/// where Nix is not installed (outside CI).
fn nix_eval(file: &Path) -> Option<Output> {
    match Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--readonly-mode", "--option", "substituters", ""])
        .arg(file)
        .env("NIX_PATH", "")
        .output()
    {
        Ok(out) => Some(out),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("nix-instantiate is required when CI=true"),
        Err(_) => {
            eprintln!("skipped the comparison with Nix: nix-instantiate is not installed");
            None
        }
    }
}

/// Asserts that mini gives `expected` for `body` and, where Nix is here,
/// that Nix gives the same.
fn check(s: &Scratch, name: &str, body: &str, expected: &str) {
    let file = with_lib(s, name, body);
    assert_eq!(eval(s, &file), expected, "mini, for {body}");
    if let Some(out) = nix_eval(&file) {
        assert_eq!(ok(&out), expected, "nix, for {body}");
    }
}

#[test]
fn string_helpers_split_test_trim_and_quote_as_nixpkgs() {
    let s = Scratch::new("lib-strings");
    check(
        &s,
        "split.nix",
        r#"[ (splitString "," ",a,,b,") (splitString "" "abc") (splitString "." "") (splitString "." "a.b")
   (splitString "ab" "xabyab") (splitString "*" "a*b") ]"#,
        r#"[ [ "" "a" "" "b" "" ] [ "" "a" "b" "c" "" ] [ "" ] [ "a" "b" ] [ "x" "y" "" ] [ "a" "b" ] ]"#,
    );
    check(
        &s,
        "affixes.nix",
        r#"[ (hasPrefix "ab" "abc") (hasPrefix "" "x") (hasPrefix "abcd" "abc") (hasSuffix "bc" "abc")
   (hasSuffix "abcd" "bc") (hasSuffix "" "") (removePrefix "ab" "abc") (removePrefix "x" "abc")
   (removePrefix "abc" "abc") (removeSuffix "bc" "abc") (removeSuffix "abcd" "bc") ]"#,
        r#"[ true true false true false true "c" "abc" "" "a" "bc" ]"#,
    );
    check(
        &s,
        "escape.nix",
        r#"[ (escapeShellArg "it's") (escapeShellArg "plain/path-1.2_x+y:z@h%") (escapeShellArg "")
   (escapeShellArg "a b") (escapeShellArg 3) (escapeShellArgs [ "a b" "c" "$x" ])
   (concatMapStringsSep "-" toString [ 1 2 3 ]) (concatMapStringsSep "," (x: x) [ ]) ]"#,
        r#"[ "'it'\\''s'" "plain/path-1.2_x+y:z@h%" "''" "'a b'" "3" "'a b' c '$x'" "1-2-3" "" ]"#,
    );
}

#[test]
fn escaped_arguments_reach_the_shell_whole() {
    // What escapeShellArg gives, read back by a real sh, is the string.
    let s = Scratch::new("lib-escape-sh");
    let tricky = "it's a \"test\" with $HOME, `x` and \\ and\nnewline";
    let file = with_lib(&s, "e.nix", &format!("escapeShellArgs [ {} \"\" ]", common::nix_string(tricky)));
    let words = eval(&s, &file);
    let words: String = serde_json::from_str(&words).expect("a Nix string prints as a JSON-compatible literal");
    let out = Command::new("sh").arg("-c").arg(format!("printf '%s|' {words}")).output().expect("run sh");
    assert_eq!(text(&out.stdout), format!("{tricky}||"));
}

#[test]
fn set_helpers_filter_rename_and_merge_as_nixpkgs() {
    let s = Scratch::new("lib-sets");
    check(
        &s,
        "sets.nix",
        r#"{
  filtered = filterAttrs (name: value: value > 1 && name != "d") { a = 1; b = 2; c = 3; d = 4; };
  renamed = mapAttrs' (name: value: nameValuePair "x${name}" (value * 2)) { a = 1; b = 2; };
  merged = recursiveUpdate
    { a = { b = 1; c = { d = 1; }; }; e = 1; f = { g = 1; }; h = 1; }
    { a = { c = { x = 2; }; b = { y = 3; }; }; f = 5; h = { i = 1; }; };
  pair = nameValuePair "n" 1;
}"#,
        "{ filtered = { b = 2; c = 3; }; merged = { a = { b = { y = 3; }; c = { d = 1; x = 2; }; }; e = 1; f = 5; h = { i = 1; }; }; \
         pair = { name = \"n\"; value = 1; }; renamed = { xa = 2; xb = 4; }; }",
    );
}

#[test]
fn package_helpers_find_names_outputs_and_programs() {
    let s = Scratch::new("lib-packages");
    let drv = r#"{ type = "derivation"; name = "hello-2.12"; outPath = "/o"; }"#;
    check(
        &s,
        "names.nix",
        &format!(
            r#"let drv = {drv}; in [ (getName "hello-2.12") (getName {{ pname = "p"; name = "p-1"; }}) (getName drv)
   (getName "tool-0.1-rc") (getBin drv).outPath (getBin (drv // {{ bin = {{ outPath = "/b"; }}; }})).outPath
   (getExe (drv // {{ meta.mainProgram = "hi"; }})) (getExe' drv "other") ]"#
        ),
        r#"[ "hello" "p" "hello" "tool" "/o" "/b" "/o/bin/hi" "/o/bin/other" ]"#,
    );

    // Without meta.mainProgram, getExe assumes the name, and warns (as
    // nixpkgs does); with it, it says nothing.
    let file = with_lib(&s, "fallback.nix", &format!("getExe ({drv})"));
    let out = mini(&s.0, &["eval", &file.to_string_lossy()]);
    assert_eq!(ok(&out), r#""/o/bin/hello""#);
    let err = text(&out.stderr);
    assert!(err.contains("warning: getExe: package hello-2.12 does not have the meta.mainProgram attribute"), "{err}");
    let file = with_lib(&s, "quiet.nix", &format!("getExe ({drv} // {{ meta.mainProgram = \"hi\"; }})"));
    let out = mini(&s.0, &["eval", &file.to_string_lossy()]);
    assert_eq!((ok(&out).as_str(), text(&out.stderr).as_str()), (r#""/o/bin/hi""#, ""));

    let file = with_lib(&s, "nested.nix", &format!("getExe' ({drv}) \"bin/x\""));
    let err = text(&mini(&s.0, &["eval", &file.to_string_lossy()]).stderr);
    assert!(err.contains("lib.getExe': \"bin/x\" has a '/'"), "{err}");
}

#[test]
fn make_overridable_recalls_with_new_arguments() {
    let s = Scratch::new("lib-overridable");
    check(
        &s,
        "override.nix",
        r#"let
  f = { a, b ? 2 }: { sum = a + b; };
  r = makeOverridable f { a = 1; };
  # A result with its own overrideAttrs, as mkDerivation's.
  g = { a }: let mk = attrs: attrs // { overrideAttrs = h: mk (attrs // h attrs); }; in mk { v = a; };
  o = makeOverridable g { a = 1; };
in [
  r.sum
  (r.override { a = 10; }).sum
  (r.override (old: { b = old.a * 5; })).sum
  ((r.override { a = 10; }).override (old: { b = old.a; })).sum
  (builtins.attrNames r)
  (functionArgs (makeOverridable f))
  (o.overrideAttrs (old: { v = old.v + 100; })).v
  ((o.overrideAttrs (old: { v = old.v + 100; })).override { a = 5; }).v
  ((makeOverridable (x: y: x.n + y) { n = 1; }).override { n = 2; } 3)
  (makeOverridable ({ n }: n * 2) { n = 4; })
]"#,
        r#"[ 3 12 6 20 [ "override" "sum" ] { a = false; b = true; } 101 105 5 8 ]"#,
    );
}

#[test]
fn call_package_with_passes_what_the_function_names() {
    let s = Scratch::new("lib-callpackage");
    s.write("pkg.nix", "{ x, z ? 7 }: { s = x + z; }");
    s.write("dir/default.nix", "{ x, y }: { s = x * y; }");
    check(
        &s,
        "call.nix",
        r#"let
  auto = { x = 1; y = 2; unused = throw "not asked for"; };
  r = callPackageWith auto ./pkg.nix { };
in [ r.s (r.override { x = 10; }).s (callPackageWith auto ./pkg.nix { z = 0; }).s (callPackageWith auto ./dir { y = 100; }).s
  (callPackageWith auto ({ y, ... }: y) { }) ]"#,
        "[ 8 17 1 100 2 ]",
    );

    // A required argument no one gives: nixpkgs' message, where the
    // function is, and the names it may have meant.
    s.write("typo.nix", "{ writeTxt }: writeTxt");
    let missing = |body: &str, name: &str| {
        let file = with_lib(&s, name, body);
        let out = mini(&s.0, &["eval", &file.to_string_lossy()]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        if let Some(nix) = nix_eval(&file) {
            let nix_err = text(&nix.stderr);
            let first = |e: &str| e.lines().next().unwrap_or_default().to_string();
            assert_eq!(first(&err), first(&nix_err), "mini and nix disagree");
        }
        err
    };
    let err = missing(r#"callPackageWith { writeText = 1; writeTextFile = 2; } ./typo.nix { }"#, "typo-call.nix");
    let expected = format!(
        "lib.customisation.callPackageWith: Function called without required argument \"writeTxt\" at {}/typo.nix, \
         did you mean \"writeText\"?",
        s.0.display()
    );
    assert!(err.contains(&expected), "{err}");
    let err = missing(r#"callPackageWith { } ./dir { y = 1; }"#, "dir-call.nix");
    assert!(
        err.contains(&format!("argument \"x\" at {}/dir/default.nix, did you mean \"y\"?'", s.0.display())),
        "{err}"
    );
    // An abort, as in nixpkgs: tryEval does not hide it.
    let err = missing(r#"builtins.tryEval (callPackageWith { } ({ q }: q) { })"#, "try.nix");
    assert!(err.contains("argument \"q\" at <unknown location>'"), "{err}");
}

/// A flake in a scratch directory, with its own store.
struct Flake {
    scratch: Scratch,
    dir: PathBuf,
}

impl Flake {
    /// A flake whose `flake.nixlike` is `source`, or None (the test skips)
    /// where there is no static busybox to build with.
    fn new(name: &str, source: &str) -> Option<Flake> {
        let scratch = Scratch::new(&format!("prelude-lib-{name}"));
        if !have_busybox(&scratch) {
            return None;
        }
        let dir = scratch.0.join("flake");
        let flake = Flake { scratch, dir };
        flake.write("flake.nixlike", source);
        Some(flake)
    }

    /// Writes a file of the flake's directory.
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        self.scratch.write(&format!("flake/{rel}"), text)
    }

    fn mini(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(self.scratch.0.join("store"))
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run mini")
    }

    /// Builds one attribute and returns its output path.
    fn build(&self, attr: &str) -> String {
        ok(&self.mini(&["build", "--no-link", "--print-out-paths", &format!(".#{attr}")]))
    }

    /// Where the logical store path `path` (plus `rel`) is on disk.
    fn physical(&self, path: &str, rel: &str) -> PathBuf {
        let base = self.scratch.0.join("store/store").join(path.trim_start_matches("/mini/store/"));
        if rel.is_empty() {
            base
        } else {
            base.join(rel)
        }
    }

    fn read(&self, path: &str, rel: &str) -> String {
        std::fs::read_to_string(self.physical(path, rel)).expect("read a built file")
    }

    /// `mini run .#attr -- args`.
    fn run(&self, attr: &str, args: &[&str]) -> Output {
        let mut all = vec!["run", attr, "--"];
        all.extend(args);
        self.mini(&all)
    }

    /// Builds an attribute that must fail, and returns what mini said.
    fn build_fails(&self, attr: &str) -> String {
        let out = self.mini(&["build", "--no-link", &format!(".#{attr}")]);
        assert!(!out.status.success(), "building {attr} succeeded:\n{}", text(&out.stderr));
        text(&out.stderr)
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn write_shell_application_is_strict_and_finds_its_inputs() {
    let Some(f) = Flake::new(
        "shellapp",
        r#"{ pkgs, ... }:
rec {
  helper = pkgs.writeShellScriptBin "helper" "echo helped";
  app = pkgs.writeShellApplication {
    name = "app";
    runtimeInputs = [ helper ];
    runtimeEnv = { GREETING = "it's me"; };
    text = ''
      helper
      echo "$GREETING, $1"
      false | true
      echo "not reached: pipefail"
    '';
  };
  nounset = pkgs.writeShellApplication { name = "nounset"; text = ''echo "$UNSET_VAR"; echo "not reached"''; };
  errexit = pkgs.writeShellApplication { name = "errexit"; text = "false; echo 'not reached'"; };
  isolated = pkgs.writeShellApplication {
    name = "isolated";
    runtimeInputs = [ helper ];
    inheritPath = false;
    bashOptions = [ ];
    text = ''echo "$PATH"; echo "$UNSET_VAR"'';
  };
  broken = pkgs.writeShellApplication { name = "broken"; text = "if then fi"; };
  paths = pkgs.writeText "paths" (pkgs.lib.getExe app);
}
"#,
    ) else {
        return;
    };
    let app = f.build("app");
    let script = f.read(&app, "bin/app");
    let helper = f.build("helper");
    let busybox = script.lines().next().unwrap_or_default().to_string();
    assert!(busybox.starts_with("#!/mini/store/") && busybox.ends_with("-busybox/bin/sh"), "{script}");
    assert_eq!(
        script,
        format!(
            "{busybox}\nset -o errexit\nset -o nounset\nset -o pipefail\nGREETING='it'\\''s me'\nexport GREETING\n\n\
             export PATH=\"{helper}/bin:$PATH\"\n\nhelper\necho \"$GREETING, $1\"\nfalse | true\necho \"not reached: pipefail\"\n\n"
        )
    );
    assert_eq!(mode(&f.physical(&app, "bin/app")), 0o555);
    assert_eq!(f.read(&f.build("paths"), ""), format!("{app}/bin/app"), "meta.mainProgram is the name");

    let out = f.run(".#app", &["world"]);
    assert_eq!(text(&out.stdout), "helped\nit's me, world\n");
    assert!(!out.status.success(), "a failing pipeline did not stop the script");

    let out = f.run(".#nounset", &[]);
    assert!(!out.status.success() && text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("UNSET_VAR: parameter not set"), "{}", text(&out.stderr));

    let out = f.run(".#errexit", &[]);
    assert!(!out.status.success() && text(&out.stdout).is_empty(), "{}", text(&out.stdout));

    let isolated = f.run(".#isolated", &[]);
    assert_eq!(text(&isolated.stdout), format!("{helper}/bin\n\n"));

    let err = f.build_fails("broken");
    assert!(err.contains("syntax error"), "a script that does not parse built:\n{err}");
}

#[test]
fn script_writers_and_run_commands_keep_nixpkgs_shapes() {
    let Some(f) = Flake::new(
        "writers",
        r##"{ pkgs, ... }:
let lib = pkgs.lib; in
rec {
  bin = pkgs.writeScriptBin "tool" "#!${pkgs.busybox}/bin/sh\necho tool \"$@\"\n";
  script = pkgs.writeScript "plain" "no shebang added";
  local = pkgs.runCommandLocal "local" { } "echo \"[$preferLocalBuild][$allowSubstitutes]\" > $out";
  multi = pkgs.runCommand "multi-1.0" { meta.mainProgram = "two"; passthru.extra = "kept"; } ''
    mkdir -p $out/bin
    printf '#!${pkgs.busybox}/bin/sh\necho one\n' > $out/bin/one
    printf '#!${pkgs.busybox}/bin/sh\necho two\n' > $out/bin/two
    chmod +x $out/bin/*
  '';
  uses = pkgs.runCommand "uses" { nativeBuildInputs = [ bin ]; buildInputs = [ multi ]; } "tool from-path > $out; two >> $out";
  exes = pkgs.writeText "exes" (toString [
    (lib.getExe bin) (lib.getExe multi) multi.extra (lib.getExe' multi "one") bin.meta.mainProgram
  ]);
}
"##,
    ) else {
        return;
    };
    let bin = f.build("bin");
    let tool = f.read(&bin, "bin/tool");
    assert!(tool.starts_with("#!/mini/store/") && tool.ends_with("-busybox/bin/sh\necho tool \"$@\"\n"), "{tool}");
    assert_eq!(mode(&f.physical(&bin, "bin/tool")), 0o555);
    assert_eq!(ok(&f.run(".#bin", &["a", "b"])), "tool a b");

    let script = f.build("script");
    assert_eq!(f.read(&script, ""), "no shebang added");
    assert_eq!(mode(&f.physical(&script, "")), 0o555);

    // The marks are plain environment variables to a build here.
    assert_eq!(f.read(&f.build("local"), ""), "[1][]\n");

    // As in nixpkgs, runCommand's inputs are on PATH.
    assert_eq!(f.read(&f.build("uses"), ""), "tool from-path\ntwo\n");

    // meta and passthru stay on runCommand's result, not in its
    // environment; meta.mainProgram is what getExe and `mini run` run.
    let multi = f.build("multi");
    let exes = f.read(&f.build("exes"), "");
    assert_eq!(exes, format!("{bin}/bin/tool {multi}/bin/two kept {multi}/bin/one tool"));
    assert_eq!(ok(&f.run(".#multi", &[])), "two");
    let drv = ok(&f.mini(&["derivation", "show", ".#multi"]));
    assert!(drv.contains(r#""mainProgram":"two""#) && !drv.contains("kept"), "{drv}");
}

#[test]
fn call_package_fills_in_packages_and_overrides() {
    let Some(f) = Flake::new(
        "callpackage",
        r#"{ pkgs, ... }:
rec {
  greeter = pkgs.callPackage ./pkgs/greeter { };
  shouty = greeter.override { greeting = "HI 'there'"; };
  direct = pkgs.callPackage ({ writeText, pkgs, lib }: writeText "direct" (lib.getName (pkgs.writeText "tool-1.0" ""))) { };
  # A package whose result has overrideAttrs keeps .override through it.
  custom = pkgs.callPackage ./pkgs/custom.nixlike { };
  changed = (custom.overrideAttrs (old: { word = old.word + "!"; })).override { suffix = "?"; };
  typo = pkgs.callPackage ./pkgs/typo.nixlike { };
}
"#,
    ) else {
        return;
    };
    f.write(
        "pkgs/greeter/default.nixlike",
        "{ writeShellScriptBin, lib, greeting ? \"hello\" }:\nwriteShellScriptBin \"greeter\" \"echo ${lib.escapeShellArg greeting}\"\n",
    );
    f.write(
        "pkgs/custom.nixlike",
        r#"{ runCommand, suffix ? "" }:
let
  mk = attrs: runCommand "custom" attrs ''echo "$word${suffix}" > $out'' // { overrideAttrs = g: mk (attrs // g attrs); };
in
mk { word = "plain"; }
"#,
    );
    f.write("pkgs/typo.nixlike", "{ writeShellScriptBn }: writeShellScriptBn \"x\" \"\"\n");

    assert_eq!(ok(&f.run(".#greeter", &[])), "hello");
    assert_eq!(ok(&f.run(".#shouty", &[])), "HI 'there'");
    assert_eq!(f.read(&f.build("direct"), ""), "tool");
    assert_eq!(f.read(&f.build("custom"), ""), "plain\n");
    assert_eq!(f.read(&f.build("changed"), ""), "plain!?\n");

    let err = f.build_fails("typo");
    let expected = format!(
        "Function called without required argument \"writeShellScriptBn\" at {}/pkgs/typo.nixlike, \
         did you mean \"writeShellScriptBin\" or \"writeShellScript\"?",
        f.dir.display()
    );
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn clean_source_drops_version_control_backups_and_results() {
    let Some(f) = Flake::new(
        "cleansource",
        r#"{ pkgs, ... }:
let lib = pkgs.lib; in
{
  listing = pkgs.runCommand "listing" { } "cd ${lib.cleanSource ./src}; find . | sort > $out";
  name = pkgs.writeText "name" (builtins.baseNameOf (toString (lib.cleanSource ./src)));
  narrowed = pkgs.runCommand "narrowed" { } ''
    cd ${lib.cleanSourceWith { src = lib.cleanSource ./src; filter = path: type: !(lib.hasSuffix ".md" path); name = "docs-free"; }}
    { pwd; find . | sort; } > $out
  '';
}
"#,
    ) else {
        return;
    };
    for (rel, body) in [
        ("src/.git/HEAD", "ref: refs/heads/main\n"),
        ("src/main.c", "int main;\n"),
        ("src/main.c~", "backup\n"),
        ("src/.main.c.swp", "swap\n"),
        ("src/.swo", "swap\n"),
        ("src/main.o", "object\n"),
        ("src/lib.so", "shared\n"),
        ("src/README.md", "read me\n"),
        ("src/sub/.hg/store", "hg\n"),
        ("src/sub/CVS", "a file named CVS is kept\n"),
        ("src/sub/kept.txt", "kept\n"),
        ("src/.svn/entries", "svn\n"),
    ] {
        f.write(rel, body);
    }
    let src = f.dir.join("src");
    std::os::unix::fs::symlink("/nowhere", src.join("result")).expect("symlink");
    std::os::unix::fs::symlink("main.c", src.join("result-dev")).expect("symlink");
    std::os::unix::fs::symlink("main.c", src.join("link")).expect("symlink");
    std::fs::create_dir(src.join("result-dir")).expect("mkdir");

    let listing = f.read(&f.build("listing"), "");
    assert_eq!(listing, ".\n./README.md\n./link\n./main.c\n./result-dir\n./sub\n./sub/CVS\n./sub/kept.txt\n");
    let name = f.read(&f.build("name"), "");
    assert!(name.ends_with("-source") && name.len() == 32 + "-source".len(), "{name}");
    let narrowed = f.read(&f.build("narrowed"), "");
    assert!(narrowed.starts_with("/mini/store/") && narrowed.contains("-docs-free\n"), "{narrowed}");
    assert!(
        narrowed.ends_with("\n.\n./link\n./main.c\n./result-dir\n./sub\n./sub/CVS\n./sub/kept.txt\n"),
        "{narrowed}"
    );
}

#[test]
fn the_prelude_documents_the_new_functions() {
    let s = Scratch::new("prelude-lib-print");
    let prelude = ok(&mini(&s.0, &["prelude"]));
    for name in [
        "getExe",
        "getExe'",
        "getName",
        "getBin",
        "escapeShellArg",
        "escapeShellArgs",
        "concatMapStringsSep",
        "splitString",
        "hasPrefix",
        "hasSuffix",
        "removePrefix",
        "removeSuffix",
        "filterAttrs",
        "mapAttrs'",
        "nameValuePair",
        "recursiveUpdate",
        "makeOverridable",
        "callPackageWith",
        "cleanSource",
        "cleanSourceWith",
        "callPackage",
        "writeShellApplication",
        "writeScript",
        "writeScriptBin",
        "runCommandLocal",
    ] {
        assert!(prelude.contains(&format!("# `{name} ")), "{name} has no comment saying what it does");
    }
}
