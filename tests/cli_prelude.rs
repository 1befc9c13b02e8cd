//! The prelude's package set end to end: `mkDerivation`, the `write*`
//! helpers, `buildEnv`/`symlinkJoin`, `fetchurl` and `lib`, each built for
//! real from a scratch flake.
//!
//! Builders are the prelude's busybox (from Debian's busybox-static), so
//! these tests fail, not skip, where it is missing.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::Digest;

mod common;
use common::{mini_at as mini, ok, text, Scratch};

/// A flake in a scratch directory, with its own store.
struct Flake {
    scratch: Scratch,
    store: PathBuf,
    dir: PathBuf,
}

impl Flake {
    /// A flake whose `flake.nixlike` is `source`.
    fn new(name: &str, source: &str) -> Flake {
        let scratch = Scratch::new(&format!("prelude-{name}"));
        let (store, dir) = (scratch.0.join("store"), scratch.0.join("flake"));
        let flake = Flake { scratch, store, dir };
        flake.write("flake.nixlike", source);
        flake
    }

    /// Writes a file of the flake's directory.
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        self.scratch.write(&format!("flake/{rel}"), text)
    }

    /// Runs mini in the flake's directory; `file://` URLs may read the
    /// scratch directory (the fetchurl tests fetch from there).
    fn mini(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(&self.store)
            .args(args)
            .current_dir(&self.dir)
            .env("MINI_ALLOWED_FILE_URLS", &self.scratch.0)
            .output()
            .expect("run mini")
    }

    /// Builds the attributes and returns their output paths, in order.
    fn build(&self, attrs: &[&str]) -> Vec<String> {
        let mut args = vec!["build".to_string(), "--no-link".into(), "--print-out-paths".into()];
        args.extend(attrs.iter().map(|a| format!(".#{a}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&self.mini(&args)).lines().map(str::to_string).collect()
    }

    /// Builds one attribute and returns its output path.
    fn build1(&self, attr: &str) -> String {
        self.build(&[attr]).remove(0)
    }

    /// Builds an attribute that must fail, and returns what mini said.
    fn build_fails(&self, attr: &str) -> String {
        let out = self.mini(&["build", "--no-link", &format!(".#{attr}")]);
        assert!(!out.status.success(), "building {attr} succeeded:\n{}", text(&out.stderr));
        text(&out.stderr)
    }

    /// Where the logical store path `path` (plus `rel`) is on disk.
    fn physical(&self, path: &str, rel: &str) -> PathBuf {
        let base = self.store.join("store").join(path.trim_start_matches("/mini/store/"));
        if rel.is_empty() {
            base
        } else {
            base.join(rel)
        }
    }

    fn read(&self, path: &str, rel: &str) -> String {
        std::fs::read_to_string(self.physical(path, rel)).unwrap()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn mk_derivation_patches_and_builds_a_local_source() {
    let f = Flake::new(
        "mkderivation",
        r#"{ pkgs, ... }:
rec {
  shout = pkgs.writeShellScriptBin "shout" ''echo "$@" | tr a-z A-Z'';
  default = pkgs.mkDerivation {
    pname = "greeting";
    version = "1.0";
    src = ./src;
    patches = [ ./fix.patch ];
    nativeBuildInputs = [ shout ];
    postPatch = "echo post-patch >> hooks";
    preBuild = "echo pre-build >> hooks";
    buildPhase = ''
      runHook preBuild
      shout "$(cat greeting.txt)" > loud.txt
      echo "$SOURCE_DATE_EPOCH $TZ" > env.txt
      which shout > tool.txt
    '';
    installPhase = "mkdir -p $out; cp greeting.txt loud.txt env.txt tool.txt hooks $out/";
    meta = { description = "a greeting"; mainProgram = "greet"; };
    passthru = { greeting = "passed through"; };
  };
  probe = pkgs.writeText "probe" "${default.greeting}, ${default.meta.description}";
}
"#,
    );
    f.write("src/greeting.txt", "hello\n");
    f.write("fix.patch", "--- a/greeting.txt\n+++ b/greeting.txt\n@@ -1 +1 @@\n-hello\n+hello, patched\n");
    let [out, shout, probe] = f.build(&["default", "shout", "probe"]).try_into().unwrap();
    assert!(out.ends_with("-greeting-1.0"), "{out}");
    // The patch applied to a writable copy of the read-only source.
    assert_eq!(f.read(&out, "greeting.txt"), "hello, patched\n");
    assert_eq!(f.read(&out, "loud.txt"), "HELLO, PATCHED\n");
    assert_eq!(f.read(&out, "tool.txt"), format!("{shout}/bin/shout\n"));
    assert_eq!(f.read(&out, "env.txt"), "315532800 UTC\n");
    assert_eq!(f.read(&out, "hooks"), "post-patch\npre-build\n");
    // meta and passthru stay on the result; meta.mainProgram reaches `mini run`.
    assert_eq!(f.read(&probe, ""), "passed through, a greeting");
    let drv = ok(&mini(&f.store, &f.dir, &["derivation", "show", ".#default"]));
    assert!(drv.contains(r#""mainProgram":"greet""#) && !drv.contains("passed through"), "{drv}");
}

#[test]
fn phases_can_be_replaced_chosen_and_skipped() {
    let f = Flake::new(
        "phases",
        r#"{ pkgs, ... }:
{
  replaced = pkgs.mkDerivation {
    name = "replaced";
    src = ./src;
    configurePhase = "echo configured by hand > configured";
    installPhase = "mkdir $out; cp configured $out/; pwd > $out/pwd";
  };
  chosen = pkgs.mkDerivation {
    name = "chosen";
    phases = [ "installPhase" "extraPhase" ];
    installPhase = "mkdir $out; pwd > $out/pwd";
    extraPhase = "echo extra > $out/extra";
  };
  noUnpack = pkgs.mkDerivation {
    name = "no-unpack";
    src = ./src/data.txt;
    dontUnpack = true;
    installPhase = "mkdir $out; cp $src $out/data.txt";
  };
  configured = pkgs.mkDerivation {
    name = "configured";
    src = ./withConfigure;
    configureFlags = [ "--quiet" ];
    installPhase = "mkdir $out; cp config.txt $out/";
  };
  noOutput = pkgs.mkDerivation { name = "no-output"; src = ./src; };
  noMake = pkgs.mkDerivation { name = "no-make"; src = ./withMakefile; };
  noName = pkgs.mkDerivation { src = ./src; };
}
"#,
    );
    f.write("src/data.txt", "data\n");
    f.write("withMakefile/Makefile", "all:\n\ttrue\n");
    let configure = f.write("withConfigure/configure", "#!/bin/sh\necho \"$@\" > config.txt\n");
    std::fs::set_permissions(configure, std::fs::Permissions::from_mode(0o755)).unwrap();
    let [replaced, chosen, no_unpack, configured] =
        f.build(&["replaced", "chosen", "noUnpack", "configured"]).try_into().unwrap();
    assert_eq!(f.read(&replaced, "configured"), "configured by hand\n");
    // A directory source is copied to /build under its name, and the build runs there.
    assert_eq!(f.read(&replaced, "pwd"), "/build/src\n");
    assert_eq!(f.read(&chosen, "pwd"), "/build\n");
    assert_eq!(f.read(&chosen, "extra"), "extra\n");
    assert_eq!(f.read(&no_unpack, "data.txt"), "data\n");
    // The default configure phase runs ./configure (whose #!/bin/sh would not run as it is).
    assert_eq!(f.read(&configured, "config.txt"), format!("--prefix={configured} --quiet\n"));

    let err = f.build_fails("noOutput");
    assert!(err.contains("the build made no output 'out'") && err.contains("installPhase"), "{err}");
    let err = f.build_fails("noMake");
    assert!(err.contains("there is a Makefile but no make on PATH"), "{err}");
    let err = f.build_fails("noName");
    assert!(err.contains("mkDerivation: set name, or pname and version"), "{err}");
}

/// Writes `files` (relative path, contents, mode) under a top directory
/// `top` into a tar stream.
fn tar_into<W: Write>(out: W, top: &str, files: &[(&str, &str, u32)]) -> W {
    let mut tar = tar::Builder::new(out);
    for (rel, contents, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(1);
        let path = if top.is_empty() { rel.to_string() } else { format!("{top}/{rel}") };
        tar.append_data(&mut header, path, contents.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap()
}

const PACKAGE: &[(&str, &str, u32)] =
    &[("README", "read me\n", 0o644), ("bin/tool", "#!/bin/sh\necho tool \"$@\"\n", 0o755)];

#[test]
fn archives_unpack_into_their_top_directory() {
    let f = Flake::new("archives", "");
    let gz = File::create(f.dir.join("pkg.tar.gz")).unwrap();
    tar_into(flate2::write::GzEncoder::new(gz, flate2::Compression::default()), "pkg-1.0", PACKAGE).finish().unwrap();
    // The .tar.xz is fetched, from outside the flake.
    let xz_path = f.scratch.0.join("pkg-2.0.tar.xz");
    tar_into(xz2::write::XzEncoder::new(File::create(&xz_path).unwrap(), 6), "pkg-2.0", PACKAGE).finish().unwrap();
    let xz_hash = hex(&sha2::Sha256::digest(std::fs::read(&xz_path).unwrap()));
    // Loose files at the top of a tarball land in /build/source.
    tar_into(File::create(f.dir.join("loose.tar")).unwrap(), "", &[("a", "a", 0o644), ("b", "b", 0o644)]);
    f.write(
        "flake.nixlike",
        &format!(
            r#"{{ pkgs, ... }}:
let
  copy = name: src: pkgs.mkDerivation {{
    inherit name src;
    installPhase = "mkdir $out; cp -R . $out; pwd > $out/pwd";
  }};
in
{{
  gz = copy "gz" ./pkg.tar.gz;
  xz = copy "xz" (pkgs.fetchurl {{ url = "file://{}"; sha256 = "{xz_hash}"; }});
  loose = copy "loose" ./loose.tar;
}}
"#,
            xz_path.display()
        ),
    );
    let [gz, xz, loose] = f.build(&["gz", "xz", "loose"]).try_into().unwrap();
    for (out, top) in [(&gz, "pkg-1.0"), (&xz, "pkg-2.0")] {
        assert_eq!(f.read(out, "pwd"), format!("/build/{top}\n"));
        assert_eq!(f.read(out, "README"), "read me\n");
        let tool = f.physical(out, "bin/tool");
        assert_eq!(mode(&tool), 0o555);
        // The fixup phase pointed the #! line at busybox's sh.
        let script = std::fs::read_to_string(&tool).unwrap();
        let shebang = script.lines().next().unwrap();
        assert!(shebang.starts_with("#!/mini/store/") && shebang.ends_with("-busybox/bin/sh"), "{script}");
        assert!(script.ends_with("\necho tool \"$@\"\n"), "{script}");
    }
    assert_eq!(f.read(&loose, "pwd"), "/build/source\n");
    assert_eq!(f.read(&loose, "a") + &f.read(&loose, "b"), "ab");
    // `mini run` finds bin/tool, the only program.
    assert_eq!(ok(&mini(&f.store, &f.dir, &["run", ".#xz", "--", "ran"])), "tool ran");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn write_helpers_make_files_scripts_and_programs() {
    let f = Flake::new(
        "write",
        r##"{ pkgs, ... }:
{
  conf = pkgs.writeTextFile { name = "conf"; text = "key = value\n"; destination = "/etc/app.conf"; };
  exe = pkgs.writeTextFile { name = "exe"; text = "#!/bin/sh\necho exe\n"; executable = true; };
  script = pkgs.writeShellScript "script" "echo script";
  default = pkgs.writeShellScriptBin "greet" ''echo "hello $1"'';
  broken = pkgs.writeShellScript "broken" "if then fi";
  relative = pkgs.writeTextFile { name = "relative"; text = ""; destination = "etc/x"; };
}
"##,
    );
    let [conf, exe, script] = f.build(&["conf", "exe", "script"]).try_into().unwrap();
    assert_eq!(f.read(&conf, "etc/app.conf"), "key = value\n");
    assert_eq!(mode(&f.physical(&conf, "etc/app.conf")), 0o444);
    assert_eq!(f.read(&exe, ""), "#!/bin/sh\necho exe\n");
    assert_eq!(mode(&f.physical(&exe, "")), 0o555);
    let text = f.read(&script, "");
    assert!(text.starts_with("#!/mini/store/") && text.ends_with("-busybox/bin/sh\necho script"), "{text}");
    assert_eq!(mode(&f.physical(&script, "")), 0o555);
    assert_eq!(ok(&mini(&f.store, &f.dir, &["run", ".", "--", "world"])), "hello world");

    let err = f.build_fails("broken");
    assert!(err.contains("syntax error"), "a script that does not parse built:\n{err}");
    let err = f.build_fails("relative");
    assert!(err.contains("writeTextFile: destination must start with '/'"), "{err}");
}

#[test]
fn build_env_and_symlink_join_link_packages_together() {
    let f = Flake::new(
        "buildenv",
        r#"{ pkgs, ... }:
rec {
  a = pkgs.writeShellScriptBin "a" "echo a";
  b = pkgs.writeShellScriptBin "b" "echo b";
  env = pkgs.buildEnv { name = "env"; paths = [ a b ]; };
  one = pkgs.writeTextFile { name = "one"; text = "1"; destination = "/share/x"; };
  two = pkgs.writeTextFile { name = "two"; text = "2"; destination = "/share/x"; };
  collide = pkgs.buildEnv { name = "collide"; paths = [ one two ]; };
  ignore = pkgs.buildEnv { name = "ignore"; paths = [ one two ]; ignoreCollisions = true; };
  join = pkgs.symlinkJoin { name = "join"; paths = [ two one ]; };
}
"#,
    );
    let [a, b, env, one, two, ignore, join] =
        f.build(&["a", "b", "env", "one", "two", "ignore", "join"]).try_into().unwrap();
    let link = |out: &str, rel: &str| std::fs::read_link(f.physical(out, rel)).unwrap();
    assert_eq!(link(&env, "bin/a"), PathBuf::from(format!("{a}/bin/a")));
    assert_eq!(link(&env, "bin/b"), PathBuf::from(format!("{b}/bin/b")));
    assert_eq!(link(&ignore, "share/x"), PathBuf::from(format!("{one}/share/x")));
    assert_eq!(link(&join, "share/x"), PathBuf::from(format!("{two}/share/x")));
    let err = f.build_fails("collide");
    assert!(err.contains(&format!("collision between '{one}/share/x' and '{two}/share/x'")), "{err}");
}

#[test]
fn fetchurl_checks_the_hash_it_requires() {
    let hello = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"; // sha256("hello\n")
    let hello_sri = "sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=";
    let f = Flake::new("fetchurl", "");
    let file = f.scratch.write("data/hello.txt", "hello\n");
    let url = format!("file://{}", file.display());
    let flake = |exe_hash: &str| {
        format!(
            r#"{{ pkgs, ... }}:
{{
  hex = pkgs.fetchurl {{ url = "{url}"; sha256 = "{hello}"; }};
  sri = pkgs.fetchurl {{ url = "{url}"; hash = "{hello_sri}"; name = "greeting"; }};
  exe = pkgs.fetchurl {{ url = "{url}"; hash = "{exe_hash}"; executable = true; }};
  wrong = pkgs.fetchurl {{ url = "{url}"; hash = pkgs.lib.fakeHash; }};
  none = pkgs.fetchurl {{ url = "{url}"; }};
}}
"#
        )
    };
    f.write("flake.nixlike", &flake(""));
    let [hex, sri] = f.build(&["hex", "sri"]).try_into().unwrap();
    assert!(hex.ends_with("-hello.txt") && sri.ends_with("-greeting"), "{hex} {sri}");
    assert_eq!(f.read(&hex, ""), "hello\n");
    assert_eq!(f.read(&sri, ""), "hello\n");

    let err = f.build_fails("wrong");
    assert!(err.contains("hash mismatch") && err.contains(hello_sri) && err.contains("sha256-AAAA"), "{err}");
    let err = f.build_fails("none");
    assert!(err.contains("fetchurl requires a hash") && err.contains(&url), "{err}");

    // hash = "": the build fails and shows the hash to write, here of the
    // executable file as a tree.
    let err = f.build_fails("exe");
    let got = err.split_whitespace().filter(|w| w.starts_with("sha256-")).find(|w| !w.starts_with("sha256-AAAA"));
    let got = got.unwrap_or_else(|| panic!("no hash shown:\n{err}")).trim_matches(|c: char| "'\",.".contains(c));
    assert_ne!(got, hello_sri, "an executable is hashed as a tree, not as flat contents");
    f.write("flake.nixlike", &flake(got));
    let exe = f.build1("exe");
    assert_eq!(mode(&f.physical(&exe, "")), 0o555);
}

#[test]
fn lib_functions_compute_text() {
    let f = Flake::new(
        "lib",
        r#"{ pkgs, ... }:
with pkgs.lib;
{
  default = pkgs.writeText "lib" (concatStringsSep "\n" [
    (toString (optional true "a" ++ optional false "b" ++ optionals true [ "c" "d" ] ++ optionals false [ "e" ]))
    (optionalString true "yes" + optionalString false "no")
    (concatMapStrings (x: "<${x}>") [ "a" "b" ])
    (makeBinPath [ "/p" null "/q" ])
    (toString (mapAttrsToList (name: value: "${name}=${toString value}") { b = 2; a = 1; }))
    (toString (attrValues (fix (extends (final: prev: { b = prev.a + 1; c = final.b * 10; }) (final: { a = 1; })))))
    (builtins.toJSON [ (isDerivation (pkgs.writeText "x" "")) (isDerivation "x") ])
    (toString (attrNames (optionalAttrs true { k = 1; } // optionalAttrs false { l = 2; })))
  ]);
}
"#,
    );
    let out = f.build1("default");
    assert_eq!(f.read(&out, ""), "a c d\nyes\n<a><b>\n/p/bin:/q/bin\na=1 b=2\n1 2 20\n[true,false]\nk");
}

#[test]
fn the_prelude_documents_what_it_offers() {
    let s = Scratch::new("prelude-print");
    let prelude = ok(&mini(&s.0.join("store"), &s.0, &["prelude"]));
    for name in [
        "mkDerivation",
        "writeTextFile",
        "writeShellScript",
        "writeShellScriptBin",
        "buildEnv",
        "symlinkJoin",
        "fetchurl",
        "makeBinPath",
        "mapAttrsToList",
        "extends",
    ] {
        assert!(prelude.contains(&format!("# `{name}")), "{name} has no comment saying what it does");
    }
}
