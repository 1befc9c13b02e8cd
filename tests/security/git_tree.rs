//! `git+file:` unpacks a commit's tree, and a commit can hold any tree
//! object: `git mktree` writes one with a symlink `a -> /victim` and a
//! directory `a` holding `pwn`, or a symlink `z -> /victim/keep.txt` and a
//! file `z`. Before the fix, unpacking `git archive` by path created
//! `/victim/pwn` and overwrote `keep.txt`, for an installable and for a
//! flake input alike. Now every entry is created under a directory handle
//! with `O_NOFOLLOW|O_EXCL`, so both trees are refused, naming the entry.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::clients::{git, have_git};
use crate::{listing, text, users, Attempt};

/// Runs `git ARGS` in `dir` with `input` on stdin; its stdout, trimmed.
fn git_with_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run git");
    child.stdin.take().expect("git's stdin").write_all(input).expect("write to git");
    let out = child.wait_with_output().expect("wait for git");
    assert!(out.status.success(), "git {args:?} failed");
    text(&out.stdout).trim().to_string()
}

/// Commits a tree of `(mode, name, object)` lines, duplicates allowed, with
/// a flake.nixlike beside them; the commit's hash.
fn hostile_commit(repo: &Path, entries: &[(&str, &str, &str)]) -> String {
    let blob = |contents: &[u8]| git_with_input(repo, &["hash-object", "-w", "--stdin"], contents);
    let flake = blob(b"{ pkgs, ... }: { default = pkgs.writeText \"x\" \"x\"; }\n");
    let mut listing = format!("100644 blob {flake}\tflake.nixlike\n");
    for (mode, name, object) in entries {
        let kind = if *mode == "040000" { "tree" } else { "blob" };
        listing.push_str(&format!("{mode} {kind} {object}\t{name}\n"));
    }
    let tree = git_with_input(repo, &["mktree"], listing.as_bytes());
    git(repo, &["commit-tree", &tree, "-m", "hostile"])
}

/// The two trees of the issue: a link to the victim directory and a
/// directory of the same name below it; a link to the victim's file and a
/// file of the same name. Their commits.
fn hostile_repo(repo: &Path, victim: &Path) -> [String; 2] {
    std::fs::create_dir_all(repo).expect("create the repository");
    git(repo, &["init", "-q"]);
    let blob = |contents: &[u8]| git_with_input(repo, &["hash-object", "-w", "--stdin"], contents);
    let pwned = blob(b"pwned\n");
    let to_dir = blob(victim.as_os_str().as_encoded_bytes());
    let to_file = blob(victim.join("keep.txt").as_os_str().as_encoded_bytes());
    let below = git_with_input(repo, &["mktree"], format!("100644 blob {pwned}\tpwn\n").as_bytes());
    let under_link = hostile_commit(repo, &[("120000", "a", &to_dir), ("040000", "a", &below)]);
    let over_link = hostile_commit(repo, &[("120000", "z", &to_file), ("100644", "z", &pwned)]);
    [under_link, over_link]
}

fn assert_untouched(victim: &Path, who: &str) {
    assert_eq!(listing(victim), ["keep.txt"], "{who}: a file appeared in the victim directory");
    let kept = std::fs::read_to_string(victim.join("keep.txt")).expect("read the victim file");
    assert_eq!(kept, "keep me\n", "{who}: the victim file was overwritten");
}

/// The refusal must say what was refused and why.
fn assert_refused(stderr: &str, who: &str) {
    assert!(stderr.contains("cannot be unpacked safely"), "{who}: {stderr}");
    assert!(
        stderr.contains("duplicate entry") || stderr.contains("not a directory"),
        "{who}: the refusal does not say what is wrong:\n{stderr}"
    );
}

#[test]
fn a_revision_cannot_write_through_its_own_symlinks() {
    if !have_git() {
        return;
    }
    for who in users() {
        let a = Attempt::new("git-tree", who);
        let victim = a.victim();
        let repo = a.path("repo");
        for rev in hostile_repo(&repo, &victim) {
            let installable = format!("git+file://{}?rev={rev}#default", repo.display());
            let out = a.mini(&["build", &installable, "--no-link"]);
            let stderr = text(&out.stderr);
            let label = format!("{who:?} building {rev}");
            assert!(!out.status.success(), "{label}: the hostile tree was accepted");
            assert_refused(&stderr, &label);
            assert_untouched(&victim, &label);
        }
    }
}

#[test]
fn a_flake_input_cannot_write_through_its_own_symlinks() {
    if !have_git() {
        return;
    }
    for who in users() {
        let a = Attempt::new("git-tree-input", who);
        let victim = a.victim();
        let repo = a.path("repo");
        for rev in hostile_repo(&repo, &victim) {
            let flake = format!(
                "{{\n  inputs.evil.url = \"git+file://{}?rev={rev}\";\n  outputs = {{ evil, ... }}: {{ }};\n}}\n",
                repo.display()
            );
            std::fs::create_dir_all(a.dir()).expect("create the flake directory");
            std::fs::write(a.dir().join("flake.nixlike"), flake).expect("write the flake");
            let out = a.mini(&["lock"]);
            let stderr = text(&out.stderr);
            let label = format!("{who:?} locking an input at {rev}");
            assert!(!out.status.success(), "{label}: the hostile tree was accepted");
            assert!(stderr.contains("input 'evil'"), "{label}: the error does not name the input:\n{stderr}");
            assert_refused(&stderr, &label);
            assert_untouched(&victim, &label);
        }
    }
}

/// A repository's own configuration names programs git would run: a
/// `core.fsmonitor` (`git status` starts it) and a filter driver that
/// `.gitattributes` gives every file (`git status` runs its `clean`, `git
/// archive` its `smudge`). mini runs git on a flake's own tree, on
/// `git+file:` inputs and for `fetchGit`; none of them may start either.
#[test]
fn a_repositorys_configuration_never_runs_a_program() {
    if !have_git() {
        return;
    }
    for who in users() {
        let a = Attempt::new("git-config", who);
        let victim = a.victim();
        let repo = a.path("repo");
        std::fs::create_dir_all(&repo).expect("create the repository");
        std::fs::write(repo.join("flake.nixlike"), "{ answer = 42; }\n").expect("write the flake");
        std::fs::write(repo.join(".gitattributes"), "* filter=evil\n").expect("write .gitattributes");
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-qm", "A"]);
        let hook = a.path("hook.sh");
        std::fs::write(&hook, format!("#!/bin/sh\ntouch {}/pwned\ncat\n", victim.display())).expect("write the hook");
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let hook = hook.display().to_string();
        for key in ["core.fsmonitor", "filter.evil.clean", "filter.evil.smudge"] {
            git(&repo, &["config", key, &hook]);
        }
        std::fs::write(repo.join("untracked.txt"), "makes git status look at the work tree\n").expect("write");

        let label = format!("{who:?}");
        let out = a.mini_in(&repo, &["eval", ".#answer"]);
        assert_eq!(text(&out.stdout).trim(), "42", "{label}: {}", text(&out.stderr));
        let fetch = format!("(builtins.fetchGit {}).revCount", repo.display());
        let out = a.mini(&["eval", "--expr", &fetch]);
        assert_eq!(text(&out.stdout).trim(), "1", "{label}: {}", text(&out.stderr));
        let out = a.mini(&["eval", &format!("git+file://{}#answer", repo.display())]);
        assert_eq!(text(&out.stdout).trim(), "42", "{label}: {}", text(&out.stderr));
        assert_eq!(listing(&victim), ["keep.txt"], "{label}: git ran a program the repository's configuration names");
    }
}
