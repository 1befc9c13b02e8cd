//! `derivationStrict`, which turns attributes into a derivation written to
//! the store, and `derivation`, the lazy wrapper users call. The wrapper is
//! written in the language itself, with Nix's documented shape: the result
//! is the attributes plus `drvPath`, `outPath`, `type = "derivation"`, one
//! attribute per output, `all` and `drvAttrs`, and the `.drv` is only made
//! when `drvPath` or an output path is demanded.

use std::collections::{BTreeMap, BTreeSet};

use super::{attrs, attrs_of};
use crate::error::{ErrorKind, EvalError, EvalResult};
use crate::eval::{store_error, Evaluator};
use crate::source_map::{Pos, Span};
use crate::string::{ContextElem, NixStr};
use crate::value::{Symbol, Thunk, Value};
use mini_store::derivation::{parse_hash, Derivation, FixedHash, HashMode, Output};
use mini_store::store::TextFile;
use mini_store::store_path::StorePath;

/// The `derivation` function, in the language.
pub const DERIVATION_NIX: &str = r#"
drvAttrs @ { outputs ? [ "out" ], ... }:
let
  strict = derivationStrict drvAttrs;
  commonAttrs = drvAttrs // (builtins.listToAttrs outputsList) // {
    all = map (x: x.value) outputsList;
    inherit drvAttrs;
  };
  outputToAttrListElement = outputName: {
    name = outputName;
    value = commonAttrs // {
      outPath = builtins.getAttr outputName strict;
      drvPath = strict.drvPath;
      type = "derivation";
      inherit outputName;
    };
  };
  outputsList = map outputToAttrListElement outputs;
in (builtins.head outputsList).value
"#;

fn eval_error(message: impl Into<String>, span: Span) -> Box<EvalError> {
    EvalError::at(ErrorKind::Eval, message, span)
}

/// Reads an attribute as a string with Nix's derivation coercions
/// (lists space-separated, `true` as "1", paths copied to the store).
fn attr_string(ev: &mut Evaluator, t: &Thunk, span: Span) -> EvalResult<NixStr> {
    let v = ev.force(t)?;
    ev.coerce_to_string(&v, span, true, true)
}

