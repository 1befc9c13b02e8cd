//! Flake inputs and `mini.lock` end to end: an input moves only with
//! `mini lock --update`, a missing or stale lock is refused with the
//! command that fixes it (or locked with `--update-lock`), a path input is
//! pinned by content, an old revision builds with the lock committed at
//! that revision (its inputs travel back in time too), and images record
//! the revision and locked inputs they were built from. These tests need
//! `git` and a static busybox (both required under CI, else skipped).

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::clients::{git, have_git, json};
use common::{have_busybox, mini_at, ok, text, Scratch};

/// A library flake whose one output says which version it is.
fn lib_flake(version: &str) -> String {
    format!(
        r#"{{ pkgs, ... }}: {{
  greeting = pkgs.writeText "greeting" "hello from lib {version}\n";
}}
"#
    )
}

/// A service that takes the library (and, optionally, more inputs).
fn app_flake(more_inputs: &str) -> String {
    format!(
        r#"{{
  inputs.lib.url = "git+file:../lib";
  {more_inputs}
  outputs = {{ pkgs, lib, ... }}: {{
    default = pkgs.runCommand "app" {{ }} ''
      mkdir -p $out
      cat ${{lib.greeting}} > $out/msg
      echo ${{lib.shortRev}} > $out/lib-rev
    '';
    docker = pkgs.dockerTools.buildLayeredImage {{
      name = "app";
      contents = [ pkgs.busybox ];
      config.Cmd = [ "cat" "${{lib.greeting}}" ];
    }};
  }};
}}
"#
    )
}

struct Repos {
    s: Scratch,
    lib: PathBuf,
    app: PathBuf,
}

impl Repos {
    /// `lib` at v1 (committed) and `app` (not committed), side by side.
    fn new(name: &str) -> Option<Repos> {
        let s = Scratch::new(name);
        if !have_git() || !have_busybox(&s) {
            return None;
        }
        let (lib, app) = (s.0.join("lib"), s.0.join("app"));
        s.write("lib/flake.nixlike", &lib_flake("v1"));
        git(&lib, &["init", "-q"]);
        git(&lib, &["add", "."]);
        git(&lib, &["commit", "-qm", "lib v1"]);
        s.write("app/flake.nixlike", &app_flake(""));
        git(&app, &["init", "-q"]);
        git(&app, &["add", "flake.nixlike"]);
        Some(Repos { s, lib, app })
    }

    fn mini(&self, store: &str, args: &[&str]) -> Output {
        mini_at(&self.s.0.join(store), &self.app, args)
    }

    /// Builds `installable` into `store`: its output's physical path.
    fn build(&self, store: &str, installable: &str) -> PathBuf {
        let out = ok(&self.mini(store, &["build", installable, "--no-link", "--print-out-paths"]));
        let name = out.strip_prefix("/mini/store/").unwrap_or_else(|| panic!("not a store path: {out}"));
        self.s.0.join(store).join("store").join(name)
    }

    fn commit_lib(&self, version: &str) -> String {
        self.s.write("lib/flake.nixlike", &lib_flake(version));
        git(&self.lib, &["commit", "-qam", &format!("lib {version}")]);
        git(&self.lib, &["rev-parse", "HEAD"])
    }

    fn lock_file(&self) -> serde_json::Value {
        json(&std::fs::read_to_string(self.app.join("mini.lock")).expect("mini.lock is written"))
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected a failure: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stderr)
}

