//! mini's language: a parser and lazy evaluator for the Nix expression
//! language, printing values exactly as Nix 2.8 does.
//!
//! Data flows `source_map (files, spans) → syntax (tokens, Ast) → compile
//! (scoped Expr) → eval (Value, lazily) → print`; `primops` are the
//! built-in functions (the language's `builtins`).
//!
//! Of the store, the language knows what evaluation puts there and reads
//! back, through the handle its caller gives it ([`Evaluator::set_store`]),
//! or opened once when first needed if it was only named
//! ([`Evaluator::set_store_root`], for `mini eval`): store paths and their string context, sources
//! copied in (`"${./src}"`, `builtins.path`), `toFile` texts, fetched
//! trees, and the `.drv` files of the derivations it makes. It knows
//! nothing of builds, images or flakes.
//!
//! The public API is what follows: the evaluator and its values, errors,
//! printing, the fetcher a caller plugs in, and the few helpers other
//! crates need. Everything else is private to this crate.

mod compile;
mod error;
mod eval;
mod fetch;
mod instantiate;
mod primops;
mod print;
mod source_map;
mod string;
mod syntax;
mod value;

pub use compile::canonicalize_lexically;
pub use error::{ErrorKind, EvalError, EvalResult};
pub use eval::{parse_search_path_entry, split_search_path, Evaluator, Fixpoint, SourceFilter};
pub use fetch::{set_default_fetcher, Fetcher, GitFetched, GitRequest, UrlFetched, UrlRequest};
pub use primops::{current_system, store_path_value, to_json};
pub use print::print_value;
pub use string::{ContextElem, NixStr};
pub use value::{Attrs, Thunk, Value};

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
