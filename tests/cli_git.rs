//! Flakes at a git revision end to end: `git+file:///REPO?rev=SHA#ATTR`,
//! `?ref=NAME` and `git+file:DIR` (HEAD) build the committed tree, so an
//! old commit rebuilds bit for bit in a fresh store, working-tree changes
//! never count, and a commit built once is found again without git. A
//! clean working tree (`.#ATTR`) is its HEAD commit, byte for byte; a
//! dirty one has no revision, and warns. These
//! tests need `git` (required under CI, else skipped) and a static busybox
//! (likewise).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::clients::{git, have_git};
use common::{have_busybox, ok, text, Scratch};

const FLAKE: &str = r#"{ pkgs, ... }: {
  docker = pkgs.dockerTools.buildLayeredImage {
    name = "svc";
    tag = "1";
    contents = [ pkgs.busybox (pkgs.runCommand "svc" { } "mkdir -p $out/share; cp ${./msg.txt} $out/share/msg") ];
  };
}
"#;

/// `mini --store STORE ARGS` in `dir`, with `PATH` replaced when given.
fn mini(store: &Path, dir: &Path, args: &[&str], path: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mini"));
    cmd.arg("--store").arg(store).args(args).current_dir(dir);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    cmd.output().expect("run mini")
}

/// Builds `installable`: its output's physical path.
fn build(store: &Path, dir: &Path, installable: &str, path: Option<&str>) -> PathBuf {
    let out = ok(&mini(store, dir, &["build", installable, "--no-link", "--print-out-paths"], path));
    let name = out.strip_prefix("/mini/store/").unwrap_or_else(|| panic!("not a store path: {out}"));
    store.join("store").join(name)
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success(), "sha256sum: {}", text(&out.stderr));
    text(&out.stdout).split_whitespace().next().expect("a digest").to_string()
}

/// `repo/` with the flake and `msg.txt` committed as `A` (remote `origin`
/// at `remote`): the repository and the commit.
fn first_commit(s: &Scratch, remote: &str) -> (PathBuf, String) {
    let repo = s.0.join("repo");
    s.write("repo/flake.nixlike", FLAKE);
    s.write("repo/msg.txt", "first\n");
    git(&repo, &["init", "-q"]);
    git(&repo, &["remote", "add", "origin", remote]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "A"]);
    let a = git(&repo, &["rev-parse", "HEAD"]);
    (repo, a)
}