pub fn derivation_strict(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    let set = attrs(ev, &args[0], span)?;
    let mut env = BTreeMap::new();
    let mut context = Vec::new();
    let mut drv_args = Vec::new();
    let mut output_names = vec!["out".to_string()];
    let (mut hash, mut hash_algo, mut hash_mode) = (None, "sha256".to_string(), HashMode::Flat);
    // An attribute's problems are reported where the user wrote it.
    let at = |name: &str| set.position(Symbol::intern(name)).and_then(Pos::span).unwrap_or(span);
    for (name, t) in set.sorted_by_name() {
        let attr_span = at(name);
        let in_attr = |mut e: Box<EvalError>| {
            if e.span != Some(attr_span) {
                e.add_trace(attr_span, || format!("while evaluating the derivation attribute '{name}'"));
            }
            e
        };
        match name {
            "args" => {
                let items = super::list(ev, t, attr_span).map_err(in_attr)?;
                for item in items.iter() {
                    let s = attr_string(ev, item, attr_span).map_err(in_attr)?;
                    context.extend_from_slice(s.context());
                    drv_args.push(s.to_string());
                }
                continue;
            }
            "outputs" => {
                let names = super::lists::strings_of(ev, t, attr_span).map_err(in_attr)?;
                if names.is_empty() {
                    return Err(eval_error("derivation has an empty 'outputs' list", attr_span));
                }
                output_names = names.iter().map(|n| n.to_string()).collect();
                let unique: BTreeSet<&String> = output_names.iter().collect();
                if unique.len() != output_names.len() {
                    return Err(eval_error("derivation has duplicate outputs", attr_span));
                }
            }
            _ => {}
        }
        let value = attr_string(ev, t, attr_span).map_err(in_attr)?;
        context.extend_from_slice(value.context());
        match name {
            "outputHash" => hash = Some(value.to_string()),
            "outputHashAlgo" => hash_algo = value.to_string(),
            "outputHashMode" => {
                hash_mode = match value.as_str() {
                    "flat" => HashMode::Flat,
                    "recursive" => HashMode::Recursive,
                    other => {
                        return Err(eval_error(
                            format!("invalid outputHashMode '{other}' (use flat or recursive)"),
                            attr_span,
                        ))
                    }
                }
            }
            _ => {}
        }
        env.insert(name.to_string(), value.to_string());
    }
    let get = |key: &str| {
        env.get(key)
            .cloned()
            .ok_or_else(|| EvalError::at(ErrorKind::MissingAttribute, format!("attribute '{key}' missing"), span))
    };
    let (name, system, builder) = (get("name")?, get("system")?, get("builder")?);

    let fixed = match hash {
        Some(text) => {
            if output_names != ["out"] {
                return Err(eval_error(
                    "a fixed-output derivation must have exactly one output, named 'out'",
                    at("outputs"),
                ));
            }
            if text.is_empty() {
                return Err(eval_error(
                    format!(
                        "outputHash is empty: give the output's {hash_algo} hash (hex, Nix base-32 or SRI); to learn \
                         it, build once with a wrong hash and copy the one the error reports"
                    ),
                    at("outputHash"),
                ));
            }
            let digest = parse_hash(&hash_algo, &text).map_err(|e| eval_error(e.to_string(), at("outputHash")))?;
            Some(FixedHash { algo: hash_algo, mode: hash_mode, digest })
        }
        None => None,
    };

    let mut input_srcs = BTreeSet::new();
    let mut input_drvs: BTreeMap<StorePath, BTreeSet<String>> = BTreeMap::new();
    for elem in &context {
        match elem {
            ContextElem::Path(p) => {
                input_srcs.insert(StorePath::parse(p).map_err(|e| store_error(e, span))?);
            }
            ContextElem::Output { drv, output } => {
                let drv = StorePath::parse(drv).map_err(|e| store_error(e, span))?;
                input_drvs.entry(drv).or_default().insert(output.clone());
            }
            ContextElem::AllOutputs(drv) => {
                let drv = StorePath::parse(drv).map_err(|e| store_error(e, span))?;
                let outputs =
                    ev.drv_outputs.get(&drv).cloned().ok_or_else(|| {
                        eval_error(format!("'{drv}' is not a derivation made in this evaluation"), span)
                    })?;
                input_drvs.entry(drv).or_default().extend(outputs);
            }
        }
    }

    for out in &output_names {
        env.insert(out.clone(), String::new());
    }
    let outputs = output_names.iter().map(|o| (o.clone(), Output { path: None, fixed: fixed.clone() })).collect();
    let mut drv = Derivation { name, outputs, input_drvs, input_srcs, system, builder, args: drv_args, env };
    let known = &ev.drv_hashes;
    let mut missing = None;
    let modulo = drv.hash_modulo(&mut |p| {
        known.get(p).copied().unwrap_or_else(|| {
            missing = Some(p.clone());
            mini_store::derivation::ModuloHash([0; 32])
        })
    });
    if let Some(p) = missing {
        return Err(eval_error(format!("'{p}' is not a derivation made in this evaluation"), span));
    }
    drv.fill_output_paths(modulo).map_err(|e| eval_error(e.to_string(), span))?;
    for (out, o) in &drv.outputs {
        let path = o.path.as_ref().map(|p| p.to_string()).unwrap_or_default();
        drv.env.insert(out.clone(), path);
    }

    let drv_path = drv.drv_path().map_err(|e| eval_error(e.to_string(), span))?;
    if ev.write_derivations {
        let references = drv.input_srcs.iter().chain(drv.input_drvs.keys()).cloned().collect();
        ev.pending_derivations.push(TextFile { name: format!("{}.drv", drv.name), text: drv.to_json(), references });
    }
    ev.drv_hashes.insert(drv_path.clone(), modulo);
    ev.drv_outputs.insert(drv_path.clone(), drv.outputs.keys().cloned().collect());

    let drv_text = drv_path.to_string();
    let mut fields = vec![(
        "drvPath",
        Value::String(NixStr::with_context(drv_text.clone(), vec![ContextElem::AllOutputs(drv_text.clone())])),
    )];
    let outs: Vec<(String, Value)> = drv
        .outputs
        .iter()
        .map(|(out, o)| {
            let path = o.path.as_ref().map(|p| p.to_string()).unwrap_or_default();
            let ctx = vec![ContextElem::Output { drv: drv_text.clone(), output: out.clone() }];
            (out.clone(), Value::String(NixStr::with_context(path, ctx)))
        })
        .collect();
    fields.extend(outs.iter().map(|(k, v)| (k.as_str(), v.clone())));
    Ok(attrs_of(fields))
}

/// `placeholder output`: the string a builder's environment sees in place
/// of that output's path, `/` and the Nix base-32 SHA-256 of
/// `nix-output:<output>`, as Nix computes it.
pub fn placeholder(ev: &mut Evaluator, args: &[Thunk], span: Span) -> EvalResult<Value> {
    use sha2::Digest;
    let output = super::string(ev, &args[0], span)?;
    let hash = sha2::Sha256::digest(format!("nix-output:{}", output.as_str()).as_bytes());
    Ok(Value::string(format!("/{}", mini_store::base32::encode(&hash))))
}
