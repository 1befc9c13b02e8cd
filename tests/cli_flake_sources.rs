//! A flake's sources end to end: a path a flake copies to the store
//! (`"${./.}"`, `builtins.path`) takes only the files git tracks when the
//! flake is in a git repository, and otherwise the whole directory less
//! what `.miniignore` lists — so untracked files, `result` links and
//! `target/` never change a hash. The store path found through
//! `mini derivation show` must equal `mini store add` of a tree holding
//! exactly the kept files. The git tests need `git` (required under CI,
//! else skipped).

use std::path::{Path, PathBuf};

mod common;
use common::clients::{git, have_git};
use common::{mini_at, ok, text, Scratch};

/// The flake: a derivation whose `src` is the flake's directory
/// interpolated, one that takes it through `builtins.path`, and one that
/// takes `./src` through `builtins.path` with a filter of its own.
const FLAKE: &str = r#"let
  drv = name: src: derivation { inherit name src; system = builtins.currentSystem; builder = "/bin/sh"; };
in {
  x = drv "x" "${./.}";
  named = drv "named" (builtins.path { path = ./.; name = "source"; });
  sub = drv "sub" (builtins.path { path = ./src; name = "src"; filter = path: type: baseNameOf path != "skip.c"; });
  untracked = drv "untracked" ./notes.txt;
}
"#;

/// The single input source of `proj#attr`'s derivation.
fn source(s: &Scratch, proj: &Path, attr: &str) -> String {
    let json = ok(&mini_at(&s.0.join("store"), proj, &["derivation", "show", &format!(".#{attr}")]));
    let json: serde_json::Value = serde_json::from_str(&json).expect("derivation show prints JSON");
    let drv = json.as_object().and_then(|o| o.values().next()).expect("one derivation");
    let srcs = drv["inputSrcs"].as_array().expect("inputSrcs");
    assert_eq!(srcs.len(), 1, "{drv}");
    srcs[0].as_str().expect("a path").to_string()
}

/// `mini store add --name NAME DIR`.
fn store_add(s: &Scratch, dir: &Path, name: &str) -> String {
    ok(&mini_at(&s.0.join("store"), &s.0, &["store", "add", "--name", name, dir.to_str().expect("utf-8")]))
}

/// Writes `files` (path, contents) under `dir`, creating directories.
fn write_all(dir: &Path, files: &[(&str, &str)]) {
    for (file, contents) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dirs");
        std::fs::write(path, contents).expect("write");
    }
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// Clutter no source should see: an out-link, a build directory.
fn add_clutter(proj: &Path, store: &Path) {
    symlink(store.join("store").to_str().expect("utf-8"), &proj.join("result"));
    symlink("/nonexistent", &proj.join("result-dev"));
    write_all(proj, &[("target/debug/app", "binary"), ("target/.rustc_info.json", "{}")]);
}

