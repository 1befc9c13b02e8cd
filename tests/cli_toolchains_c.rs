//! C from source, end to end, with the toolchain the prelude pins:
//! examples/c-hello built by `stdenv.mkDerivation` (zig's `cc`, `make` from
//! pkgs.bmake, fetched from Debian through `mirror://debian`) is a static,
//! stripped program that runs on the host, and its `make check` ran; a
//! failing check target fails a build; debug information stays only with
//! `dontStrip`; zig's prebuilt C library rebuilds bit for bit;
//! `overrideAttrs` in both its forms changes the derivation.
//!
//! The toolchain wheels come from `scripts/install-prerequisites`' cache
//! (`seed_wheels`): without them the tests skip, except under `CI=true`.
//! zig's C library and bmake take a minute or two to build, so the tests
//! share one store where they are built once ([`toolchain`]).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::clients::json;
use common::toolchain::{shared_store, write_flake, SharedStore};
use common::{failed, have_busybox, mini_at as mini, ok, text, Scratch};

// ---------------------------------------------------------------------------
// The shared toolchain store

static TOOLCHAIN: OnceLock<Option<SharedStore>> = OnceLock::new();

/// The store the tests build in (`--store`), seeded with the toolchain
/// wheels, with `stdenv.cc` (zig, its C library) and `pkgs.bmake` built in
/// it once for the whole binary; `None` (the test skips) when the wheels or
/// busybox are missing outside CI.
fn toolchain() -> Option<&'static Path> {
    let flake = "cc = pkgs.stdenv.cc;\n  make = pkgs.bmake;";
    shared_store(&TOOLCHAIN, "c-toolchain", flake, &["cc", "make"]).map(|shared| shared.store.as_path())
}

// ---------------------------------------------------------------------------
// Running mini

/// Builds `DIR#attr` into `store` without a link; where its output is on disk.
fn build(store: &Path, dir: &Path, attr: &str) -> PathBuf {
    let out = ok(&mini(store, dir, &["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"]));
    store.join("store").join(out.trim_start_matches("/mini/store/"))
}

/// Copies examples/c-hello's files (not links such as a `result`) to `to`.
fn copy_c_hello(to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/c-hello");
    for entry in std::fs::read_dir(example).expect("read examples/c-hello").flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a file of the example");
        }
    }
}

/// Runs `program ARGS` on the host; its stdout.
fn run_program(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    assert!(out.status.success(), "{} failed: {}", program.display(), text(&out.stderr));
    text(&out.stdout)
}

// ---------------------------------------------------------------------------
// Reading ELF files (64-bit little-endian, all zig makes here)

/// The parts of an ELF file these tests look at.
struct Elf {
    /// Whether a program header asks for a loader (PT_INTERP): a dynamic program.
    interpreter: bool,
    /// The section names.
    sections: Vec<String>,
}

fn read_elf(path: &Path) -> Elf {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x7fELF\x02\x01"), "{} is not a 64-bit little-endian ELF file", path.display());
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    const PT_INTERP: usize = 3;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let interpreter = (0..phnum).any(|i| u32_at(phoff + i * phentsize) == PT_INTERP);
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names_at = u64_at(header(shstrndx) + 0x18);
    let sections = (0..shnum)
        .map(|i| {
            let start = names_at + u32_at(header(i));
            let end = bytes[start..].iter().position(|&b| b == 0).map_or(bytes.len(), |n| start + n);
            String::from_utf8_lossy(&bytes[start..end]).into_owned()
        })
        .collect();
    Elf { interpreter, sections }
}

impl Elf {
    fn debug_sections(&self) -> Vec<&String> {
        self.sections.iter().filter(|s| s.starts_with(".debug_")).collect()
    }
}

// ---------------------------------------------------------------------------
// Tests

/// What examples/c-hello prints for a name.
fn greeting(name: &str) -> String {
    format!("Hello, {name}, from C in a mini build!\n")
}

