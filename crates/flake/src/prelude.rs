//! The prelude: mini's small package set, written in the language
//! (`prelude/*.nixlike`) so it reads like the nixpkgs functions it imitates.
//! It is compiled into the binary and evaluated once per session: one file
//! per part (lib, trivial builders, fetchers, stdenv, toolchains, images),
//! joined by `prelude/default.nixlike` into one lazy package set.

use std::collections::BTreeMap;

use mini_lang::{store_path_value, EvalResult, Evaluator, Thunk, Value};
use mini_store::store_path::StorePath;

/// The prelude's files: `default` first, which joins the parts that follow.
pub const PRELUDE: &[(&str, &str)] = &[
    ("default", include_str!("prelude/default.nixlike")),
    ("lib", include_str!("prelude/lib.nixlike")),
    ("trivial", include_str!("prelude/trivial.nixlike")),
    ("fetchers", include_str!("prelude/fetchers.nixlike")),
    ("stdenv", include_str!("prelude/stdenv.nixlike")),
    ("cc", include_str!("prelude/cc.nixlike")),
    ("go", include_str!("prelude/go.nixlike")),
    ("debian", include_str!("prelude/debian.nixlike")),
    ("docker", include_str!("prelude/docker.nixlike")),
];

/// The source of the `strip` that `pkgs.zig.cc` builds (zig's objcopy
/// cannot strip ELF files); the prelude receives it as `stripSource`.
const STRIP_SOURCE: &str = include_str!("prelude/strip.c");

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
    let mut function = None;
    let mut parts = Vec::new();
    for (name, source) in PRELUDE {
        let value = ev.eval_source(&format!("«prelude/{name}»"), source)?;
        match function {
            None => function = Some(value),
            Some(_) => parts.push((*name, Thunk::from(value))),
        }
    }
    let function = function.expect("the prelude has its default file");
    let mut args: Vec<(&str, Thunk)> = vec![
        ("parts", Value::attr_set(parts).into()),
        ("stripSource", Value::string(STRIP_SOURCE).into()),
        ("busybox", store_path_value(busybox).into()),
        ("system", Value::string(system).into()),
    ];
    if !image_labels.is_empty() {
        let labels = image_labels.iter().map(|(k, v)| (k, Value::string(v.as_str()).into()));
        args.push(("imageLabels", Value::attr_set(labels).into()));
    }
    ev.call(function, Value::attr_set(args).into(), Default::default())
}
