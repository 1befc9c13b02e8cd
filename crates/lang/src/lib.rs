//! mini's language: a parser and lazy evaluator for the Nix expression
//! language, printing values exactly as Nix 2.8 does.
//!
//! Data flows `source → syntax (tokens, Ast) → compile (scoped Expr) →
//! eval (Value, lazily) → print`. Nothing here knows about the store, builds
//! or images.

pub mod builtins;
pub mod compile;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod print;
pub mod source;
pub mod string;
pub mod syntax;
pub mod value;

pub use error::{ErrorKind, EvalError, EvalResult};
pub use eval::{parse_search_path_entry, split_search_path, Evaluator};
pub use fetch::Fetcher;
pub use value::Value;

/// Stack given to evaluation threads. Deep but finite: runaway recursion
/// ends in a clear "stack overflow" error well before this is used up.
pub const EVAL_STACK_SIZE: usize = 512 << 20;

/// Runs `f` on a fresh thread with [`EVAL_STACK_SIZE`] of stack, handing it
/// an evaluator whose stack checks match that thread.
pub fn with_evaluator<T: Send + 'static>(f: impl FnOnce(&mut Evaluator) -> T + Send + 'static) -> std::io::Result<T> {
    let handle = std::thread::Builder::new().name("eval".into()).stack_size(EVAL_STACK_SIZE).spawn(move || {
        let mut ev = Evaluator::with_stack_budget(EVAL_STACK_SIZE - (256 << 10));
        let result = f(&mut ev);
        // Values can form long chains; dropping them recursively could use
        // more stack than evaluating did, and the process is about to end.
        std::mem::forget(ev);
        result
    })?;
    handle.join().map_err(|_| std::io::Error::other("the evaluation thread panicked"))
}
