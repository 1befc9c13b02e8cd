//! `mini eval` for the parts of the language that touch the machine, which
//! the Nix golden corpus (run against a dummy store) cannot compare: error
//! positions in the user's files, the search path (`-I`, `$NIX_PATH`),
//! `storePath`, `filterSource` and the fixed-output form of `builtins.path`.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{failed, ok, Scratch};

/// `mini --store <scratch>/store eval ARGS…` in the scratch dir, with no
/// `NIX_PATH` of the caller's unless `nix_path` gives one.
fn eval(s: &Scratch, args: &[&str], nix_path: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mini"));
    cmd.arg("--store").arg(s.0.join("store")).arg("eval").args(args).current_dir(&s.0).env_remove("NIX_PATH");
    if let Some(p) = nix_path {
        cmd.env("NIX_PATH", p);
    }
    cmd.output().expect("run mini")
}

#[test]
fn an_error_inside_a_plain_set_points_at_the_users_file() {
    let s = Scratch::new("set-error-position");
    s.write("main.nixlike", "{\n  a = {\n    b = throw \"boom\";\n  };\n}\n");
    let err = failed(&eval(&s, &["--strict", "main.nixlike"], None));
    assert!(err.contains("main.nixlike:3:15"), "{err}");
    assert!(err.contains("while evaluating the attribute 'b' at ") && err.contains("main.nixlike:3:5"), "{err}");
    assert!(!err.contains("«derivation»:1:1"), "{err}");
}

#[test]
fn a_derivation_attributes_problem_is_reported_where_it_is_written() {
    let s = Scratch::new("derivation-attribute-position");
    for (attribute, message) in
        [("outputHash = \"\";", "outputHash is empty"), ("args = [ { } ];", "cannot coerce a set to a string")]
    {
        s.write(
            "main.nixlike",
            &format!("derivation {{\n  name = \"a\";\n  system = \"x\";\n  builder = \"/b\";\n  {attribute}\n}}\n"),
        );
        let err = failed(&eval(&s, &["--strict", "main.nixlike"], None));
        assert!(err.contains(message), "{err}");
        assert!(err.contains("main.nixlike:5:3"), "{err}");
    }
}

#[test]
fn angle_brackets_search_dash_i_then_nix_path() {
    let s = Scratch::new("search-path");
    s.write("first/lib/default.nix", "\"first\"");
    s.write("second/lib/default.nix", "\"second\"");
    s.write("second/other.nix", "\"other\"");
    let first = s.0.join("first");
    let second = s.0.join("second");
    let include = format!("lib={}/lib", first.display());
    // -I comes before NIX_PATH; a plain NIX_PATH entry serves any name.
    let nix_path = format!("lib={}/lib:{}", second.display(), second.display());
    let out =
        eval(&s, &["-I", &include, "--expr", "[ (import <lib>) (import <other.nix>) ]", "--strict"], Some(&nix_path));
    assert_eq!(ok(&out), "[ \"first\" \"other\" ]");
    let out = eval(&s, &["--expr", "import <lib>"], Some(&nix_path));
    assert_eq!(ok(&out), "\"second\"");
    let out = eval(&s, &["--strict", "--expr", "builtins.nixPath"], Some(&format!("x={}", first.display())));
    assert_eq!(ok(&out), format!("[ {{ path = \"{}\"; prefix = \"x\"; }} ]", first.display()));
    let err = failed(&eval(&s, &["--expr", "<nothing-here>"], None));
    assert!(err.contains("file 'nothing-here' was not found in the Nix search path (add it using $NIX_PATH or -I)"));
    // Pure evaluation has no search path.
    let err = failed(&eval(&s, &["--pure", "-I", &include, "--expr", "<lib>"], None));
    assert!(err.contains("cannot look up '<lib>' in pure evaluation mode"), "{err}");
    // Nor have flakes: -I with a flake attribute is an error, not ignored.
    let err = failed(&eval(&s, &["-I", &include, "./flake#x"], None));
    assert!(err.contains("-I does not apply to a flake attribute"), "{err}");
}

