//! A dynamically linked host program in a build: builds have nothing
//! outside the store, so its loader is missing and the shell says only
//! `not found`. mini's failure names the program and the loader it needs,
//! whether an input's program fails to run or the builder itself is one.
//!
//! The program is the host's `/usr/bin/env` (coreutils, dynamically linked
//! wherever these tests run), taken into a flake as a path input. Builders
//! are the prelude's busybox: under CI=true these tests fail, not skip,
//! where it is missing.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use mini_store::elf::{interpreter_name, loader, Loader};

mod common;
use common::{have_busybox, mini_at as mini, ok, text, Scratch};

const HOST_PROGRAM: &str = "/usr/bin/env";

const FLAKE: &str = r#"{
  inputs.tools = { url = "path:./tools"; flake = false; };
  outputs = { pkgs, tools, ... }: let
    sh = name: builder: args: derivation {
      inherit name builder args;
      system = "x86_64-linux";
      PATH = "${pkgs.busybox}/bin";
    };
  in {
    unrelated = sh "unrelated" "${pkgs.busybox}/bin/sh" [ "-c" "exit 4" ];
    uses = sh "uses" "${pkgs.busybox}/bin/sh" [ "-c" "echo before; ${tools}/bin/env echo hi > $out" ];
    builder = sh "builder" "${tools}/bin/env" [ "echo" "hi" ];
    plain = sh "plain" "${pkgs.busybox}/bin/sh" [ "-c" "echo ${tools} >/dev/null; exit 3" ];
  };
}
"#;

/// The loader `HOST_PROGRAM` names, read as mini reads it.
fn host_loader() -> String {
    let mut head = Vec::new();
    let file = std::fs::File::open(HOST_PROGRAM).unwrap_or_else(|e| panic!("{HOST_PROGRAM}: {e}"));
    file.take(64 << 10).read_to_end(&mut head).unwrap();
    match loader(&head) {
        Loader::At { offset, len } => interpreter_name(&head[offset as usize..(offset + len) as usize]),
        other => panic!("{HOST_PROGRAM} must be dynamically linked for this test, but reads as {other:?}"),
    }
}

/// The stderr of a build that must have failed.
fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "the build succeeded:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stderr)
}

fn build(store: &Path, dir: &Path, attr: &str) -> Output {
    mini(store, dir, &["build", &format!(".#{attr}"), "--no-link"])
}

#[test]
fn a_program_needing_a_host_loader_is_named_with_the_loader() {
    let s = Scratch::new("dynamic");
    if !have_busybox(&s) {
        return;
    }
    let interp = host_loader();
    let (store, dir) = (s.0.join("store"), s.0.join("flake"));
    s.write("flake/flake.nixlike", FLAKE);
    let program = dir.join("tools/bin/env");
    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    std::fs::copy(HOST_PROGRAM, &program).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok(&mini(&store, &dir, &["lock"]));
    let tools = {
        let shown = ok(&mini(&store, &dir, &["derivation", "show", ".#uses"]));
        let drvs: serde_json::Value = serde_json::from_str(&shown).unwrap();
        let sources = drvs.as_object().and_then(|d| d.values().next()).map(|d| d["inputSrcs"].clone());
        let tools = sources
            .as_ref()
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().filter_map(|p| p.as_str()).find(|p| p.ends_with("-source")).map(str::to_string));
        tools.unwrap_or_else(|| panic!("no source input in {shown}"))
    };
    let needs = format!("{tools}/bin/env needs {interp}, which builds do not have");
    let advice =
        "a build has nothing outside the store: use statically linked programs, or ones whose loader is in the store";

    // An input's program, run by the shell: "not found", explained.
    let err = failure(&build(&store, &dir, "uses"));
    assert!(err.contains("bin/env: not found"), "the shell's own words stay: {err}");
    let expected = format!("{tools}/bin/env: not found\n{needs}\n{advice}\nthe full log is at ");
    assert!(err.contains(&expected), "expected:\n{expected}\nin:\n{err}");

    // The builder itself.
    let err = failure(&build(&store, &dir, "builder"));
    assert!(err.contains("error: the builder of '/mini/store/"), "{err}");
    assert!(err.contains(&format!("-builder.drv' cannot run: {needs}; {advice}")), "{err}");
    assert!(err.contains("(the sandbox said: executing the builder"), "{err}");

    // Without the tools as an input, a failure has no hint; with them, any
    // failure names them (the log may not say what was run).
    let err = failure(&build(&store, &dir, "unrelated"));
    assert!(err.contains("failed with exit code 4") && !err.contains("which builds do not have"), "{err}");
    let err = failure(&build(&store, &dir, "plain"));
    assert!(err.contains("failed with exit code 3") && err.contains(&needs), "{err}");
}