#[test]
fn a_flake_in_git_takes_only_what_git_tracks() {
    if !have_git() {
        return;
    }
    let s = Scratch::new("sources-git");
    let proj = s.0.join("proj");
    write_all(&proj, &[("flake.nixlike", FLAKE), ("src/main.c", "int main;\n"), ("src/skip.c", "skipped\n")]);
    symlink("src/main.c", &proj.join("link"));
    git(&proj, &["init", "-q"]);
    git(&proj, &["add", "."]);
    git(&proj, &["commit", "-q", "-m", "init"]);
    let committed = source(&s, &proj, "x");
    assert!(committed.ends_with("-proj"), "{committed}");

    // Untracked files, out-links and build directories change nothing.
    write_all(&proj, &[("notes.txt", "mine"), ("src/new.c", "int new;\n")]);
    add_clutter(&proj, &s.0.join("store"));
    assert_eq!(source(&s, &proj, "x"), committed, "untracked files are not sources");

    // A file that is not tracked cannot be copied at all.
    let refused = mini_at(&s.0.join("store"), &proj, &["derivation", "show", ".#untracked"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("'notes.txt' is not tracked by git"), "{}", text(&refused.stderr));

    // A tracked file's working-tree contents count, staged or not.
    write_all(&proj, &[("src/main.c", "int main(void);\n")]);
    let modified = source(&s, &proj, "x");
    assert_ne!(modified, committed, "a modified tracked file changes the source");

    git(&proj, &["add", "src/new.c"]);
    let added = source(&s, &proj, "x");
    assert_ne!(added, modified, "a newly staged file is a source");
    git(&proj, &["commit", "-q", "-m", "more"]);
    assert_eq!(source(&s, &proj, "x"), added, "committing changes nothing the index did not say");

    // The kept files alone, added to the store, give the same paths.
    let copy = s.0.join("copy/proj");
    write_all(&copy, &[("flake.nixlike", FLAKE), ("src/main.c", "int main(void);\n"), ("src/new.c", "int new;\n")]);
    write_all(&copy, &[("src/skip.c", "skipped\n")]);
    symlink("src/main.c", &copy.join("link"));
    assert_eq!(store_add(&s, &copy, "proj"), added);
    assert_eq!(source(&s, &proj, "named"), store_add(&s, &copy, "source"));
    std::fs::remove_file(copy.join("src/skip.c")).expect("remove");
    assert_eq!(source(&s, &proj, "sub"), store_add(&s, &copy.join("src"), "src"));

    // Deleted from disk but still in the index: simply absent.
    std::fs::remove_file(proj.join("src/new.c")).expect("remove");
    assert_eq!(source(&s, &proj, "x"), modified);

    // `mini eval` of a plain file copies the whole directory, as before.
    write_all(&proj, &[("show.nixlike", "\"${./.}\"")]);
    let evaluated = ok(&mini_at(&s.0.join("store"), &proj, &["eval", "show.nixlike"]));
    assert_eq!(evaluated.trim_matches('"'), store_add(&s, &proj, "proj"));
}

#[test]
fn a_flake_outside_git_takes_its_directory_less_what_miniignore_lists() {
    let s = Scratch::new("sources-ignore");
    let proj = s.0.join("proj");
    let ignore = "# build outputs\ntarget/\n*.log\nresult*\n!keep.log\n";
    write_all(&proj, &[("flake.nixlike", FLAKE), ("src/main.c", "int main;\n"), (".miniignore", ignore)]);
    write_all(&proj, &[("src/logs/first.log", "noise")]);
    let first = source(&s, &proj, "x");

    add_clutter(&proj, &s.0.join("store"));
    write_all(&proj, &[("debug.log", "noise"), ("src/logs/deep.log", "noise")]);
    assert_eq!(source(&s, &proj, "x"), first, "ignored files are not sources");

    write_all(&proj, &[("notes.txt", "mine")]);
    let with_notes = source(&s, &proj, "x");
    assert_ne!(with_notes, first, "outside git, every file not ignored is a source");
    write_all(&proj, &[("keep.log", "kept")]);
    let with_kept_log = source(&s, &proj, "x");
    assert_ne!(with_kept_log, with_notes, "a negated pattern takes a file back");
    write_all(&proj, &[("src/main.c", "int main(void);\n")]);
    let modified = source(&s, &proj, "x");
    assert_ne!(modified, with_kept_log);

    // The kept files alone: a directory whose files are all ignored stays, empty.
    let copy = s.0.join("copy/proj");
    write_all(
        &copy,
        &[
            ("flake.nixlike", FLAKE),
            ("src/main.c", "int main(void);\n"),
            (".miniignore", ignore),
            ("notes.txt", "mine"),
            ("keep.log", "kept"),
        ],
    );
    std::fs::create_dir_all(copy.join("src/logs")).expect("create dir");
    assert_eq!(store_add(&s, &copy, "proj"), modified);

    // An ignored file cannot be copied at all, and the message says which line ignores it.
    write_all(&proj, &[("notes.txt", "mine\n"), (".miniignore", &format!("{ignore}notes.txt\n"))]);
    let refused = mini_at(&s.0.join("store"), &proj, &["derivation", "show", ".#untracked"]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("'notes.txt' is ignored by .miniignore (line 6: `notes.txt`)"), "{stderr}");
}

#[test]
fn a_flake_git_does_not_track_yet_is_taken_as_outside_git() {
    if !have_git() {
        return;
    }
    let s = Scratch::new("sources-untracked-flake");
    write_all(&s.0, &[("README", "the repository")]);
    git(&s.0, &["init", "-q"]);
    git(&s.0, &["add", "README"]);
    git(&s.0, &["commit", "-q", "-m", "init"]);
    let proj: PathBuf = s.0.join("proj");
    write_all(&proj, &[("flake.nixlike", FLAKE), ("src/main.c", "int main;\n"), (".miniignore", "target/\nresult*\n")]);
    let first = source(&s, &proj, "x");
    add_clutter(&proj, &s.0.join("store"));
    assert_eq!(source(&s, &proj, "x"), first, "its .miniignore applies");
    write_all(&proj, &[("notes.txt", "mine")]);
    assert_ne!(source(&s, &proj, "x"), first, "untracked files count while the flake itself is untracked");

    // Once its flake.nixlike is tracked, only tracked files count.
    git(&s.0, &["add", "proj/flake.nixlike", "proj/src/main.c"]);
    let tracked = source(&s, &proj, "x");
    let copy = s.0.join("copy/proj");
    write_all(&copy, &[("flake.nixlike", FLAKE), ("src/main.c", "int main;\n")]);
    assert_eq!(store_add(&s, &copy, "proj"), tracked);
}
