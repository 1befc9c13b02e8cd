//! A flake's sources end to end: a path a flake copies to the store
//! (`"${./.}"`, `builtins.path`) takes only the files git tracks when the
//! flake is in a git repository, and otherwise the whole directory less
//! what `.miniignore` lists — so untracked files, `result` links and
//! `target/` never change a hash. The store path found through
//! `mini derivation show` must equal `mini store add` of a tree holding
//! exactly the kept files. Outside git, out-links and `.mini/` are never
//! sources; in git, a build names the untracked files it left out. The
//! git tests need `git` (required under CI, else skipped).

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
    source_of(s, proj, &format!(".#{attr}"))
}

/// The single input source of `installable`'s derivation, run in `proj`.
fn source_of(s: &Scratch, proj: &Path, installable: &str) -> String {
    let json = ok(&mini_at(&s.0.join("store"), proj, &["derivation", "show", installable]));
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
    // A clean tree is its commit: the same copy of the commit's tree.
    let committed = source(&s, &proj, "x");
    assert!(committed.ends_with("-source"), "{committed}");
    assert_eq!(source_of(&s, &proj, "git+file:.#x"), committed);

    // Untracked files, out-links and build directories change nothing.
    write_all(&proj, &[("notes.txt", "mine"), ("src/new.c", "int new;\n")]);
    add_clutter(&proj, &s.0.join("store"));
    assert_eq!(source(&s, &proj, "x"), committed, "untracked files are not sources");

    // A file that is not tracked is not in the commit a clean tree is.
    let refused = mini_at(&s.0.join("store"), &proj, &["derivation", "show", ".#untracked"]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("untracked files left out of commit"), "{stderr}");
    assert!(
        stderr.contains(": notes.txt, src/new.c, target/.rustc_info.json, target/debug/app (`git add`"),
        "{stderr}"
    );

    // A tracked file's working-tree contents count, staged or not.
    write_all(&proj, &[("src/main.c", "int main(void);\n")]);
    let modified = source(&s, &proj, "x");
    assert!(modified.ends_with("-proj"), "a dirty tree is taken as it is: {modified}");

    // In a dirty tree, a file that is not tracked cannot be copied at all.
    let refused = mini_at(&s.0.join("store"), &proj, &["derivation", "show", ".#untracked"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("'notes.txt' is not tracked by git"), "{}", text(&refused.stderr));

    git(&proj, &["add", "src/new.c"]);
    let added = source(&s, &proj, "x");
    assert_ne!(added, modified, "a newly staged file is a source");
    let copy = s.0.join("copy/proj");
    write_all(&copy, &[("flake.nixlike", FLAKE), ("src/main.c", "int main(void);\n"), ("src/new.c", "int new;\n")]);
    write_all(&copy, &[("src/skip.c", "skipped\n")]);
    symlink("src/main.c", &copy.join("link"));
    assert_eq!(store_add(&s, &copy, "proj"), added);
    assert_eq!(source(&s, &proj, "named"), store_add(&s, &copy, "source"));
    std::fs::remove_file(copy.join("src/skip.c")).expect("remove");
    assert_eq!(source(&s, &proj, "sub"), store_add(&s, &copy.join("src"), "src"));

    // Committed, the tree is clean again: its commit, whatever the index said.
    git(&proj, &["commit", "-q", "-a", "-m", "more"]);
    let clean = source(&s, &proj, "x");
    assert_eq!(clean, source_of(&s, &proj, "git+file:.#x"));
    assert_ne!(clean, committed);

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

#[test]
fn outside_git_out_links_and_dot_mini_are_never_sources() {
    let s = Scratch::new("sources-own");
    let proj = s.0.join("proj");
    let files = [("flake.nixlike", FLAKE), ("src/main.c", "int main;\n"), ("notes.txt", "mine\n")];
    write_all(&proj, &files);
    let first = source(&s, &proj, "x");

    symlink(s.0.join("store").to_str().expect("utf-8"), &proj.join("result"));
    symlink("/nonexistent", &proj.join("result-2"));
    symlink("../notes.txt", &proj.join("src/result-dev"));
    write_all(&proj, &[(".mini/state/x", "mini's own")]);
    assert_eq!(source(&s, &proj, "x"), first, "out-links and .mini/ are not sources, with no .miniignore");
    let copy = s.0.join("copy/proj");
    write_all(&copy, &files);
    assert_eq!(store_add(&s, &copy, "proj"), first, "the same path as the tree without them");

    // Only links are out-links; a `!` line takes one back.
    write_all(&proj, &[("results.txt", "data")]);
    let with_file = source(&s, &proj, "x");
    assert_ne!(with_file, first, "a file named like an out-link is a source");
    write_all(&proj, &[(".miniignore", "!result-2\n")]);
    write_all(&copy, &[("results.txt", "data"), (".miniignore", "!result-2\n")]);
    symlink("/nonexistent", &copy.join("result-2"));
    assert_eq!(source(&s, &proj, "x"), store_add(&s, &copy, "proj"));
}

#[test]
fn a_build_names_the_untracked_files_its_sources_left_out() {
    if !have_git() {
        return;
    }
    let s = Scratch::new("sources-note");
    let proj = s.0.join("proj");
    write_all(&proj, &[("flake.nixlike", FLAKE), ("src/main.c", "int main;\n"), ("src/skip.c", "s\n")]);
    git(&proj, &["init", "-q"]);
    git(&proj, &["add", "."]);
    git(&proj, &["commit", "-q", "-m", "init"]);
    let show = |attr: &str| {
        let out = mini_at(&s.0.join("store"), &proj, &["derivation", "show", &format!(".#{attr}")]);
        ok(&out);
        text(&out.stderr)
    };
    assert!(!show("x").contains("note:"), "nothing untracked, nothing to say");

    write_all(&proj, &[("notes.txt", "mine"), ("src/new.c", "int new;\n"), (".mini/state", "own")]);
    symlink("/nonexistent", &proj.join("result"));
    let note = "note: 2 untracked files left out of the flake's sources: notes.txt, src/new.c \
                (`git add` them to include them)\n";
    assert_eq!(show("x"), note, "a clean tree: one line, without mini's own files");
    assert_eq!(
        show("sub"),
        "note: 1 untracked file left out of the flake's sources: src/new.c (`git add` it to include it)\n",
        "only what is under the copied path"
    );

    write_all(&proj, &[("src/main.c", "int main(void);\n")]);
    let stderr = show("x");
    let warning = format!("warning: Git tree '{}' is dirty\n", std::fs::canonicalize(&proj).unwrap().display());
    assert_eq!(stderr, format!("{warning}{note}"), "a dirty tree warns, and says the same");
}