#[test]
fn store_path_names_a_valid_store_path_and_is_impure() {
    let s = Scratch::new("store-path");
    let made = ok(&eval(&s, &["--expr", "builtins.unsafeDiscardStringContext (builtins.toFile \"x\" \"y\")"], None));
    let made = made.trim_matches('"');
    let expr = format!("builtins.getContext (builtins.storePath \"{made}/sub\")");
    let out = eval(&s, &["--strict", "--expr", &expr], None);
    assert_eq!(ok(&out), format!("{{ \"{made}\" = {{ path = true; }}; }}"));
    let missing = format!(
        "builtins.storePath \"{}/00000000000000000000000000000000-gone\"",
        Path::new(made).parent().unwrap().display()
    );
    let err = failed(&eval(&s, &["--expr", &missing], None));
    assert!(err.contains("is not valid in this store"), "{err}");
    let err = failed(&eval(&s, &["--pure", "--expr", &format!("builtins.storePath \"{made}\"")], None));
    assert!(err.contains("'builtins.storePath' is not allowed in pure evaluation mode"), "{err}");
    let err = failed(&eval(&s, &["--expr", "builtins.storePath \"/tmp\""], None));
    assert!(err.contains("is not in the Nix store"), "{err}");
}

#[test]
fn filter_source_keeps_what_the_filter_accepts() {
    let s = Scratch::new("filter-source");
    s.write("src/keep.txt", "k");
    s.write("src/drop.txt", "d");
    s.write("src/sub/inner.txt", "i");
    let listing = |filter: &str| {
        let expr = format!("baseNameOf (builtins.unsafeDiscardStringContext (builtins.filterSource ({filter}) ./src))");
        let base = ok(&eval(&s, &["--expr", &expr], None)).trim_matches('"').to_string();
        assert!(base.ends_with("-src"), "{base}");
        let mut names: Vec<String> = std::fs::read_dir(s.0.join("store/store").join(&base))
            .expect("the filtered copy is in the store")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(listing("p: t: baseNameOf p != \"drop.txt\""), ["keep.txt", "sub"]);
    assert_eq!(listing("p: t: t != \"directory\""), ["drop.txt", "keep.txt"]);
}

#[test]
fn builtins_path_checks_a_pinned_sha256() {
    let s = Scratch::new("path-sha256");
    s.write("data/file.txt", "pinned contents\n");
    let wrong = "0000000000000000000000000000000000000000000000000000";
    let expr = |hash: &str| format!("builtins.path {{ path = ./data; sha256 = \"{hash}\"; }}");
    let err = failed(&eval(&s, &["--expr", &expr(wrong)], None));
    assert!(err.contains("store path mismatch in (possibly filtered) path added from"), "{err}");
    assert!(err.contains(&format!("the recipe pins sha256:{wrong}")), "{err}");
    let actual = err.split("the path has sha256:").nth(1).expect("the actual hash is named")[..52].to_string();
    let out = eval(&s, &["--expr", &expr(&actual)], None);
    assert!(ok(&out).ends_with("-data\""), "{}", ok(&out));
    // Changing the contents changes the hash, and the pin catches it.
    s.write("data/file.txt", "changed\n");
    let err = failed(&eval(&s, &["--expr", &expr(&actual)], None));
    assert!(err.contains(&format!("the recipe pins sha256:{actual}")), "{err}");
    let err = failed(&eval(&s, &["--expr", "builtins.path { path = ./data; recursive = false; }"], None));
    assert!(err.contains("'recursive = false' in 'builtins.path' is not supported"), "{err}");
}

#[test]
fn positions_of_text_given_on_the_command_line_name_it_string() {
    let s = Scratch::new("expr-positions");
    let out = eval(
        &s,
        &["--strict", "--expr", "[ __curPos.file (builtins.unsafeGetAttrPos \"a\" { a = 1; }).column ]"],
        None,
    );
    // Nix 2.8 names such text by the text itself; mini says «string», as its messages do.
    assert_eq!(ok(&out), "[ \"«string»\" 50 ]");
}

#[test]
fn a_missing_attribute_is_reported_where_the_selection_starts() {
    let s = Scratch::new("select-position");
    // Columns as Nix 2.8 gives them: the start of `s`, `(s)`, whatever the path.
    for (expr, column) in [("s.a", 25), ("(s).a", 25), ("s.x.y", 25), ("s.${\"a\"}", 25), ("s.x.y or s.q.r", 34)] {
        s.write("main.nixlike", &format!("let s = {{ x = {{}}; }}; in {expr}\n"));
        let err = failed(&eval(&s, &["main.nixlike"], None));
        assert!(err.contains(&format!("main.nixlike:1:{column}:")), "{expr}: {err}");
    }
}
