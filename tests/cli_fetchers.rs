//! The language's fetchers end to end: `builtins.fetchurl` and
//! `fetchTarball` of `file://` URLs with and without a hash (the path a
//! fixed-output fetch gives, a mismatch registering nothing, a valid path
//! never fetched again), `fetchGit` of a local repository by `rev` and
//! `ref` with Nix's attributes, pure mode (flakes, `mini eval --pure`)
//! refusing what is not pinned, and the same inputs giving the same paths
//! in two stores.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::clients::{git_dated, have_git};
use common::{failed, ok, text, Scratch};

/// `mini --store STORE ARGS` in `dir`, allowed to read `file://` URLs below `dir`.
fn mini(store: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(store)
        .args(args)
        .current_dir(dir)
        .env("MINI_ALLOWED_FILE_URLS", dir)
        .output()
        .expect("run mini")
}

/// `mini eval --strict --expr EXPR`'s output.
fn eval(store: &Path, dir: &Path, expr: &str) -> String {
    ok(&mini(store, dir, &["eval", "--strict", "--expr", expr]))
}

/// Where a printed store path (`"/mini/store/…"`) is on disk.
fn physical(store: &Path, printed: &str) -> PathBuf {
    let logical = printed.trim_matches('"');
    let base = logical.strip_prefix("/mini/store/").unwrap_or_else(|| panic!("not a store path: {printed}"));
    store.join("store").join(base)
}

/// The SRI hash a note on `stderr` says pins the fetch.
fn pinning_hash(stderr: &str) -> String {
    let start = stderr.find("sha256 = \"").unwrap_or_else(|| panic!("no pinning note: {stderr}")) + 10;
    stderr[start..].split('"').next().unwrap().to_string()
}

/// How many paths the store has registered.
fn registered(store: &Path) -> usize {
    std::fs::read_dir(store.join("db")).map_or(0, |d| d.count())
}

/// A tarball of one top-level directory `pkg-1.0/` (with `a` and `sub/b`).
fn tarball(s: &Scratch) -> PathBuf {
    s.write("t/pkg-1.0/a", "a\n");
    s.write("t/pkg-1.0/sub/b", "b\n");
    let archive = s.0.join("pkg.tar.gz");
    let status = Command::new("tar").arg("czf").arg(&archive).arg("-C").arg(s.0.join("t")).arg("pkg-1.0").status();
    assert!(status.expect("run tar").success());
    archive
}

#[test]
fn fetchurl_and_fetch_tarball_pinned_or_not_give_the_fixed_output_path() {
    let s = Scratch::new("fetchers-url");
    let store = s.0.join("store");
    s.write("hello.txt", "hello\n");
    tarball(&s);
    let file_url = format!("file://{}/hello.txt", s.0.display());
    let tar_url = format!("file://{}/pkg.tar.gz", s.0.display());

    let out = mini(&store, &s.0, &["eval", "--expr", &format!("builtins.fetchurl \"{file_url}\"")]);
    let unpinned = ok(&out);
    assert!(unpinned.ends_with("-hello.txt\""), "{unpinned}");
    assert_eq!(std::fs::read_to_string(physical(&store, &unpinned)).unwrap(), "hello\n");
    let hash = pinning_hash(&text(&out.stderr));
    assert_eq!(hash, "sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=", "sha256sum of the file, in SRI form");
    let pinned = eval(&store, &s.0, &format!("builtins.fetchurl {{ url = \"{file_url}\"; sha256 = \"{hash}\"; }}"));
    assert_eq!(pinned, unpinned);
    // The same path `mini fetch` (the fixed-output machinery) gives.
    let fetched = mini(&store, &s.0, &["fetch", &file_url]);
    assert!(text(&fetched.stderr).contains(&format!("path: {}", unpinned.trim_matches('"'))), "{fetched:?}");
    let named = eval(&store, &s.0, &format!("builtins.fetchurl {{ url = \"{file_url}\"; name = \"greeting\"; }}"));
    assert!(named.ends_with("-greeting\""), "{named}");

    let out = mini(&store, &s.0, &["eval", "--expr", &format!("builtins.fetchTarball \"{tar_url}\"")]);
    let tree = ok(&out);
    assert!(tree.ends_with("-source\""), "{tree}");
    let dir = physical(&store, &tree);
    assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "b\n", "pkg-1.0/ is stripped");
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "a\n");
    let hash = pinning_hash(&text(&out.stderr));
    let pinned = eval(&store, &s.0, &format!("builtins.fetchTarball {{ url = \"{tar_url}\"; sha256 = \"{hash}\"; }}"));
    assert_eq!(pinned, tree);
    let context = eval(&store, &s.0, &format!("builtins.getContext (builtins.fetchTarball \"{tar_url}\")"));
    assert_eq!(context, format!("{{ {tree} = {{ path = true; }}; }}"));
}

