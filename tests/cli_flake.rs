//! Flakes end to end, through `mini derivation show` and `mini path-info`:
//! where attributes are found, what an unknown one suggests, the function
//! form with `pkgs`/`system`/`self`, pure evaluation's refusals, and the
//! busybox the prelude imports from the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{have_busybox, Scratch};

/// `mini --store <scratch>/<store> ARGS` in the scratch dir, without any
/// `MINI_BUSYBOX` of the caller's.
fn mini_in(s: &Scratch, store: &str, args: &[&str], busybox: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mini"));
    cmd.arg("--store").arg(s.0.join(store)).args(args).current_dir(&s.0).env_remove("MINI_BUSYBOX");
    if let Some(b) = busybox {
        cmd.env("MINI_BUSYBOX", b);
    }
    cmd.output().expect("run mini")
}

fn mini(s: &Scratch, args: &[&str]) -> Output {
    mini_in(s, "store", args, None)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `mini derivation show INSTALLABLE`: the one derivation's path and JSON.
fn show(s: &Scratch, store: &str, installable: &str) -> (String, serde_json::Value) {
    let out = mini_in(s, store, &["derivation", "show", installable], None);
    assert!(out.status.success(), "{installable}: {}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("derivation show prints JSON");
    let (path, drv) = json.as_object().and_then(|o| o.iter().next()).expect("one derivation");
    (path.clone(), drv.clone())
}

/// Fails unless `mini` reports `message` (and exit status 1).
fn assert_fails_with(out: &Output, message: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(stderr(out).contains(message), "expected {message:?} in:\n{}", stderr(out));
}

/// A plain derivation that needs no busybox.
fn plain(name: &str) -> String {
    format!(r#"derivation {{ name = "{name}"; system = builtins.currentSystem; builder = "/bin/sh"; }}"#)
}

#[test]
fn attributes_are_found_at_the_top_level_then_under_packages() {
    let s = Scratch::new("flake-lookup");
    s.write(
        "proj/flake.nixlike",
        &format!(
            r#"{{
              top = {top};
              both = {both_top};
              default = {default};
              images."v1.0" = {quoted};
              packages.${{builtins.currentSystem}} = {{ inner = {inner}; both = {both_inner}; }};
              packages.other-system = {{ elsewhere = {top}; }};
            }}"#,
            top = plain("top"),
            both_top = plain("both-top"),
            default = plain("the-default"),
            quoted = plain("quoted"),
            inner = plain("inner"),
            both_inner = plain("both-inner"),
        ),
    );
    let name = |installable: &str| show(&s, "store", installable).1["name"].as_str().unwrap_or_default().to_string();
    assert_eq!(name("./proj#top"), "top");
    assert_eq!(name("./proj#inner"), "inner");
    assert_eq!(name("./proj#both"), "both-top");
    assert_eq!(name("./proj"), "the-default");
    assert_eq!(name("proj#images.\"v1.0\""), "quoted");
    let absolute = format!("{}#top", s.0.join("proj").display());
    let (drv, _) = show(&s, "store", &absolute);
    assert!(drv.starts_with("/mini/store/") && drv.ends_with("-top.drv"), "{drv}");

    // The .drv was written: it is an installable itself, logically and physically.
    assert_eq!(show(&s, "store", &drv).0, drv);
    let physical = s.0.join("store/store").join(drv.trim_start_matches("/mini/store/"));
    assert_eq!(show(&s, "store", physical.to_str().unwrap()).0, drv);

    assert_fails_with(&mini(&s, &["derivation", "show", "./proj#elsewhere"]), "has no attribute 'elsewhere'");
}

#[test]
fn unknown_attributes_list_what_there_is_and_suggest_the_closest() {
    let s = Scratch::new("flake-unknown");
    s.write(
        "flake.nixlike",
        &format!(
            "{{ docker = {}; number = 42; packages.${{builtins.currentSystem}}.hello = {}; }}",
            plain("docker"),
            plain("hello")
        ),
    );
    let out = mini(&s, &["derivation", "show", ".#dockr"]);
    assert_fails_with(&out, "has no attribute 'dockr'; did you mean 'docker'?");
    assert!(stderr(&out).contains("available at the top level: docker, number, packages"), "{}", stderr(&out));
    assert!(stderr(&out).contains("hello"), "{}", stderr(&out));
    assert_fails_with(&mini(&s, &["derivation", "show", ".#helo"]), "did you mean 'hello'?");
    assert_fails_with(&mini(&s, &["derivation", "show", ".#number"]), "attribute 'number' of flake");
    assert_fails_with(&mini(&s, &["derivation", "show", ".#number"]), "is an integer, not a derivation");
    assert_fails_with(&mini(&s, &["derivation", "show", "./nowhere#x"]), "cannot open the flake directory './nowhere'");
    std::fs::create_dir(s.0.join("empty")).expect("create dir");
    let empty = mini(&s, &["derivation", "show", "./empty#x"]);
    assert_fails_with(&empty, &format!("'{}' is not a flake: it has no flake.nixlike", s.0.join("empty").display()));
}

#[test]
fn flake_functions_get_only_the_arguments_they_take() {
    let s = Scratch::new("flake-formals");
    s.write(
        "flake.nixlike",
        &format!("{{ system, self }}: {{ default = self.named; named = {}; sys = system; }}", plain("named")),
    );
    // No `pkgs` taken, so no busybox needed.
    let missing = s.0.join("no-busybox-here");
    let out = mini_in(&s, "store", &["derivation", "show", "."], Some(&missing));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("-named.drv"));
    assert_fails_with(&mini(&s, &["derivation", "show", ".#sys"]), "is a string, not a derivation");

    s.write("other/flake.nixlike", "{ pkgs, token }: { }");
    assert_fails_with(&mini(&s, &["derivation", "show", "./other#x"]), "requires the argument 'token'");
    s.write("list/flake.nixlike", "[ ]");
    assert_fails_with(&mini(&s, &["derivation", "show", "./list#x"]), "gives a list, not an attribute set");
}