#[test]
fn an_input_moves_only_with_mini_lock_update() {
    let Some(r) = Repos::new("lock-update") else { return };
    let v1 = git(&r.lib, &["rev-parse", "HEAD"]);

    // No lock: refused, with the command that fixes it.
    let stderr = failed(&r.mini("store", &["build", ".#default", "--no-link"]));
    assert!(stderr.contains("declares inputs (lib) but has no mini.lock"), "{stderr}");
    assert!(stderr.contains(&format!("run `mini lock {}`", r.app.display())), "{stderr}");

    let out = r.mini("store", &["lock"]);
    assert!(text(&out.stderr).contains("added 'lib': git+file:../lib rev"), "{}", text(&out.stderr));
    let lock = r.lock_file();
    assert_eq!(lock["version"], 1);
    assert_eq!(lock["inputs"]["lib"]["rev"], v1.as_str());
    assert_eq!(lock["inputs"]["lib"]["url"], "git+file:../lib");
    assert!(lock["inputs"]["lib"]["narHash"].as_str().unwrap().starts_with("blake3:"), "{lock}");
    let again = r.mini("store", &["lock"]);
    assert!(text(&again.stderr).contains("is up to date"), "locking twice changes nothing: {}", text(&again.stderr));

    let built = r.build("store", ".#default");
    assert_eq!(read(&built.join("msg")), "hello from lib v1\n");
    assert_eq!(read(&built.join("lib-rev")), format!("{}\n", &v1[..7]));

    // A new commit in the input's repository changes nothing…
    let v2 = r.commit_lib("v2");
    assert_eq!(r.build("store", ".#default"), built, "the lock pins lib at v1");
    assert_eq!(r.build("fresh-store", ".#default"), r.s.0.join("fresh-store/store").join(built.file_name().unwrap()));

    // …until the lock is moved, which says so.
    let out = r.mini("store", &["lock", "--update", "lib"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("updated 'lib': git+file:../lib rev {} → rev {}", &v1[..12], &v2[..12])),
        "{stderr}"
    );
    assert_eq!(r.lock_file()["inputs"]["lib"]["rev"], v2.as_str());
    assert_eq!(read(&r.build("store", ".#default").join("msg")), "hello from lib v2\n");

    // A pinned input already in the store needs no repository; a fresh
    // store without the repository names the input that cannot be fetched.
    std::fs::rename(&r.lib, r.s.0.join("lib-moved")).unwrap();
    ok(&r.mini("store", &["build", ".#default", "--no-link"]));
    let stderr = failed(&r.mini("empty-store", &["build", ".#default", "--no-link"]));
    assert!(stderr.contains("input 'lib'") && stderr.contains("not the top level of a git repository"), "{stderr}");
    std::fs::rename(r.s.0.join("lib-moved"), &r.lib).unwrap();

    let unknown = failed(&r.mini("store", &["lock", "--update", "nope"]));
    assert!(unknown.contains("there is no input 'nope' to update; it declares lib"), "{unknown}");
}