#[test]
fn a_mismatch_names_both_hashes_and_registers_nothing() {
    let s = Scratch::new("fetchers-mismatch");
    let store = s.0.join("store");
    s.write("hello.txt", "hello\n");
    tarball(&s);
    let wrong = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    for expr in [
        format!("builtins.fetchurl {{ url = \"file://{}/hello.txt\"; sha256 = \"{wrong}\"; }}", s.0.display()),
        format!("builtins.fetchTarball {{ url = \"file://{}/pkg.tar.gz\"; sha256 = \"\"; }}", s.0.display()),
    ] {
        let err = failed(&mini(&store, &s.0, &["eval", "--expr", &expr]));
        assert!(err.contains("hash mismatch in file downloaded from 'file://"), "{err}");
        assert!(err.contains(&format!("specified: {wrong}")), "{err}");
        assert!(err.contains("got:       sha256-"), "{err}");
        assert_eq!(registered(&store), 0, "nothing is registered: {err}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(store.join("store")).unwrap().collect();
    assert!(leftovers.is_empty(), "nothing is left in the store: {leftovers:?}");
}

#[test]
fn a_valid_pinned_path_is_not_fetched_again() {
    let s = Scratch::new("fetchers-no-refetch");
    let store = s.0.join("store");
    let file = s.write("hello.txt", "hello\n");
    let archive = tarball(&s);
    let hash = "sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=";
    let pinned_file = format!("builtins.fetchurl {{ url = \"file://{}\"; sha256 = \"{hash}\"; }}", file.display());
    let first = eval(&store, &s.0, &pinned_file);
    let out =
        mini(&store, &s.0, &["eval", "--expr", &format!("builtins.fetchTarball \"file://{}\"", archive.display())]);
    let tree = ok(&out);
    let pinned_tree = format!(
        "builtins.fetchTarball {{ url = \"file://{}\"; sha256 = \"{}\"; }}",
        archive.display(),
        pinning_hash(&text(&out.stderr))
    );
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_file(&archive).unwrap();
    assert_eq!(eval(&store, &s.0, &pinned_file), first, "found valid: the missing file is not read");
    assert_eq!(eval(&store, &s.0, &pinned_tree), tree);
    let err = failed(&mini(&s.0.join("fresh-store"), &s.0, &["eval", "--expr", &pinned_file]));
    assert!(err.contains("hello.txt"), "a store without it does fetch: {err}");
}

#[test]
fn file_urls_are_read_only_where_the_settings_allow() {
    let s = Scratch::new("fetchers-allowed");
    s.write("hello.txt", "hello\n");
    let out = Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(s.0.join("store"))
        .args(["eval", "--expr", &format!("builtins.fetchurl \"file://{}/hello.txt\"", s.0.display())])
        .env_remove("MINI_ALLOWED_FILE_URLS")
        .env("HOME", &s.0)
        .env("XDG_CONFIG_HOME", s.0.join("config"))
        .output()
        .expect("run mini");
    let err = failed(&out);
    assert!(err.contains("outside the directories file:// URLs may read"), "{err}");
}

#[test]
fn pure_mode_refuses_what_is_not_pinned() {
    let s = Scratch::new("fetchers-pure");
    let store = s.0.join("store");
    s.write("hello.txt", "hello\n");
    let url = format!("file://{}/hello.txt", s.0.display());
    let hash = "sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=";
    s.write(
        "flake/flake.nixlike",
        &format!(
            r#"{{
  unpinned = builtins.fetchurl "{url}";
  tarball = builtins.fetchTarball {{ url = "{url}"; }};
  git = builtins.fetchGit ./repo;
  pinned = builtins.fetchurl {{ url = "{url}"; sha256 = "{hash}"; }};
}}
"#
        ),
    );
    let refusals = [
        ("unpinned", "in pure evaluation mode, 'fetchurl' requires a 'sha256' argument"),
        ("tarball", "in pure evaluation mode, 'fetchTarball' requires a 'sha256' argument"),
        ("git", "in pure evaluation mode, 'fetchGit' requires a locked input: add a 'rev' argument"),
    ];
    for (attr, message) in refusals {
        let err = failed(&mini(&store, &s.0, &["eval", &format!("./flake#{attr}")]));
        assert!(err.contains(message), "{attr}: {err}");
    }
    assert_eq!(registered(&store), 0);
    let pinned = ok(&mini(&store, &s.0, &["eval", "./flake#pinned"]));
    assert_eq!(std::fs::read_to_string(physical(&store, &pinned)).unwrap(), "hello\n");
    assert_eq!(registered(&store), 1);

    let err = failed(&mini(&store, &s.0, &["eval", "--pure", "--expr", &format!("builtins.fetchurl \"{url}\"")]));
    assert!(err.contains("'fetchurl' requires a 'sha256' argument"), "{err}");
}