#[test]
fn old_commits_rebuild_identically_and_the_work_tree_never_counts() {
    let s = Scratch::new("git-time-travel");
    if !have_git() || !have_busybox(&s) {
        return;
    }
    let (repo, a) = first_commit(&s, "git@git.example:acme/svc.git");
    git(&repo, &["tag", "v1"]);
    let url = format!("git+file://{}", repo.display());
    let at = |rev: &str| format!("{url}?rev={rev}#docker");

    // The release: HEAD at commit A.
    let store1 = s.0.join("store1");
    let image_a = build(&store1, &repo, "git+file:.#docker", None);
    let digest_a = sha256_of(&image_a);
    assert_eq!(build(&store1, &s.0, &at(&a), None), image_a, "HEAD and its hash are the same revision");
    let provenance = &inspect(&store1, &image_a)["provenance"];
    assert_eq!(provenance["revision"], a.as_str(), "{provenance}");
    assert_eq!(provenance["source"], "https://git.example/acme/svc", "{provenance}");
    assert!(provenance["derivation"].as_str().is_some_and(|d| d.ends_with("-svc.tar.drv")), "{provenance}");
    let cache = std::fs::read_to_string(store1.join("git-revs").join(&a)).expect("the revision is cached");
    assert!(cache.starts_with("/mini/store/") && cache.trim_end().ends_with("-source"), "{cache}");

    s.write("repo/msg.txt", "second\n");
    git(&repo, &["commit", "-qam", "B"]);
    let b = git(&repo, &["rev-parse", "HEAD"]);

    // A fresh store rebuilds A bit for bit, also through its tag.
    let store2 = s.0.join("store2");
    assert_eq!(sha256_of(&build(&store2, &s.0, &at(&a), None)), digest_a);
    assert_eq!(build(&store2, &s.0, &format!("{url}?ref=v1#docker"), None), build(&store2, &s.0, &at(&a), None));
    let image_b = build(&store2, &s.0, &at(&b), None);
    assert_ne!(sha256_of(&image_b), digest_a);
    assert_only_changed_layers_differ(
        &inspect(&store2, &image_a_again(&store2, &image_a)),
        &inspect(&store2, &image_b),
    );

    // HEAD ignores untracked files, a `result` link and uncommitted edits.
    let head = build(&store2, &repo, "git+file:.#docker", None);
    assert_eq!(head, image_b);
    s.write("repo/untracked.txt", "noise");
    s.write("repo/msg.txt", "uncommitted\n");
    std::os::unix::fs::symlink(&image_a, repo.join("result")).expect("symlink");
    assert_eq!(build(&store2, &s.0, &format!("git+file:{}#docker", repo.display()), None), image_b);

    // A full hash built before needs no git at all.
    let no_git = s.0.join("empty-bin");
    std::fs::create_dir_all(&no_git).unwrap();
    let path = no_git.to_str().unwrap();
    assert_eq!(build(&store1, &s.0, &at(&a), Some(path)), image_a);
    let refused = mini(&store1, &s.0, &["build", &at(&b), "--no-link"], Some(path));
    assert!(!refused.status.success(), "a new revision needs git");
    assert!(text(&refused.stderr).contains("cannot run git"), "{}", text(&refused.stderr));

    // GC deletes the unrooted revision copies, and the cache forgets them.
    ok(&mini(&store1, &s.0, &["gc"], None));
    assert!(!store1.join("git-revs").join(&a).exists(), "the cache entry went with its store path");
}

/// `mini image inspect --json` of one image: its entry.
fn inspect(store: &Path, image: &Path) -> serde_json::Value {
    let out = ok(&mini(store, store, &["image", "inspect", "--json", image.to_str().unwrap()], None));
    let doc: serde_json::Value = serde_json::from_str(&out).expect("inspect --json gives JSON");
    doc["images"][0].clone()
}

/// The same store path as `image` (built in another store) in `store`.
fn image_a_again(store: &Path, image: &Path) -> PathBuf {
    store.join("store").join(image.file_name().unwrap())
}