#[test]
fn stale_locks_are_refused_or_updated_on_request_and_paths_are_pinned_by_content() {
    let Some(r) = Repos::new("lock-stale") else { return };
    ok(&r.mini("store", &["lock"]));
    r.s.write("app/flake.nixlike", &app_flake(r#"inputs.assets = { url = "path:./assets"; flake = false; };"#));
    r.s.write("app/assets/logo.txt", "logo v1\n");

    let stderr = failed(&r.mini("store", &["build", ".#default", "--no-link"]));
    assert!(stderr.contains("does not match its inputs: 'assets' declared but not locked"), "{stderr}");
    assert!(stderr.contains("--update-lock"), "{stderr}");

    let out = r.mini("store", &["build", ".#default", "--no-link", "--update-lock"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("lock: added 'assets': path:./assets content blake3:"), "{}", text(&out.stderr));
    let lock = r.lock_file();
    assert!(lock["inputs"]["assets"]["rev"].is_null() && lock["inputs"]["assets"]["flake"] == false, "{lock}");
    assert!(lock["inputs"]["lib"].is_object(), "{lock}");

    // A path input is pinned by its content: an edit is noticed, not used.
    r.s.write("app/assets/logo.txt", "logo v2\n");
    let stderr = failed(&r.mini("store", &["build", ".#default", "--no-link"]));
    assert!(stderr.contains("input 'assets'") && stderr.contains("changed since it was locked"), "{stderr}");
    assert!(stderr.contains("mini lock --update assets"), "{stderr}");
    ok(&r.mini("store", &["lock", "--update", "assets"]));
    ok(&r.mini("store", &["build", ".#default", "--no-link"]));

    // An input no longer declared makes the lock stale too.
    r.s.write("app/flake.nixlike", &app_flake(""));
    let stderr = failed(&r.mini("store", &["build", ".#default", "--no-link"]));
    assert!(stderr.contains("'assets' locked but no longer declared"), "{stderr}");
    let out = r.mini("store", &["lock"]);
    assert!(text(&out.stderr).contains("removed 'assets'"), "{}", text(&out.stderr));
    assert!(r.lock_file()["inputs"]["assets"].is_null());
}

#[test]
fn an_old_revision_builds_with_the_lock_committed_at_it() {
    let Some(r) = Repos::new("lock-time-travel") else { return };
    let lib_v1 = git(&r.lib, &["rev-parse", "HEAD"]);
    ok(&r.mini("store", &["lock"]));
    git(&r.app, &["add", "mini.lock"]);
    git(&r.app, &["commit", "-qm", "A"]);
    let a = git(&r.app, &["rev-parse", "HEAD"]);
    let release = r.build("store", "git+file:.#docker");
    let release_digest = sha256(&release);

    let lib_v2 = r.commit_lib("v2");
    ok(&r.mini("store", &["lock", "--update"]));
    git(&r.app, &["commit", "-qam", "B"]);
    let b = git(&r.app, &["rev-parse", "HEAD"]);

    // A year later, in a fresh store: A's image, bit for bit, with lib v1.
    let url = format!("git+file://{}", r.app.display());
    let again = r.build("later", &format!("{url}?rev={a}#docker"));
    assert_eq!(sha256(&again), release_digest);
    assert_eq!(read(&r.build("later", &format!("{url}?rev={a}#default")).join("msg")), "hello from lib v1\n");
    assert_eq!(read(&r.build("later", &format!("{url}?rev={b}#default")).join("msg")), "hello from lib v2\n");

    // The image says where it came from.
    let out = ok(&r.mini("later", &["image", "inspect", "--json", again.to_str().unwrap()]));
    let provenance = &json(&out)["images"][0]["provenance"];
    assert_eq!(provenance["revision"], a.as_str(), "{provenance}");
    assert!(provenance["source"].is_null(), "a repository without a remote names no source: {provenance}");
    let input = provenance["inputs"]["lib"].as_str().unwrap_or_default();
    assert!(input.starts_with(&format!("rev={lib_v1} narHash=blake3:")), "no URL, which names a place: {provenance}");
    let text_view = ok(&r.mini("later", &["image", "inspect", &format!("{url}?rev={b}#docker")]));
    assert!(text_view.contains(&format!("provenance    revision    {b}")), "{text_view}");
    assert!(text_view.contains(&format!("input lib   rev={lib_v2} narHash=blake3:")), "{text_view}");
    assert!(text_view.contains("derivation  /mini/store/"), "{text_view}");
    let labels = json(&out)["images"][0]["config"]["Labels"].to_string();
    for recorded in [provenance.to_string(), labels] {
        assert!(!recorded.contains(&r.s.0.display().to_string()), "no local path in provenance: {recorded}");
    }
}

#[test]
fn an_input_whose_own_inputs_are_unpinned_is_reported_when_locking() {
    let Some(r) = Repos::new("lock-nested") else { return };
    // A git input's relative paths stay inside its own tree, so lib names tools absolutely.
    let tools = r.s.write("tools/flake.nixlike", "{ pkgs, ... }: { }\n").parent().unwrap().to_path_buf();
    r.s.write(
        "lib/flake.nixlike",
        &format!(
            "{{ inputs.tools.url = \"path:{}\"; outputs = {{ pkgs, ... }}: {{ greeting = pkgs.writeText \"g\" \"x\"; }}; }}\n",
            tools.display()
        ),
    );
    git(&r.lib, &["commit", "-qam", "lib takes tools, unlocked"]);
    let stderr = failed(&r.mini("store", &["lock"]));
    assert!(stderr.contains("input 'lib': it was locked, but it cannot be used"), "{stderr}");
    assert!(stderr.contains("declares inputs (tools) but has no mini.lock"), "{stderr}");
    assert!(stderr.contains("an input's own inputs are pinned by its mini.lock"), "{stderr}");
    assert!(stderr.contains(&format!("flake '{} at revision ", r.lib.display())), "{stderr}");

    // Once lib commits its own lock, the shop locks and builds.
    ok(&mini_at(&r.s.0.join("store"), &r.lib, &["lock"]));
    git(&r.lib, &["add", "mini.lock"]);
    git(&r.lib, &["commit", "-qm", "lock tools"]);
    ok(&r.mini("store", &["lock", "--update"]));
    ok(&r.mini("store", &["build", ".#default", "--no-link"]));
}

#[test]
fn a_revision_without_a_lock_is_refused_or_locked_in_memory() {
    let Some(r) = Repos::new("lock-revision") else { return };
    git(&r.app, &["commit", "-qm", "no lock yet"]);
    let stderr = failed(&r.mini("store", &["build", "git+file:.#default", "--no-link"]));
    assert!(stderr.contains("has no mini.lock"), "{stderr}");
    assert!(stderr.contains("a past revision cannot be changed: build with --update-lock"), "{stderr}");
    assert!(stderr.contains(&format!("{} at revision ", r.app.display())), "{stderr}");

    let out = r.mini("store", &["build", "git+file:.#default", "--no-link", "--update-lock"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("the flake is at a git revision: the new pins were used, not written"));
    assert!(!r.app.join("mini.lock").exists(), "nothing is written for a revision");
}

#[test]
fn a_flake_in_a_subdirectory_takes_a_path_input_from_the_same_revision() {
    let s = Scratch::new("lock-subdir");
    if !have_git() || !have_busybox(&s) {
        return;
    }
    let repo = s.0.join("mono");
    s.write("mono/shared/motd", "welcome v1\n");
    s.write(
        "mono/services/api/flake.nixlike",
        r#"{
  inputs.shared = { url = "path:../../shared"; flake = false; };
  outputs = { pkgs, shared, ... }: {
    default = pkgs.runCommand "api" { } "cp ${shared}/motd $out";
  };
}
"#,
    );
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    let store = s.0.join("store");
    ok(&mini_at(&store, &repo.join("services/api"), &["lock"]));
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "A"]);
    let a = git(&repo, &["rev-parse", "HEAD"]);
    s.write("mono/shared/motd", "welcome v2\n");
    git(&repo, &["commit", "-qam", "B"]);

    // At A, the path input is A's `shared`, which A's lock pins.
    let installable = format!("git+file://{}?rev={a}&dir=services/api", repo.display());
    let out = ok(&mini_at(&store, &s.0, &["build", &installable, "--no-link", "--print-out-paths"]));
    let built = store.join("store").join(out.strip_prefix("/mini/store/").unwrap());
    assert_eq!(read(&built), "welcome v1\n");
    // At HEAD, B's lock (not updated) no longer matches B's `shared`.
    let head = format!("git+file://{}?dir=services/api", repo.display());
    let stderr = failed(&mini_at(&store, &s.0, &["build", &head, "--no-link"]));
    assert!(stderr.contains("changed since it was locked"), "{stderr}");
}

#[test]
fn bad_input_declarations_are_explained() {
    let s = Scratch::new("lock-bad");
    let store = s.0.join("store");
    let cases = [
        ("inputs.lib = \"git+file:../lib\"; outputs = { ... }: { };", "input 'lib' is a string, not { url = \"…\"; }"),
        ("inputs.lib.url = \"github:acme/lib\"; outputs = { ... }: { };", "unsupported input URL 'github:acme/lib'"),
        (
            "inputs.lib.uri = \"path:.\"; outputs = { ... }: { };",
            "input 'lib' has 'uri'; an input takes 'url' and 'flake'",
        ),
        ("inputs.pkgs.url = \"path:.\"; outputs = { ... }: { };", "an input cannot be called 'pkgs'"),
        ("inputs = { };", "declares 'inputs' but has no 'outputs'"),
        ("outputs = 1;", "'outputs' is an integer, not a function"),
    ];
    for (i, (body, expected)) in cases.iter().enumerate() {
        let dir = format!("f{i}");
        s.write(&format!("{dir}/flake.nixlike"), &format!("{{ {body} }}"));
        // Some are found by locking, the others when the outputs are called.
        let locking = mini_at(&store, &s.0.join(&dir), &["lock"]);
        let stderr = match text(&locking.stderr) {
            stderr if stderr.contains(expected) && locking.status.code() == Some(1) => stderr,
            _ => failed(&mini_at(&store, &s.0, &["build", &format!("./{dir}#x"), "--no-link"])),
        };
        assert!(stderr.contains(expected), "{body}: {stderr}");
    }
    s.write("garbled/flake.nixlike", "{ inputs = { }; outputs = { ... }: { }; }");
    s.write("garbled/mini.lock", "{ \"version\": 1 ");
    let stderr = failed(&mini_at(&store, &s.0, &["build", "./garbled#x", "--no-link"]));
    assert!(stderr.contains("garbled/mini.lock': it is not JSON"), "{stderr}");
}

fn sha256(path: &Path) -> String {
    common::clients::run("sha256sum", &[path.to_str().unwrap()]).split_whitespace().next().unwrap().to_string()
}