/// Runs git in `dir` with no user configuration, commits dated `date`; its stdout.
fn git(dir: &Path, date: &str, args: &[&str]) -> String {
    git_dated(dir, Some(date), args)
}

/// A repository with two commits on `main` (2020-01-01 and a day later)
/// and a third on branch `side`; their hashes.
fn repository(s: &Scratch) -> (PathBuf, String, String, String) {
    let repo = s.0.join("repo");
    s.write("repo/f", "one\n");
    s.write("repo/d/g", "two\n");
    git(&repo, "2020-01-01T00:00:00Z", &["init", "-q"]);
    git(&repo, "2020-01-01T00:00:00Z", &["add", "."]);
    git(&repo, "2020-01-01T00:00:00Z", &["commit", "-qm", "one"]);
    let first = git(&repo, "", &["rev-parse", "HEAD"]);
    s.write("repo/f", "three\n");
    git(&repo, "2020-01-02T00:00:00Z", &["commit", "-qam", "two"]);
    let second = git(&repo, "", &["rev-parse", "HEAD"]);
    git(&repo, "", &["checkout", "-qb", "side"]);
    s.write("repo/f", "side\n");
    git(&repo, "2020-01-03T00:00:00Z", &["commit", "-qam", "side"]);
    let side = git(&repo, "", &["rev-parse", "HEAD"]);
    git(&repo, "", &["checkout", "-q", "main"]);
    (repo, first, second, side)
}

