//! The `derivation` builtin: the value it returns (compared with real
//! Nix 2.8 with store hashes masked), the `.drv` it writes, input
//! addressing, fixed outputs, and independence from the physical store.

use std::process::Command;

mod common;
use common::Scratch;

/// A scratch project holding a builder script, and stores inside.
fn project(name: &str) -> Scratch {
    let s = Scratch::new(&format!("drv-{name}"));
    s.write("builder.sh", "echo hi > $out\n");
    s
}

/// Running mini inside a project.
trait Project {
    fn eval_in(&self, store: &str, strict: bool, expr: &str) -> String;
    fn eval(&self, expr: &str) -> String;
    fn instantiate(&self, expr: &str) -> Vec<String>;
}

impl Project for Scratch {
    fn eval_in(&self, store: &str, strict: bool, expr: &str) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mini"));
        cmd.arg("--store").arg(self.0.join(store)).arg("eval");
        if strict {
            cmd.arg("--strict");
        }
        let out = cmd.args(["--expr", expr]).current_dir(&self.0).output().expect("run mini");
        assert!(out.status.success(), "{expr}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    fn eval(&self, expr: &str) -> String {
        self.eval_in("store", true, expr)
    }

    /// `mini instantiate --expr`: the .drv paths it prints, one per line.
    fn instantiate(&self, expr: &str) -> Vec<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(self.0.join("store"))
            .args(["instantiate", "--expr", expr])
            .current_dir(&self.0)
            .output()
            .expect("run mini");
        assert!(out.status.success(), "{expr}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }
}

/// Replaces `/nix/store/<hash>-` and `/mini/store/<hash>-` with `STORE/`.
fn mask_store_paths(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/store/") {
        let (before, after) = rest.split_at(i);
        let dir_start = before.rfind('/').unwrap_or(0);
        let dir = &before[dir_start..];
        let hash = after.get(7..39).unwrap_or("");
        if (dir == "/nix" || dir == "/mini") && hash.len() == 32 && after.as_bytes().get(39) == Some(&b'-') {
            out.push_str(&before[..dir_start]);
            out.push_str("STORE/");
            rest = &after[40..];
        } else {
            out.push_str(&rest[..i + 7]);
            rest = &rest[i + 7..];
        }
    }
    out.push_str(rest);
    out
}

const SIMPLE: &str = r#"derivation { name = "hello"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo hi" ]; outputs = [ "out" "dev" ]; }"#;

fn nix_eval(strict: bool, expr: &str) -> Option<String> {
    let mut cmd = Command::new("nix-instantiate");
    cmd.args(["--eval", "--readonly-mode", "--option", "substituters", ""]);
    if strict {
        cmd.arg("--strict");
    }
    match cmd.args(["--expr", expr]).env("NIX_PATH", "").output() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).trim_end().to_string()),
        Ok(out) => panic!("nix-instantiate failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("nix-instantiate is required when CI=true"),
        Err(_) => None,
    }
}

#[test]
fn the_value_has_the_shape_nix_gives_it() {
    let s = project("shape");
    for strict in [true, false] {
        let mini = s.eval_in("store", strict, SIMPLE);
        let Some(nix) = nix_eval(strict, SIMPLE) else { return };
        assert_eq!(mask_store_paths(&mini), mask_store_paths(&nix), "strict = {strict}");
    }
}

#[test]
fn paths_do_not_depend_on_the_physical_store() {
    let s = project("roots");
    let expr = format!("[ ({SIMPLE}).drvPath ({SIMPLE}).outPath ({SIMPLE}).dev.outPath ]");
    assert_eq!(s.eval_in("one", true, &expr), s.eval_in("elsewhere/two", true, &expr));
}

