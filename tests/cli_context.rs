//! Sources entering the store from the language: interpolated paths,
//! `builtins.toFile` and `builtins.path`, the string context they carry,
//! and `why-depends` over the references that context creates.

use std::process::{Command, Output};

mod common;
use common::Scratch;

/// A scratch project with a source tree and a note, and a store inside.
fn project(name: &str) -> Scratch {
    let s = Scratch::new(&format!("ctx-{name}"));
    s.write("src/keep", "kept\n");
    s.write("src/skip", "skipped\n");
    s.write("src/sub/deep", "deep\n");
    s.write("note.txt", "hello\n");
    s
}

/// Running mini inside a project, on the project's store.
trait Project {
    fn mini(&self, args: &[&str]) -> Output;
    fn eval(&self, expr: &str) -> String;
}

impl Project for Scratch {
    fn mini(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(self.0.join("store"))
            .args(args)
            .current_dir(&self.0)
            .output()
            .expect("run mini")
    }

    fn eval(&self, expr: &str) -> String {
        let out = self.mini(&["eval", "--strict", "--expr", expr]);
        assert!(out.status.success(), "{expr}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

#[test]
fn interpolating_a_path_adds_it_like_store_add() {
    let s = project("interp");
    let from_eval = unquote(&s.eval(r#""${./note.txt}""#));
    let out = s.mini(&["store", "add", "note.txt"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), from_eval);
    assert!(from_eval.starts_with("/mini/store/") && from_eval.ends_with("-note.txt"));
    assert_eq!(s.eval(r#"builtins.hasContext "${./note.txt}""#), "true");
    assert_eq!(s.eval(r#"builtins.hasContext (builtins.unsafeDiscardStringContext "${./note.txt}")"#), "false");
    assert_eq!(s.eval(r#"builtins.hasContext "plain""#), "false");
    assert_eq!(
        s.eval(r#"builtins.getContext "x${./note.txt}y""#),
        format!("{{ \"{from_eval}\" = {{ path = true; }}; }}")
    );
}

#[test]
fn to_file_records_references_from_context() {
    let s = project("tofile");
    let note = unquote(&s.eval(r#""${./note.txt}""#));
    let script = unquote(&s.eval(r#"builtins.toFile "run.sh" "cat ${./note.txt}""#));
    let closure = s.mini(&["path-info", "-r", &script]);
    let closure = String::from_utf8_lossy(&closure.stdout).to_string();
    assert!(closure.contains(&note) && closure.contains(&script), "{closure}");
    let why = s.mini(&["why-depends", &script, &note]);
    let why = String::from_utf8_lossy(&why.stdout).to_string();
    assert!(why.contains(&format!("└───{note}")) && why.contains(&format!("cat {note}")), "{why}");
    // Text without context refers to nothing, even if it names a path.
    let plain = unquote(&s.eval(&format!(r#"builtins.toFile "plain" "cat {note}""#)));
    let info = s.mini(&["path-info", "-r", &plain]);
    assert_eq!(String::from_utf8_lossy(&info.stdout).trim_end(), plain);
}

#[test]
fn builtins_path_filters_and_names() {
    let s = project("path");
    let p =
        unquote(&s.eval(r#"builtins.path { path = ./src; name = "site"; filter = p: t: baseNameOf p != "skip"; }"#));
    assert!(p.ends_with("-site"), "{p}");
    let physical = s.0.join("store/store").join(p.trim_start_matches("/mini/store/"));
    assert!(physical.join("keep").exists() && physical.join("sub/deep").exists());
    assert!(!physical.join("skip").exists());
    let unfiltered = unquote(&s.eval(r#"builtins.path { path = ./src; name = "site"; }"#));
    assert_ne!(p, unfiltered);
}

#[test]
fn store_paths_cannot_be_appended_to_paths() {
    let s = project("append");
    let out = s.mini(&["eval", "--expr", r#"./a + "${./note.txt}""#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("a string that refers to a store path cannot be appended to a path"));
}

#[test]
fn to_json_keeps_the_context_of_the_strings_inside() {
    let s = project("tojson");
    let note = unquote(&s.eval(r#""${./note.txt}""#));
    assert_eq!(
        s.eval(r#"builtins.getContext (builtins.toJSON { cmd = [ "${./note.txt}" ]; n = 1; })"#),
        format!("{{ \"{note}\" = {{ path = true; }}; }}")
    );
    assert_eq!(s.eval(r#"builtins.hasContext (builtins.toJSON { a = "plain"; })"#), "false");
}

#[test]
fn why_depends_speaks_json_too() {
    let s = project("why-json");
    let note = unquote(&s.eval(r#""${./note.txt}""#));
    let script = unquote(&s.eval(r#"builtins.toFile "run.sh" "cat ${./note.txt}""#));
    let out = s.mini(&["why-depends", "--json", &script, &note]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chain: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(chain[0]["path"], script.as_str());
    assert_eq!(chain[1]["path"], note.as_str());
    assert_eq!(chain[0]["nextFoundIn"][0]["file"], "(the file itself)");
    // "cat /mini/store/": the hash starts 16 bytes in.
    assert_eq!(chain[0]["nextFoundIn"][0]["offset"], 16);
}
