//! `mini eval` end to end: files, `--expr`, `--json`, imports that Nix does
//! not have (`dir/default.nixlike`), purity, and the shape of error messages.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::Scratch;

fn mini(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini")).args(args).current_dir(dir).output().expect("run mini")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn imports_directories_nixlike_and_nix_files() {
    let s = Scratch::new("imports");
    s.write("lib/default.nixlike", "{ twice = x: x * 2; }");
    s.write("other.nix", "import ./lib");
    s.write("main.nixlike", "let lib = import ./other.nix; in lib.twice 21");
    let out = mini(&s.0, &["eval", "main.nixlike"]);
    assert_eq!(stdout(&out), "42\n", "{}", stderr(&out));
}

#[test]
fn import_is_cached_per_file() {
    let s = Scratch::new("cache");
    s.write("noisy.nixlike", "builtins.trace \"loaded\" 1");
    s.write("main.nixlike", "import ./noisy.nixlike + import ./noisy.nixlike");
    let out = mini(&s.0, &["eval", "main.nixlike"]);
    assert_eq!(stdout(&out), "2\n");
    assert_eq!(stderr(&out).matches("trace: loaded").count(), 1, "{}", stderr(&out));
}

#[test]
fn expr_and_json_output() {
    let s = Scratch::new("json");
    let out = mini(&s.0, &["eval", "--json", "--expr", "{ b = [ 1 2.5 \"x\\n\" ]; a = null; }"]);
    assert_eq!(stdout(&out), r#"{"a":null,"b":[1,2.5,"x\n"]}"#);
    let out = mini(&s.0, &["eval", "--strict", "--expr", "{ b = { c = 1; }; a = [ ]; }"]);
    assert_eq!(stdout(&out), "{ a = [ ]; b = { c = 1; }; }\n");
    let out = mini(&s.0, &["eval", "--expr", "{ b = { c = 1; }; }"]);
    // Not strict: nested values stay unevaluated, printed as Nix does.
    assert_eq!(stdout(&out), "{ b = <CODE>; }\n");
}

#[test]
fn pure_evaluation_hides_the_environment() {
    let s = Scratch::new("pure");
    let expr = "builtins.getEnv \"MINI_CLI_TEST_VALUE\"";
    let impure = Command::new(env!("CARGO_BIN_EXE_mini"))
        .args(["eval", "--expr", expr])
        .env("MINI_CLI_TEST_VALUE", "secret")
        .current_dir(&s.0)
        .output()
        .expect("run mini");
    assert_eq!(stdout(&impure), "\"secret\"\n");
    let pure = Command::new(env!("CARGO_BIN_EXE_mini"))
        .args(["eval", "--pure", "--expr", expr])
        .env("MINI_CLI_TEST_VALUE", "secret")
        .current_dir(&s.0)
        .output()
        .expect("run mini");
    assert_eq!(stdout(&pure), "\"\"\n");
}

#[test]
fn pure_evaluation_reads_only_under_the_file_s_directory() {
    let s = Scratch::new("pure-files");
    s.write("outside.nixlike", "42");
    s.write("project/inside.nixlike", "7");
    s.write("project/main.nixlike", "import ./inside.nixlike + import ../outside.nixlike");
    let impure = mini(&s.0, &["eval", "project/main.nixlike"]);
    assert_eq!(stdout(&impure), "49\n");
    let pure = mini(&s.0, &["eval", "--pure", "project/main.nixlike"]);
    assert_eq!(pure.status.code(), Some(1));
    let err = stderr(&pure);
    assert!(err.contains("outside.nixlike") && err.contains("forbidden in pure evaluation mode"), "{err}");
    assert!(err.contains("main.nixlike:1:"), "{err}");
}

#[test]
fn errors_name_file_line_column_and_show_the_line() {
    let s = Scratch::new("errors");
    s.write("bad.nixlike", "let\n  a = 1;\n  f = x: x + b;\nin f a\n");
    let out = mini(&s.0, &["eval", "bad.nixlike"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: undefined variable 'b'\n"), "{err}");
    assert!(err.contains("bad.nixlike:3:14"), "{err}");
    assert!(err.contains("3|   f = x: x + b;"), "{err}");
    assert!(err.contains("|              ^"), "{err}");
}

#[test]
fn evaluation_errors_carry_a_trace() {
    let s = Scratch::new("trace");
    s.write("t.nixlike", "let\n  f = x: x.missing;\n  g = y: f y;\nin g { a = 1; }\n");
    let out = mini(&s.0, &["eval", "t.nixlike"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: attribute 'missing' missing"), "{err}");
    assert!(err.contains("while calling function 'f' at "), "{err}");
    assert!(err.contains("while calling function 'g' at "), "{err}");
}

#[test]
fn syntax_errors_say_what_was_expected() {
    let s = Scratch::new("syntax");
    let out = mini(&s.0, &["eval", "--expr", "{ a = 1 }"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("syntax error, unexpected '}', expecting ';'"), "{err}");
    assert!(err.contains("«string»:1:9"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let s = Scratch::new("missing");
    let out = mini(&s.0, &["eval", "nope.nixlike"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.nixlike': No such file or directory"), "{}", stderr(&out));
}

#[test]
fn the_readme_example_evaluates_as_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = mini(root, &["eval", "--strict", "examples/lang/packages.nixlike"]);
    assert_eq!(
        stdout(&out),
        "{ helloDependsOn = [ \"greeting-1.1\" ]; packages = [ \"greeting-1.1\" \"hello-2.12\" ]; }\n"
    );
}

#[test]
fn a_thunk_is_evaluated_at_most_once() {
    let s = Scratch::new("once");
    let out = mini(&s.0, &["eval", "--expr", "let x = builtins.trace \"forced\" 21; in x + x"]);
    assert_eq!(stdout(&out), "42\n");
    assert_eq!(stderr(&out).matches("trace: forced").count(), 1, "{}", stderr(&out));
}

#[test]
fn try_eval_catches_throw_and_assert_but_not_abort() {
    let s = Scratch::new("tryeval");
    let caught = "map (e: (builtins.tryEval e).success) [ (throw \"t\") (assert false; 1) 2 ]";
    let out = mini(&s.0, &["eval", "--strict", "--expr", caught]);
    assert_eq!(stdout(&out), "[ false false true ]\n", "{}", stderr(&out));
    let out = mini(&s.0, &["eval", "--expr", "builtins.tryEval (abort \"stop\")"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("evaluation aborted with the following error message: 'stop'"), "{}", stderr(&out));
}

/// The subcommands `mini ARGS… --help` lists under `Commands:` (but `help`).
fn subcommands(args: &[&str]) -> Vec<String> {
    let help = stdout(&mini(Path::new("."), &[args, &["--help"]].concat()));
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn help_documents_exit_codes_and_every_subcommand_has_examples() {
    let out = mini(Path::new("."), &["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    assert!(help.contains("Exit status:\n  0  success\n  1  failure"), "{help}");
    assert!(help.contains("2  usage error"), "{help}");
    let mut todo: Vec<Vec<String>> = subcommands(&[]).into_iter().map(|c| vec![c]).collect();
    assert!(todo.len() >= 15, "{todo:?}");
    while let Some(names) = todo.pop() {
        let args: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = mini(Path::new("."), &[&args[..], &["--help"]].concat());
        assert!(out.status.success(), "mini {names:?} --help: {}", stderr(&out));
        let help = stdout(&out);
        assert!(help.contains("\nExamples:\n  mini "), "mini {} --help has no examples:\n{help}", names.join(" "));
        todo.extend(subcommands(&args).into_iter().map(|sub| [names.clone(), vec![sub]].concat()));
    }
}

#[test]
fn usage_errors_exit_with_2_and_failures_with_1() {
    let s = Scratch::new("exit-codes");
    for args in [&["frobnicate"][..], &["build"], &["eval", "--no-such-flag", "x"], &["graph", "--format", "png", "."]]
    {
        let out = mini(&s.0, args);
        assert_eq!(out.status.code(), Some(2), "mini {args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    }
    let out = mini(&s.0, &["eval", "--expr", "throw \"no\""]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn no_color_turns_colors_off() {
    let s = Scratch::new("no-color");
    let run = |no_color: Option<&str>, args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mini"));
        command.args(args).current_dir(&s.0).env("CLICOLOR_FORCE", "1").env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let out = command.output().expect("run mini");
        format!("{}{}", stdout(&out), stderr(&out))
    };
    for args in [&["--help"][..], &["build", "--help"], &["frobnicate"]] {
        // Forced colors show that the check would see them.
        assert!(run(None, args).contains("\x1b["), "no colors to turn off for {args:?}");
        assert!(run(Some(""), args).contains("\x1b["), "an empty NO_COLOR is unset");
        let plain = run(Some("1"), args);
        assert!(!plain.contains('\x1b'), "{args:?} with NO_COLOR: {plain:?}");
    }
}

#[test]
fn completions_are_scripts_for_the_shell() {
    let s = Scratch::new("completions");
    let bash = mini(&s.0, &["completions", "bash"]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    let script = stdout(&bash);
    assert!(script.contains("_mini()") && script.contains("complete -F _mini"), "{script}");
    for command in ["graph", "doctor", "path-info", "completions"] {
        assert!(script.contains(command), "no {command} in the bash completions");
    }
    assert!(!script.contains("__mini-"), "a hidden helper is completed");
    for shell in ["zsh", "fish"] {
        let out = mini(&s.0, &["completions", shell]);
        assert!(out.status.success() && stdout(&out).contains("mini"), "{shell}: {}", stderr(&out));
    }
    assert_eq!(mini(&s.0, &["completions", "tcsh"]).status.code(), Some(2));
}

/// The store is opened when evaluation first puts something in it, and not
/// at all when nothing needs it.
#[test]
fn an_evaluation_opens_the_store_only_when_it_needs_it() {
    let s = Scratch::new("eval-store");
    let store = s.0.join("store");
    let eval = |command: &str, expr: &str| {
        Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(&store)
            .args([command, "--expr", expr])
            .current_dir(&s.0)
            .output()
            .expect("run mini")
    };
    let pure = eval("eval", "1 + 1");
    assert_eq!((stdout(&pure).as_str(), pure.status.success()), ("2\n", true), "{}", stderr(&pure));
    assert!(!store.exists(), "evaluating 1 + 1 made a store");
    let two = "[ (derivation { name = \"a\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }) \
               (derivation { name = \"b\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; }) ]";
    let made = eval("instantiate", two);
    assert!(made.status.success(), "{}", stderr(&made));
    assert_eq!(stdout(&made).lines().count(), 2, "{}", stdout(&made));
    assert!(store.join("store").is_dir(), "the .drvs had no store to go to");
}