#[test]
fn inputs_come_from_string_context() {
    let s = project("inputs");
    let expr = r#"
      let
        a = derivation { name = "a"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ ./builder.sh ]; outputs = [ "out" "dev" ]; };
        b = derivation { name = "b"; system = "x86_64-linux"; builder = "/bin/sh"; deps = [ a a.dev ]; };
      in [ b a ]"#;
    let paths = s.instantiate(expr);
    let (b_drv, a_drv) = (paths[0].as_str(), paths[1].as_str());
    let src = s.eval(r#""${./builder.sh}""#);
    let src = src.trim_matches('"');
    let drv_file = s.0.join("store/store").join(b_drv.trim_start_matches("/mini/store/"));
    let json = std::fs::read_to_string(drv_file).unwrap();
    assert!(json.contains(&format!("\"inputDrvs\":{{\"{a_drv}\":[\"dev\",\"out\"]}}")), "{json}");
    assert!(json.contains("\"inputSrcs\":[]"), "{json}");
    let a_json =
        std::fs::read_to_string(s.0.join("store/store").join(a_drv.trim_start_matches("/mini/store/"))).unwrap();
    assert!(a_json.contains(&format!("\"inputSrcs\":[\"{src}\"]")), "{a_json}");
}

#[test]
fn a_changed_recipe_changes_the_output_unless_the_output_is_fixed() {
    let s = project("fixed");
    let out = |builder: &str, fixed: bool| {
        let hash = if fixed { r#"outputHash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";"# } else { "" };
        let fetch = format!(r#"derivation {{ name = "src"; system = "x86_64-linux"; builder = "{builder}"; {hash} }}"#);
        s.eval(&format!(
            r#"let src = {fetch}; app = derivation {{ name = "app"; system = "x86_64-linux"; builder = "/bin/sh"; inherit src; }}; in [ src.outPath app.outPath ]"#
        ))
    };
    assert_ne!(out("/bin/curl", false), out("/bin/wget", false));
    assert_eq!(out("/bin/curl", true), out("/bin/wget", true));
}

#[test]
fn bad_derivations_are_clear_errors() {
    let s = project("errors");
    for (expr, phrase) in [
        (r#"(derivation { system = "x"; builder = "/bin/sh"; }).outPath"#, "attribute 'name' missing"),
        (r#"(derivation { name = "a b"; system = "x"; builder = "/bin/sh"; }).outPath"#, "forbidden character ' '"),
        (
            r#"(derivation { name = "a"; system = "x"; builder = "/bin/sh"; outputHash = "abc"; }).outPath"#,
            "invalid sha256 hash 'abc'",
        ),
        (
            r#"builtins.toFile "f" "${(derivation { name = "a"; system = "x"; builder = "/bin/sh"; }).outPath}""#,
            "cannot refer to derivation outputs",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(s.0.join("store"))
            .args(["eval", "--strict", "--expr", expr])
            .output()
            .expect("run mini");
        assert_eq!(out.status.code(), Some(1), "{expr}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(phrase), "{expr}: expected {phrase:?} in {err}");
    }
}

#[test]
fn derivation_show_prints_the_derivation_and_its_inputs() {
    let s = project("show");
    let paths = s.instantiate(
        r#"let a = derivation { name = "a"; system = "x86_64-linux"; builder = "/bin/sh"; };
               b = derivation { name = "b"; system = "x86_64-linux"; builder = "/bin/sh"; dep = a; };
           in [ b a ]"#,
    );
    let show = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mini"))
            .arg("--store")
            .arg(s.0.join("store"))
            .args(["derivation", "show"])
            .args(args)
            .output()
            .expect("run mini")
    };
    let alone = String::from_utf8_lossy(&show(&[&paths[0]]).stdout).to_string();
    assert!(
        alone.starts_with(&format!("{{\"{}\":{{\"args\":[]", paths[0]))
            && !alone.contains(&format!("\"{}\":{{", paths[1])),
        "{alone}"
    );
    let recursive = String::from_utf8_lossy(&show(&["-r", &paths[0]]).stdout).to_string();
    assert!(recursive.contains(&format!("\"{}\":{{", paths[1])), "{recursive}");
    let not_drv = show(&["/mini/store/00000000000000000000000000000000-x"]);
    assert_eq!(not_drv.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_drv.stderr).contains("is not a derivation"));
}

#[test]
fn eval_computes_derivations_without_writing_them() {
    let s = project("nowrite");
    let drv = s.eval(&format!("({SIMPLE}).drvPath"));
    let drv = drv.trim_matches('"');
    let physical = s.0.join("store/store").join(drv.trim_start_matches("/mini/store/"));
    assert!(!physical.exists());
    assert_eq!(s.instantiate(SIMPLE), vec![drv.to_string()]);
    assert!(physical.exists());
}
