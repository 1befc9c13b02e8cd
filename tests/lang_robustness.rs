//! Hostile input never crashes mini: random bytes and random token soups go
//! through the parser and evaluator, and the classic stack breakers end in a
//! clear error with exit code 1. The random cases are seeded, so a failure
//! reproduces; `MINI_FUZZ_CASES` raises the count for a longer local run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;

use mini_lang::Evaluator;

/// A small deterministic generator (xorshift64*), enough for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn cases() -> usize {
    std::env::var("MINI_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(4000)
}

/// Tokens of the language, including fragments that open strings, comments
/// and interpolations without closing them. No absolute paths: evaluation
/// must not wander into the host's files.
const TOKENS: &[&str] = &[
    "let",
    "in",
    "rec",
    "with",
    "inherit",
    "if",
    "then",
    "else",
    "assert",
    "or",
    "x",
    "y",
    "f",
    "a",
    "b",
    "0",
    "1",
    "2",
    "1.5",
    "\"s\"",
    "\"",
    "''",
    "'' x ''",
    "${",
    "}",
    "{",
    "(",
    ")",
    "[",
    "]",
    ";",
    ":",
    ",",
    ".",
    "...",
    "@",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "->",
    "//",
    "++",
    "+",
    "-",
    "*",
    "/",
    "!",
    "?",
    "./p",
    "~/p",
    "<p>",
    "http://x",
    "#c\n",
    "/*",
    "*/",
    "builtins",
    "map",
    "throw",
    "abort",
    "import",
    "toString",
    "true",
    "null",
    "__functor",
    "x: x",
    "{ a = 1; }",
    "[ 1 2 ]",
    "builtins.tryEval",
    "builtins.seq",
    "builtins.deepSeq",
    "builtins.genList",
    "builtins.foldl'",
    "builtins.sort",
    "builtins.fromJSON",
    "builtins.toJSON",
    "builtins.match",
    "builtins.split",
    "\"[\"",
    "\"(\"",
    "\"{\\\"a\\\":\"",
];

/// Parses and evaluates `src` (deeply), failing the test on a panic.
fn survive(ev_input: &str) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut ev = Evaluator::with_stack_budget(48 << 20);
        if let Ok(v) = ev.eval_text(ev_input) {
            let _ = ev.deep_force(&v, Default::default());
            let _ = mini_lang::print_value(&v);
        }
    }));
    assert!(outcome.is_ok(), "mini panicked on input {ev_input:?}");
}

/// Runs `body` on a thread with a stack as large as the CLI's.
fn on_big_stack(body: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(body)
        .expect("spawn test thread")
        .join()
        .expect("the test thread itself must not panic");
}

#[test]
fn random_bytes_never_panic() {
    on_big_stack(|| {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..cases() {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            survive(&String::from_utf8_lossy(&bytes));
        }
    });
}

#[test]
fn random_token_soups_never_panic() {
    on_big_stack(|| {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for _ in 0..cases() {
            let len = 1 + rng.below(24);
            let soup: Vec<&str> = (0..len).map(|_| TOKENS[rng.below(TOKENS.len())]).collect();
            survive(&soup.join(" "));
        }
    });
}

fn mini_eval(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mini")).arg("eval").args(args).output().expect("run mini");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_clear_failure(args: &[&str], phrase: &str) {
    let (code, stderr) = mini_eval(args);
    assert_eq!(code, Some(1), "exit code for {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(phrase), "expected {phrase:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn hundred_thousand_nested_brackets_is_an_error() {
    let dir = std::env::temp_dir().join(format!("mini-deep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let brackets = dir.join("brackets.nixlike");
    std::fs::write(&brackets, "[".repeat(100_000)).expect("write deep file");
    assert_clear_failure(&[brackets.to_str().expect("utf-8 path")], "nested too deeply");
    let parens = dir.join("parens.nixlike");
    std::fs::write(&parens, format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000))).expect("write deep file");
    assert_clear_failure(&[parens.to_str().expect("utf-8 path")], "nested too deeply");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn million_deep_recursion_is_an_error() {
    assert_clear_failure(&["--expr", "let f = n: if n == 0 then 0 else 1 + f (n - 1); in f 1000000"], "stack overflow");
}

#[test]
fn self_reference_is_infinite_recursion() {
    assert_clear_failure(&["--expr", "let x = x; in x"], "infinite recursion encountered");
    assert_clear_failure(&["--strict", "--expr", "rec { a = b; b = a; }"], "infinite recursion encountered");
}

#[test]
fn deep_but_finite_recursion_succeeds() {
    let out = Command::new(env!("CARGO_BIN_EXE_mini"))
        .args(["eval", "--expr", "let f = n: if n == 0 then 0 else 1 + f (n - 1); in f 50000"])
        .output()
        .expect("run mini");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "50000\n");
}