/// Between two images of one service, a layer holding the same store
/// paths is the identical blob, and only layers holding changed paths (and
/// the customisation layer, whose links lead to them) differ.
fn assert_only_changed_layers_differ(a: &serde_json::Value, b: &serde_json::Value) {
    let layers = |image: &serde_json::Value| -> Vec<(Vec<String>, String)> {
        let list = image["layers"].as_array().expect("layers").iter();
        list.map(|l| {
            let paths = l["storePaths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string());
            (paths.collect(), l["diffId"].as_str().unwrap().to_string())
        })
        .collect()
    };
    let (a, b) = (layers(a), layers(b));
    assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
    let mut differing = Vec::new();
    for ((paths_a, id_a), (paths_b, id_b)) in a.iter().zip(&b) {
        if paths_a == paths_b && !paths_a.is_empty() {
            assert_eq!(id_a, id_b, "the layer of {paths_a:?} is rebuilt identically");
        } else if id_a != id_b {
            differing.push(paths_b.clone());
        }
    }
    assert!(a.iter().any(|(paths, _)| paths.iter().any(|p| p.ends_with("-busybox"))), "{a:?}");
    let changed = |paths: &Vec<String>| paths.is_empty() || paths.iter().all(|p| p.ends_with("-svc"));
    assert!(!differing.is_empty() && differing.iter().all(changed), "unexpected layers differ: {differing:?}");
}

#[test]
fn a_clean_tree_is_its_commit_byte_for_byte() {
    let s = Scratch::new("git-clean-tree");
    if !have_git() || !have_busybox(&s) {
        return;
    }
    let (repo, a) = first_commit(&s, "https://git.example/acme/svc.git");
    s.write("repo/untracked.txt", "untracked files leave a tree clean");

    let store1 = s.0.join("store1");
    let out = mini(&store1, &repo, &["build", ".#docker", "--no-link", "--print-out-paths"], None);
    let clean = store1.join("store").join(ok(&out).strip_prefix("/mini/store/").expect("a store path"));
    assert!(!text(&out.stderr).contains("dirty"), "{}", text(&out.stderr));
    let provenance = &inspect(&store1, &clean)["provenance"];
    assert_eq!(provenance["revision"], a.as_str(), "{provenance}");
    assert_eq!(provenance["source"], "https://git.example/acme/svc", "{provenance}");

    // The commit, built in a fresh store, is the same archive.
    let store2 = s.0.join("store2");
    let url = format!("git+file://{}?rev={a}#docker", repo.display());
    let at_rev = build(&store2, &s.0, &url, None);
    assert_eq!(at_rev.file_name(), clean.file_name(), "the same derivation");
    assert_eq!(sha256_of(&at_rev), sha256_of(&clean), "the same bytes");

    // A dirty tree is no revision: no revision label, and a warning.
    s.write("repo/msg.txt", "uncommitted\n");
    let out = mini(&store1, &repo, &["build", ".#docker", "--no-link", "--print-out-paths"], None);
    let dirty = store1.join("store").join(ok(&out).strip_prefix("/mini/store/").expect("a store path"));
    let top = std::fs::canonicalize(&repo).unwrap();
    assert!(text(&out.stderr).contains(&format!("warning: Git tree '{}' is dirty", top.display())), "{}", {
        text(&out.stderr)
    });
    let provenance = &inspect(&store1, &dirty)["provenance"];
    assert!(provenance.get("revision").is_none_or(|r| r.is_null()), "{provenance}");
}

#[test]
fn self_knows_the_revision_it_was_built_from() {
    let s = Scratch::new("git-self-rev");
    if !have_git() || !have_busybox(&s) {
        return;
    }
    let repo = s.0.join("repo");
    s.write(
        "repo/flake.nixlike",
        r#"{ pkgs, self, ... }: {
  version = pkgs.writeText "version" "${self.shortRev or "-"} ${self.rev or "-"} ${self.dirtyShortRev or "-"} ${self.dirtyRev or "-"} ${builtins.toString (builtins.attrNames self)}";
}
"#,
    );
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "A"]);
    let a = git(&repo, &["rev-parse", "HEAD"]);
    let store = s.0.join("store");
    let read = |installable: &str| std::fs::read_to_string(build(&store, &repo, installable, None)).unwrap();
    let at_a = format!("{} {a} - - rev shortRev version", &a[..7]);
    assert_eq!(read("git+file:.#version"), at_a);
    assert_eq!(read(".#version"), at_a, "a clean working tree is its commit");
    s.write("repo/notes.txt", "untracked");
    git(&repo, &["add", "notes.txt"]);
    assert_eq!(
        read(".#version"),
        format!("- - {short}-dirty {a}-dirty dirtyRev dirtyShortRev version", short = &a[..7]),
        "a dirty tree has no revision, only Nix's dirtyRev"
    );
}

#[test]
fn unknown_revisions_and_non_repositories_are_named() {
    let s = Scratch::new("git-errors");
    if !have_git() {
        return;
    }
    let repo = s.0.join("repo");
    s.write("repo/flake.nixlike", "{ }");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "A"]);
    let store = s.0.join("store");
    let url = format!("git+file://{}", repo.display());
    let missing = "0123456789abcdef0123456789abcdef01234567";
    for (rev, shown) in [(format!("rev={missing}"), missing), ("ref=nope".to_string(), "nope")] {
        let out = mini(&store, &s.0, &["build", &format!("{url}?{rev}#x"), "--no-link"], None);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(&format!("has no revision or ref '{shown}'")), "{stderr}");
        assert!(stderr.contains(&repo.display().to_string()), "{stderr}");
    }
    let plain = s.0.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let out = mini(&store, &s.0, &["build", &format!("git+file:{}#x", plain.display()), "--no-link"], None);
    assert!(text(&out.stderr).contains("not the top level of a git repository"), "{}", text(&out.stderr));
}
