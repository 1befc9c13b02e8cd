//! Differential tests: every case under `tests/lang/` was evaluated by real
//! Nix 2.8 (`tests/lang/check-nix.sh` regenerates and re-checks them), and
//! `mini eval` must print exactly the same bytes, or fail with the same kind
//! of error and exit code 1.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lang").join(dir);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "nixlike"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", root.display());
    cases
}

fn mini(case: &Path, flags: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("eval")
        .args(flags)
        .arg(case.file_name().expect("case file name"))
        .current_dir(case.parent().expect("case directory"))
        .env_remove("MINI_TEST_UNSET_VAR")
        .env_remove("NIX_PATH")
        .output()
        .expect("run mini")
}

/// Runs every case of `dir` with `flags`, comparing stdout with `.exp`.
fn check_outputs(dir: &str, flags: &[&str]) {
    let mut failures = Vec::new();
    let cases = corpus(dir);
    for case in &cases {
        let expected = std::fs::read_to_string(case.with_extension("exp")).expect("golden .exp file");
        let out = mini(case, flags);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || stdout != expected {
            failures.push(format!(
                "{}:\n  expected: {expected:?}\n  got:      {stdout:?}\n  stderr:   {}",
                case.display(),
                String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Nix:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn strict_values_print_as_nix_prints_them() {
    check_outputs("eval", &["--strict"]);
}

#[test]
fn lazy_values_print_as_nix_prints_them() {
    check_outputs("lazy", &[]);
}

#[test]
fn json_output_matches_nix() {
    check_outputs("json", &["--strict", "--json"]);
}

#[test]
fn failures_exit_1_with_the_same_kind_of_error() {
    let mut failures = Vec::new();
    let cases = corpus("fail");
    for case in &cases {
        let phrase = std::fs::read_to_string(case.with_extension("err")).expect("golden .err file");
        let phrase = phrase.trim_end();
        let out = mini(case, &["--strict"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) || !stderr.contains(phrase) || stderr.contains("panicked") {
            failures.push(format!(
                "{}: expected exit 1 and {phrase:?}, got {:?}: {}",
                case.display(),
                out.status.code(),
                stderr.lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failure cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