#[test]
fn flake_functions_receive_pkgs_system_and_self() {
    let s = Scratch::new("flake-function");
    if !have_busybox(&s) {
        return;
    }
    s.write(
        "flake.nixlike",
        r#"{ pkgs, system, self, ... }: {
             hello = pkgs.runCommand "hello" { greeting = "hi"; } ''
               mkdir -p $out/bin
               echo "$greeting" > $out/bin/hello
             '';
             default = self.hello;
             note = pkgs.writeText "note" "built for ${system}";
             notePath = "${self.note}";
           }"#,
    );
    let (drv, hello) = show(&s, "store", ".");
    assert!(drv.ends_with("-hello.drv"), "{drv}");
    let busybox = hello["inputSrcs"][0].as_str().expect("busybox is an input source").to_string();
    assert!(busybox.ends_with("-busybox"), "{busybox}");
    assert_eq!(hello["builder"], format!("{busybox}/bin/sh"));
    assert_eq!(hello["env"]["PATH"], format!("{busybox}/bin"));
    assert_eq!(hello["env"]["greeting"], "hi");
    assert_eq!(hello["system"], hello["env"]["system"]);

    let (_, note) = show(&s, "store", ".#note");
    let system = hello["system"].as_str().unwrap_or_default();
    assert_eq!(note["env"]["text"], format!("built for {system}"));
    // An output path with its context names the derivation too.
    assert_eq!(show(&s, "store", ".#notePath").1, note);

    // path-info shows a flake's outputs, which are not built yet.
    let out = mini(&s, &["path-info", ".#note"]);
    assert_fails_with(&out, "is not built yet; run `mini build .#note`");
    let info = mini(&s, &["path-info", &busybox]);
    assert!(info.status.success(), "{}", stderr(&info));
}

