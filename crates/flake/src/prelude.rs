//! The prelude: mini's small package set, written in the language
//! (`prelude.nixlike`) so it reads like the nixpkgs functions it imitates.
//! It is compiled into the binary and evaluated once per session.

use mini_lang::builtins::store_path_value;
use mini_lang::value::{Attrs, Env, Slots, Symbol, Thunk};
use mini_lang::{EvalResult, Evaluator, Value};
use mini_store::store_path::StorePath;

/// The prelude's source text.
pub const PRELUDE: &str = include_str!("prelude.nixlike");

/// Evaluates the prelude for `system` with `busybox` (a store path, passed
/// as a string whose context names it, so derivations using it depend on it).
pub(crate) fn load(ev: &mut Evaluator, busybox: &StorePath, system: &str) -> EvalResult<Value> {
    let expr = ev.compile_source("«prelude»".into(), None, PRELUDE)?;
    let function = ev.eval(expr, &Env::new(None, Slots::Many(Box::new([]))))?;
    let args = Attrs::from_unsorted(vec![
        (Symbol::intern("busybox"), store_path_value(busybox).into()),
        (Symbol::intern("system"), Value::string(system).into()),
    ]);
    ev.call(function, Thunk::Ready(Value::attrs(args)), Default::default())
}
