//! The built-in functions and constants, with Nix's names and behaviour.
//! Each primop is a plain function over evaluator thunks; this module holds
//! the table, the global scope and the argument helpers they share.

mod attrs;
mod context;
mod derivation;
mod fetch;
mod json;
mod lists;
mod misc;
mod strings;
mod toml;
mod xml;

use std::collections::HashMap;
use std::rc::Rc;

pub(crate) use attrs::position_value;
pub use context::store_path_value;
pub use json::to_json;

use crate::error::{EvalError, EvalResult};
use crate::eval::Evaluator;
use crate::source_map::Span;
use crate::string::NixStr;
use crate::value::{Attrs, Lazy, LazyCell, PrimOp, PrimOpFn, Symbol, Thunk, Value};

/// Every primop: name, arity, implementation.
const PRIMOPS: &[(&str, usize, PrimOpFn)] = &[
    ("addErrorContext", 2, misc::add_error_context),
    ("abort", 1, misc::abort),
    ("add", 2, misc::add),
    ("all", 2, lists::all),
    ("appendContext", 2, context::append_context),
    ("any", 2, lists::any),
    ("attrNames", 1, attrs::attr_names),
    ("attrValues", 1, attrs::attr_values),
    ("baseNameOf", 1, strings::base_name_of),
    ("bitAnd", 2, misc::bit_and),
    ("bitOr", 2, misc::bit_or),
    ("bitXor", 2, misc::bit_xor),
    ("catAttrs", 2, attrs::cat_attrs),
    ("ceil", 1, misc::ceil),
    ("compareVersions", 2, strings::compare_versions),
    ("concatLists", 1, lists::concat_lists),
    ("concatMap", 2, lists::concat_map),
    ("concatStringsSep", 2, strings::concat_strings_sep),
    ("deepSeq", 2, misc::deep_seq),
    ("derivationStrict", 1, derivation::derivation_strict),
    ("dirOf", 1, strings::dir_of),
    ("div", 2, misc::div),
    ("elem", 2, lists::elem),
    ("filterSource", 2, context::filter_source),
    ("findFile", 2, misc::find_file),
    ("elemAt", 2, lists::elem_at),
    ("fetchGit", 1, fetch::fetch_git),
    ("fetchTarball", 1, fetch::fetch_tarball),
    ("fetchurl", 1, fetch::fetchurl),
    ("filter", 2, lists::filter),
    ("floor", 1, misc::floor),
    ("foldl'", 3, lists::foldl),
    ("fromJSON", 1, json::from_json),
    ("fromTOML", 1, toml::from_toml),
    ("functionArgs", 1, attrs::function_args),
    ("getContext", 1, context::get_context),
    ("genList", 2, lists::gen_list),
    ("genericClosure", 1, lists::generic_closure),
    ("getAttr", 2, attrs::get_attr),
    ("getEnv", 1, misc::get_env),
    ("groupBy", 2, lists::group_by),
    ("hasAttr", 2, attrs::has_attr),
    ("hasContext", 1, context::has_context),
    ("hashFile", 2, strings::hash_file),
    ("hashString", 2, strings::hash_string),
    ("head", 1, lists::head),
    ("import", 1, misc::import),
    ("intersectAttrs", 2, attrs::intersect_attrs),
    ("isAttrs", 1, misc::is_attrs),
    ("isBool", 1, misc::is_bool),
    ("isFloat", 1, misc::is_float),
    ("isFunction", 1, misc::is_function),
    ("isInt", 1, misc::is_int),
    ("isList", 1, misc::is_list),
    ("isNull", 1, misc::is_null),
    ("isPath", 1, misc::is_path),
    ("isString", 1, misc::is_string),
    ("length", 1, lists::length),
    ("lessThan", 2, misc::less_than),
    ("listToAttrs", 1, attrs::list_to_attrs),
    ("map", 2, lists::map),
    ("mapAttrs", 2, attrs::map_attrs),
    ("match", 2, strings::regex_match),
    ("mul", 2, misc::mul),
    ("parseDrvName", 1, strings::parse_drv_name),
    ("partition", 2, lists::partition),
    ("placeholder", 1, derivation::placeholder),
    ("path", 1, context::path),
    ("pathExists", 1, misc::path_exists),
    ("readDir", 1, misc::read_dir),
    ("readFile", 1, misc::read_file),
    ("removeAttrs", 2, attrs::remove_attrs),
    ("replaceStrings", 3, strings::replace_strings),
    ("scopedImport", 2, misc::scoped_import),
    ("seq", 2, misc::seq),
    ("sort", 2, lists::sort),
    ("split", 2, strings::regex_split),
    ("splitVersion", 1, strings::split_version),
    ("storePath", 1, context::store_path),
    ("stringLength", 1, strings::string_length),
    ("sub", 2, misc::sub),
    ("substring", 3, strings::substring),
    ("tail", 1, lists::tail),
    ("throw", 1, misc::throw),
    ("toFile", 2, context::to_file),
    ("toJSON", 1, json::to_json_primop),
    ("toPath", 1, strings::to_path),
    ("toString", 1, strings::to_string),
    ("toXML", 1, xml::to_xml),
    ("trace", 2, misc::trace),
    ("tryEval", 1, misc::try_eval),
    ("typeOf", 1, misc::type_of),
    ("unsafeDiscardOutputDependency", 1, context::unsafe_discard_output_dependency),
    ("unsafeDiscardStringContext", 1, context::unsafe_discard_string_context),
    ("unsafeGetAttrPos", 2, attrs::unsafe_get_attr_pos),
    ("zipAttrsWith", 2, attrs::zip_attrs_with),
];