#[test]
fn fetch_git_takes_a_local_commit_by_rev_or_ref_with_nix_attributes() {
    let s = Scratch::new("fetchers-git");
    if !have_git() {
        return;
    }
    let store = s.0.join("store");
    let (repo, first, second, side) = repository(&s);
    let repo = repo.display();
    let by_rev = eval(&store, &s.0, &format!("builtins.fetchGit {{ url = \"file://{repo}\"; rev = \"{first}\"; }}"));
    let out_path = by_rev.split("outPath = ").nth(1).and_then(|r| r.split(';').next()).unwrap().to_string();
    // narHash is Nix 2.8's for this tree (f = "one\n", d/g = "two\n").
    assert_eq!(
        by_rev,
        format!(
            "{{ lastModified = 1577836800; lastModifiedDate = \"20200101000000\"; \
             narHash = \"sha256-Wsv9aqhAYM2CUwvno6oUY57AzlpwgdhyDS6lBjuaOhk=\"; outPath = {out_path}; \
             rev = \"{first}\"; revCount = 1; shortRev = \"{}\"; submodules = false; }}",
            &first[..7]
        )
    );
    assert_eq!(std::fs::read_to_string(physical(&store, &out_path).join("f")).unwrap(), "one\n");
    assert!(!physical(&store, &out_path).join(".git").exists());

    let by_ref = eval(&store, &s.0, &format!("builtins.fetchGit {{ url = {repo}; ref = \"main\"; }}"));
    assert!(by_ref.contains(&format!("rev = \"{second}\"; revCount = 2;")), "{by_ref}");
    assert!(by_ref.contains("lastModifiedDate = \"20200102000000\";"), "{by_ref}");
    let head = eval(&store, &s.0, &format!("(builtins.fetchGit {repo}).rev"));
    assert_eq!(head, format!("\"{second}\""));
    let side_ref = eval(&store, &s.0, &format!("(builtins.fetchGit {{ url = {repo}; ref = \"side\"; }}).rev"));
    assert_eq!(side_ref, format!("\"{side}\""));
    let shallow = eval(&store, &s.0, &format!("(builtins.fetchGit {{ url = {repo}; shallow = true; }}).revCount"));
    assert_eq!(shallow, "0");
    let named = eval(&store, &s.0, &format!("(builtins.fetchGit {{ url = {repo}; name = \"src\"; }}).outPath"));
    assert!(named.ends_with("-src\""), "{named}");

    // A rev off the ref is found only with allRefs, as in Nix.
    let off_ref = format!("builtins.fetchGit {{ url = {repo}; rev = \"{side}\"; }}");
    let err = failed(&mini(&store, &s.0, &["eval", "--expr", &off_ref]));
    assert!(err.contains("add allRefs = true;"), "{err}");
    let all_refs = format!("(builtins.fetchGit {{ url = {repo}; rev = \"{side}\"; allRefs = true; }}).rev");
    assert_eq!(eval(&store, &s.0, &all_refs), format!("\"{side}\""));
    let on_side = format!("(builtins.fetchGit {{ url = {repo}; rev = \"{side}\"; ref = \"side\"; }}).revCount");
    assert_eq!(eval(&store, &s.0, &on_side), "3");

    // Pure mode takes a rev (below the evaluation's directory); a dirty
    // tree is refused when no commit is named.
    let pure = format!("(builtins.fetchGit {{ url = ./repo; rev = \"{first}\"; }}).outPath");
    assert_eq!(ok(&mini(&store, &s.0, &["eval", "--pure", "--expr", &pure])), out_path);
    s.write("repo/f", "dirty\n");
    let err = failed(&mini(&store, &s.0, &["eval", "--expr", &format!("builtins.fetchGit {repo}")]));
    assert!(err.contains("is dirty"), "{err}");
    let err =
        failed(&mini(&store, &s.0, &["eval", "--expr", &format!("builtins.fetchGit {{ url = {repo}; x = 1; }}")]));
    assert!(err.contains("unsupported Git input attribute 'x'"), "{err}");
}

#[test]
fn the_same_inputs_give_the_same_paths_in_two_stores() {
    let s = Scratch::new("fetchers-determinism");
    s.write("hello.txt", "hello\n");
    let archive = tarball(&s);
    let git_part = if have_git() {
        let (repo, first, ..) = repository(&s);
        format!("git = (builtins.fetchGit {{ url = {}; rev = \"{first}\"; }}).outPath;", repo.display())
    } else {
        String::new()
    };
    let expr = format!(
        "{{ file = builtins.fetchurl \"file://{}/hello.txt\"; tree = builtins.fetchTarball \"file://{}\"; {git_part} }}",
        s.0.display(),
        archive.display()
    );
    let one = eval(&s.0.join("store-one"), &s.0, &expr);
    let two = eval(&s.0.join("store-two"), &s.0, &expr);
    assert_eq!(one, two);
    assert!(one.contains("/mini/store/"), "{one}");
}