#[test]
fn c_hello_is_a_static_stripped_program_whose_make_check_ran() {
    let Some(store) = toolchain() else { return };
    let s = Scratch::new("c-hello");
    let dir = s.0.join("c-hello");
    copy_c_hello(&dir);
    let out = build(store, &dir, "hello");
    let program = out.join("bin/hello");

    // Static: it runs on the host, which has no /mini/store loader.
    assert_eq!(run_program(&program, &[]), greeting("world"));
    assert_eq!(run_program(&program, &["you", "me"]), greeting("you") + &greeting("me"));
    let elf = read_elf(&program);
    assert!(!elf.interpreter, "bin/hello asks for a loader (PT_INTERP): it is not static");
    assert!(elf.debug_sections().is_empty(), "bin/hello kept debug sections {:?}", elf.debug_sections());
    assert!(elf.sections.iter().any(|s| s == ".text"), "{:?}", elf.sections);
    // Nothing of the toolchain is kept: the closure is the program alone.
    let closure = ok(&mini(store, &dir, &["path-info", "-r", ".#hello"]));
    assert_eq!(closure.lines().count(), 1, "{closure}");

    let log = ok(&mini(store, &dir, &["log", ".#hello"]));
    for line in [
        "Running phase: buildPhase",
        "cc -O2 -Wall -o hello hello.o greeting.o",
        "Running phase: checkPhase",
        "./hello mini | grep -q 'Hello, mini'",
        "Running phase: installPhase",
        "Running phase: fixupPhase",
    ] {
        assert!(log.lines().any(|l| l.trim() == line), "no line '{line}' in the log:\n{log}");
    }
    assert!(log.contains("stripping /mini/store/") && log.contains("/bin/hello"), "{log}");
}

#[test]
fn debug_information_stays_only_with_dont_strip() {
    let Some(store) = toolchain() else { return };
    let s = Scratch::new("c-debug");
    copy_c_hello(&s.0.join("src"));
    // makeFlags are split on spaces, as nixpkgs' are: CFLAGS is one word.
    write_flake(
        &s.0,
        "stripped = pkgs.stdenv.mkDerivation { pname = \"c-hello-g\"; version = \"1\"; src = ./src; \
         makeFlags = [ \"PREFIX=$(out)\" \"CFLAGS=-g\" ]; };\n  \
         kept = stripped.overrideAttrs (prev: { dontStrip = true; });",
    );
    let stripped = read_elf(&build(store, &s.0, "stripped").join("bin/hello"));
    let kept = read_elf(&build(store, &s.0, "kept").join("bin/hello"));
    assert!(kept.sections.iter().any(|s| s == ".debug_info"), "{:?}", kept.sections);
    assert!(stripped.debug_sections().is_empty(), "{:?}", stripped.debug_sections());
    // Only debug information goes, as with nixpkgs' `strip -S`.
    assert!(stripped.sections.iter().any(|s| s == ".symtab"), "{:?}", stripped.sections);
}

#[test]
fn a_failing_make_check_fails_the_build_unless_checks_are_off() {
    let Some(store) = toolchain() else { return };
    let s = Scratch::new("c-check");
    s.write("src/hello.c", "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n");
    s.write(
        "src/Makefile",
        "all: hello\n\nhello: hello.c\n\t$(CC) -o hello hello.c\n\n\
         check: hello\n\t@echo 'check: hello says the wrong thing' >&2; exit 1\n\n\
         install: hello\n\tmkdir -p $(PREFIX)/bin\n\tcp hello $(PREFIX)/bin/hello\n",
    );
    write_flake(
        &s.0,
        "checked = pkgs.stdenv.mkDerivation { pname = \"checked\"; version = \"1\"; src = ./src; \
         makeFlags = [ \"PREFIX=$(out)\" ]; doCheck = true; };\n  \
         unchecked = checked.overrideAttrs (prev: { doCheck = false; });\n  \
         default = pkgs.stdenv.mkDerivation { pname = \"default\"; version = \"1\"; src = ./src; \
         makeFlags = [ \"PREFIX=$(out)\" ]; };",
    );
    let stderr = failed(&mini(store, &s.0, &["build", ".#checked", "--no-link"]));
    assert!(stderr.contains("Running phase: checkPhase"), "{stderr}");
    assert!(stderr.contains("check: hello says the wrong thing"), "{stderr}");
    let log = ok(&mini(store, &s.0, &["log", ".#checked"]));
    assert!(!log.contains("Running phase: installPhase"), "the build went on after the check:\n{log}");

    // Without doCheck, as in nixpkgs' stdenv, make check does not run.
    for attr in ["unchecked", "default"] {
        assert_eq!(run_program(&build(store, &s.0, attr).join("bin/hello"), &[]), "hi\n");
        let log = ok(&mini(store, &s.0, &["log", &format!(".#{attr}")]));
        assert!(!log.contains("checkPhase"), "{log}");
    }
}