/// Names reachable without the `builtins.` prefix, as in Nix.
const UNPREFIXED: &[&str] = &[
    "abort",
    "baseNameOf",
    "derivationStrict",
    "dirOf",
    "fetchGit",
    "fetchTarball",
    "fromTOML",
    "import",
    "isNull",
    "map",
    "placeholder",
    "removeAttrs",
    "scopedImport",
    "throw",
    "toString",
];

pub use derivation::DERIVATION_NIX;

/// The system mini evaluates for, in Nix's spelling.
pub fn current_system() -> String {
    format!("{}-linux", std::env::consts::ARCH)
}

/// The global scope: constants, unprefixed builtins, `__name` aliases and `builtins`.
pub fn globals() -> HashMap<Symbol, Value> {
    let mut builtins: Vec<(Symbol, Thunk)> = Vec::new();
    let mut globals = HashMap::new();
    for &(name, arity, func) in PRIMOPS {
        let op: &'static PrimOp = Box::leak(Box::new(PrimOp { name, arity, func }));
        let value = Value::PrimOp(op);
        builtins.push((Symbol::intern(name), value.clone().into()));
        globals.insert(Symbol::intern(&format!("__{name}")), value.clone());
        if UNPREFIXED.contains(&name) {
            globals.insert(Symbol::intern(name), value);
        }
    }
    let constants = [
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("null", Value::Null),
        ("currentSystem", Value::string(current_system())),
        ("storeDir", Value::string(mini_store::store_path::STORE_DIR)),
        // mini evaluates the language of Nix 2.8 and says so, so that code
        // checking `lib.versionAtLeast builtins.nixVersion` takes the same branch.
        ("langVersion", Value::Int(6)),
        ("nixVersion", Value::string("2.8.0")),
    ];
    for (name, value) in constants {
        builtins.push((Symbol::intern(name), value.clone().into()));
        globals.insert(Symbol::intern(&format!("__{name}")), value.clone());
        if !matches!(name, "currentSystem" | "storeDir" | "langVersion" | "nixVersion") {
            globals.insert(Symbol::intern(name), value);
        }
    }
    // `builtins.builtins` is `builtins` itself.
    let own = Rc::new(LazyCell::new(Lazy::Blackhole));
    builtins.push((Symbol::intern("builtins"), Thunk::Lazy(own.clone())));
    let set = Value::attrs(Attrs::from_unsorted(builtins));
    own.set(Lazy::Done(set.clone()));
    globals.insert(Symbol::intern("builtins"), set);
    globals
}

// Argument helpers: force a thunk and insist on one type, with Nix's message.

fn type_error(v: &Value, expected: &str, span: Span) -> Box<EvalError> {
    EvalError::type_error(format!("value is {} while {expected} was expected", v.describe()), span)
}

pub(crate) fn int(ev: &mut Evaluator, t: &Thunk, span: Span) -> EvalResult<i64> {
    match ev.force(t)? {
        Value::Int(n) => Ok(n),
        other => Err(type_error(&other, "an integer", span)),
    }
}

pub(crate) fn float(ev: &mut Evaluator, t: &Thunk, span: Span) -> EvalResult<f64> {
    match ev.force(t)? {
        Value::Int(n) => Ok(n as f64),
        Value::Float(f) => Ok(f),
        other => Err(type_error(&other, "a float", span)),
    }
}

/// Insists that a result (of a predicate, say) is a Boolean.
pub(crate) fn expect_bool(v: Value, span: Span) -> EvalResult<bool> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(type_error(&other, "a Boolean", span)),
    }
}

pub(crate) fn string(ev: &mut Evaluator, t: &Thunk, span: Span) -> EvalResult<NixStr> {
    match ev.force(t)? {
        Value::String(s) => Ok(s),
        other => Err(type_error(&other, "a string", span)),
    }
}

pub(crate) fn list(ev: &mut Evaluator, t: &Thunk, span: Span) -> EvalResult<Rc<Vec<Thunk>>> {
    let v = ev.force(t)?;
    ev.expect_list(v, span)
}

pub(crate) fn attrs(ev: &mut Evaluator, t: &Thunk, span: Span) -> EvalResult<Rc<Attrs>> {
    ev.force_attrs(t, span)
}

pub(crate) fn function(ev: &mut Evaluator, t: &Thunk, span: Span) -> EvalResult<Value> {
    let v = ev.force(t)?;
    if v.is_function() || matches!(&v, Value::Attrs(a) if a.get_str("__functor").is_some()) {
        Ok(v)
    } else {
        Err(type_error(&v, "a function", span))
    }
}

/// Calls `f a` and forces the result.
pub(crate) fn call1(ev: &mut Evaluator, f: &Value, a: Thunk, span: Span) -> EvalResult<Value> {
    ev.call(f.clone(), a, span)
}

/// Calls `f a b` and forces the result.
pub(crate) fn call2(ev: &mut Evaluator, f: &Value, a: Thunk, b: Thunk, span: Span) -> EvalResult<Value> {
    ev.call2(f.clone(), a, b, span)
}

pub(crate) fn attrs_of(entries: Vec<(&str, Value)>) -> Value {
    Value::attrs(Attrs::from_unsorted(entries.into_iter().map(|(k, v)| (Symbol::intern(k), v.into())).collect()))
}