#[test]
fn pure_evaluation_reads_only_inside_the_flake() {
    let s = Scratch::new("flake-pure");
    s.write("outside.nixlike", "{ secret = 1; }");
    s.write("proj/lib.nixlike", "{ name = \"from-lib\"; }");
    s.write("proj/src/file", "inside\n");
    std::os::unix::fs::symlink("../outside.nixlike", s.0.join("proj/link.nixlike")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", s.0.join("proj/passwd")).expect("symlink");
    s.write(
        "proj/flake.nixlike",
        r#"let
             mk = name: attrs: derivation ({ inherit name; system = builtins.currentSystem; builder = "/bin/sh"; } // attrs);
           in {
             fine = mk (import ./lib.nixlike).name { src = ./src; content = builtins.readFile ./src/file; };
             home = mk "home" { home = builtins.getEnv "HOME"; now = builtins ? currentTime; };
             importOutside = mk "x" (import ../outside.nixlike);
             readPasswd = mk "x" { p = builtins.readFile /etc/passwd; };
             viaLink = mk "x" (import ./link.nixlike);
             viaPasswdLink = mk "x" { p = builtins.readFile ./passwd; };
             exists = mk "x" { e = builtins.pathExists /etc; };
             copyOutside = mk "x" { src = "${../outside.nixlike}"; };
           }"#,
    );
    let (_, fine) = show(&s, "store", "./proj#fine");
    assert_eq!(fine["name"], "from-lib");
    assert_eq!(fine["env"]["content"], "inside\n");
    let (_, home) = show(&s, "store", "./proj#home");
    assert_eq!(home["env"]["home"], "");
    assert_eq!(home["env"]["now"], "");

    let forbidden = "is forbidden in pure evaluation mode; only files under";
    for (attr, path, line) in [
        ("importOutside", "outside.nixlike", 6),
        ("readPasswd", "/etc/passwd", 7),
        ("viaLink", "link.nixlike' (which resolves to", 8),
        ("viaPasswdLink", "passwd' (which resolves to '/etc/passwd')", 9),
        ("exists", "/etc'", 10),
        ("copyOutside", "outside.nixlike", 11),
    ] {
        let out = mini(&s, &["derivation", "show", &format!("./proj#{attr}")]);
        assert_fails_with(&out, forbidden);
        assert_fails_with(&out, path);
        assert_fails_with(&out, &format!("proj/flake.nixlike:{line}:"));
    }
}

#[test]
fn busybox_is_imported_by_content() {
    let s = Scratch::new("flake-busybox");
    if !have_busybox(&s) {
        return;
    }
    s.write("flake.nixlike", "{ pkgs }: { default = pkgs.writeText \"t\" \"x\"; }");
    let busybox_of = |store: &str| {
        let (_, drv) = show(&s, store, ".");
        drv["inputSrcs"][0].as_str().unwrap_or_default().to_string()
    };
    let first = busybox_of("a");
    assert_eq!(busybox_of("b"), first, "the same binary gives the same path in any store");
    assert_eq!(busybox_of("a"), first, "and the same path when it is already there");
    let bin: PathBuf = s.0.join("a/store").join(first.trim_start_matches("/mini/store/")).join("bin");
    assert_eq!(std::fs::read_link(bin.join("sh")).expect("bin/sh is a symlink"), Path::new("busybox"));
    assert!(std::fs::read_link(bin.join("ls")).is_ok() && bin.join("busybox").is_file());
}

#[test]
fn a_missing_or_dynamic_busybox_says_how_to_install_one() {
    let s = Scratch::new("flake-nobusybox");
    s.write("flake.nixlike", "{ pkgs }: { default = pkgs.writeText \"t\" \"x\"; }");
    let dynamic = std::env::current_exe().expect("the test binary, which is dynamically linked");
    for (busybox, why) in [(dynamic.clone(), "is dynamically linked"), (s.0.join("missing"), "No such file")] {
        let out = mini_in(&s, "store", &["derivation", "show", "."], Some(&busybox));
        assert_fails_with(&out, "apt-get install busybox-static");
        assert_fails_with(&out, why);
    }
}
