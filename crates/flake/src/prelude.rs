//! The prelude: mini's small package set, written in the language
//! (`prelude.nixlike`) so it reads like the nixpkgs functions it imitates.
//! It is compiled into the binary and evaluated once per session.

use std::collections::BTreeMap;

use mini_lang::builtins::store_path_value;
use mini_lang::value::{Attrs, Env, Slots, Symbol, Thunk};
use mini_lang::{EvalResult, Evaluator, Value};
use mini_store::store_path::StorePath;

/// The prelude's source text.
pub const PRELUDE: &str = include_str!("prelude.nixlike");

/// Evaluates the prelude for `system` with `busybox` (a store path, passed
/// as a string whose context names it, so derivations using it depend on
/// it) and the labels `dockerTools` gives every image (see
/// [`crate::flake::provenance_labels`]).
pub(crate) fn load(
    ev: &mut Evaluator,
    busybox: &StorePath,
    system: &str,
    image_labels: &BTreeMap<String, String>,
) -> EvalResult<Value> {
    let expr = ev.compile_source("«prelude»".into(), None, PRELUDE)?;
    let function = ev.eval(expr, &Env::new(None, Slots::Many(Box::new([]))))?;
    let mut args: Vec<(Symbol, Thunk)> = vec![
        (Symbol::intern("busybox"), store_path_value(busybox).into()),
        (Symbol::intern("system"), Value::string(system).into()),
    ];
    if !image_labels.is_empty() {
        let labels = image_labels.iter().map(|(k, v)| (Symbol::intern(k), Value::string(v.as_str()).into()));
        args.push((Symbol::intern("imageLabels"), Value::attrs(Attrs::from_unsorted(labels.collect())).into()));
    }
    let args = Attrs::from_unsorted(args);
    ev.call(function, Thunk::Ready(Value::attrs(args)), Default::default())
}