/// What is fetched can be read in the same evaluation, as in Nix:
/// `import (fetchTarball …)`, `readFile (fetchurl …)`. Values name the
/// store's logical directory; mini reads its real one. In pure evaluation
/// only a store path this evaluation fetched or made may be read, and a
/// link in it that leads out of the store is refused.
#[test]
fn fetched_paths_can_be_imported_and_read() {
    let s = Scratch::new("fetchers-read-back");
    // The store is outside the directory pure evaluation may read.
    let store = s.0.join("store");
    let work = s.0.join("work");
    s.write(
        "t/lib-1.0/default.nix",
        "{ answer = 42; text = builtins.readFile ./data.txt; here = toString ./.; file = __curPos.file; }\n",
    );
    s.write("t/lib-1.0/data.txt", "from the tarball\n");
    std::os::unix::fs::symlink("/etc/hostname", s.0.join("t/lib-1.0/leak")).expect("symlink");
    std::fs::create_dir_all(&work).expect("create work");
    let archive = work.join("lib.tar.gz");
    let status = Command::new("tar").arg("czf").arg(&archive).arg("-C").arg(s.0.join("t")).arg("lib-1.0").status();
    assert!(status.expect("run tar").success());
    let url = format!("file://{}", archive.display());
    let unpinned = mini(&store, &work, &["eval", "--expr", &format!("builtins.fetchTarball \"{url}\"")]);
    let hash = pinning_hash(&text(&unpinned.stderr));
    let fetched = format!("builtins.fetchTarball {{ url = \"{url}\"; sha256 = \"{hash}\"; }}");

    let expr = format!("let lib = import ({fetched}); in [ lib.answer lib.text ]");
    assert_eq!(eval(&store, &work, &expr), "[ 42 \"from the tarball\\n\" ]");
    let pure = mini(&store, &work, &["eval", "--pure", "--strict", "--expr", &expr]);
    assert_eq!(ok(&pure), "[ 42 \"from the tarball\\n\" ]");
    let read = format!("builtins.readFile (builtins.fetchurl {{ url = \"file://{}\"; }})", archive.display());
    assert!(eval(&store, &work, &format!("builtins.stringLength ({read})")).parse::<usize>().unwrap() > 0);

    // Values name the store by its logical directory, wherever it is.
    let here = eval(&store, &work, &format!("let lib = import ({fetched}); in [ lib.here lib.file ]"));
    let fetched_path = ok(&mini(&store, &work, &["eval", "--expr", &fetched]));
    let fetched_path = fetched_path.trim_matches('"');
    assert_eq!(here, format!("[ \"{fetched_path}\" \"{fetched_path}/default.nix\" ]"));
    assert!(fetched_path.starts_with("/mini/store/"), "{fetched_path}");

    // Pure: a link out of the fetched tree, or a store path this evaluation
    // did not fetch or make (even given context by hand), is not read.
    let leak = format!("builtins.readFile \"${{{fetched}}}/leak\"");
    let err = failed(&mini(&store, &work, &["eval", "--pure", "--expr", &leak]));
    assert!(err.contains("is forbidden in pure evaluation mode"), "{err}");
    let bare = format!("builtins.readFile \"{fetched_path}/data.txt\"");
    let err = failed(&mini(&store, &work, &["eval", "--pure", "--expr", &bare]));
    assert!(err.contains("is forbidden in pure evaluation mode"), "{err}");
    let forged = format!(
        "builtins.readFile (builtins.appendContext \"{fetched_path}/data.txt\" {{ \"{fetched_path}\" = {{ path = true; }}; }})"
    );
    let err = failed(&mini(&store, &work, &["eval", "--pure", "--expr", &forged]));
    assert!(err.contains("is forbidden in pure evaluation mode"), "{err}");
}