#[test]
fn bmake_is_fetched_through_the_debian_mirror_and_runs_on_the_host() {
    let Some(store) = toolchain() else { return };
    let s = Scratch::new("c-bmake");
    write_flake(&s.0, "bmake = pkgs.bmake;\n  source = pkgs.bmake.src;");
    const URL: &str = "mirror://debian/pool/main/b/bmake/bmake_20200710.orig.tar.gz";
    let shown = json(&ok(&mini(store, &s.0, &["derivation", "show", ".#source"])));
    let (_, drv) = shown.as_object().and_then(|o| o.iter().next()).expect("one derivation");
    assert_eq!(drv["env"]["url"], URL);
    // The source was downloaded by resolving the mirror in the host's apt sources.
    let log = ok(&mini(store, &s.0, &["log", ".#source"]));
    assert!(log.contains(&format!("downloading '{URL}'")), "{log}");
    let tried = log.lines().find(|l| l.starts_with("trying '")).unwrap_or_else(|| panic!("no mirror tried:\n{log}"));
    assert!(tried.ends_with("/pool/main/b/bmake/bmake_20200710.orig.tar.gz'"), "{log}");
    assert!(log.contains("fetched "), "{log}");

    let make = build(store, &s.0, "bmake").join("bin/make");
    assert!(!read_elf(&std::fs::canonicalize(&make).expect("bin/make")).interpreter, "bmake is not static");
    s.write("mk/Makefile", "all:\n\t@echo made by bmake\n");
    // -r: its system rules (share/mk) name their /mini/store path, which the host lacks.
    let out = Command::new(&make).arg("-r").arg("-C").arg(s.0.join("mk")).output().expect("run bmake");
    assert_eq!(text(&out.stdout), "made by bmake\n", "{}", text(&out.stderr));
}

// zig records the headers its libc jobs read in the order they finish; the
// prelude fills the cache one job at a time so a rebuild is the same.
#[test]
fn zig_libc_rebuilds_bit_for_bit() {
    let Some(store) = toolchain() else { return };
    let s = Scratch::new("c-libc-check");
    write_flake(&s.0, "libc = pkgs.zig.libc;");
    ok(&mini(store, &s.0, &["build", "--check", ".#libc", "--no-link"]));
}

#[test]
fn override_attrs_changes_the_derivation_in_both_forms() {
    // Evaluation only: `prev:` sees the old attributes, `final: prev:` also
    // the result's, as in nixpkgs; passthru stays.
    let s = Scratch::new("c-override-attrs");
    if !have_busybox(&s) {
        return;
    }
    write_flake(
        &s.0,
        "base = pkgs.stdenv.mkDerivation { pname = \"tool\"; version = \"1\"; dontUnpack = true; \
         greeting = \"hi\"; passthru.kind = \"cli\"; installPhase = \"echo $greeting > $out\"; };\n  \
         prevForm = base.overrideAttrs (prev: { version = \"2\"; greeting = prev.greeting + \"!\"; });\n  \
         finalForm = base.overrideAttrs (final: prev: { pname = \"tool-x\"; label = \"${final.pname}-${final.version}\"; });\n  \
         chained = prevForm.overrideAttrs (final: prev: { greeting = prev.greeting + \"?\"; label = \"${final.pname}@${final.version}\"; });\n  \
         kinds = pkgs.writeText \"kinds\" (builtins.concatStringsSep \" \" [ base.kind prevForm.kind finalForm.kind chained.kind ]);",
    );
    let store = s.0.join("store");
    let show = |attr: &str| {
        let shown = json(&ok(&mini(&store, &s.0, &["derivation", "show", &format!(".#{attr}")])));
        let (path, drv) = shown.as_object().and_then(|o| o.iter().next()).expect("one derivation");
        (path.clone(), drv["env"].clone())
    };
    let (base, base_env) = show("base");
    let (prev_form, prev_env) = show("prevForm");
    let (final_form, final_env) = show("finalForm");
    let (chained, chained_env) = show("chained");
    assert_eq!((base_env["name"].as_str(), base_env["greeting"].as_str()), (Some("tool-1"), Some("hi")));
    assert_eq!((prev_env["name"].as_str(), prev_env["greeting"].as_str()), (Some("tool-2"), Some("hi!")));
    assert_eq!((final_env["name"].as_str(), final_env["label"].as_str()), (Some("tool-x-1"), Some("tool-x-1")));
    assert_eq!(final_env["greeting"], "hi");
    assert_eq!((chained_env["name"].as_str(), chained_env["greeting"].as_str()), (Some("tool-2"), Some("hi!?")));
    assert_eq!(chained_env["label"], "tool@2");
    let paths = [&base, &prev_form, &final_form, &chained];
    for (i, a) in paths.iter().enumerate() {
        assert!(paths[i + 1..].iter().all(|b| a != b), "two forms gave the same derivation: {paths:?}");
    }
    let (_, kinds) = show("kinds");
    assert_eq!(kinds["text"], "cli cli cli cli");
}
