//! Evaluating flakes. `DIR/flake.nixlike` is an attribute set of outputs,
//! or a function from `{ pkgs, system, self }` to one (`self` being that
//! very set, lazily). Evaluation is pure and may read only files under
//! `DIR`, so a flake gives the same derivations on every machine. An
//! attribute is looked up at the top level, then under
//! `packages.<system>`, and must be a derivation. A path the flake copies
//! to the store takes only the flake's sources (see [`crate::sources`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mini_lang::compile::ParamInfo;
use mini_lang::string::ContextElem;
use mini_lang::value::{Attrs, Lazy, Symbol, Thunk};
use mini_lang::{EvalError, Evaluator, Value};
use mini_store::store::Store;
use mini_store::store_path::StorePath;

use crate::installable::{show_attr_path, FLAKE_FILE};
use crate::FlakeError;

/// The arguments a flake function may take.
const FLAKE_ARGUMENTS: [&str; 3] = ["pkgs", "system", "self"];

/// A flake attribute's derivation, and which output it names (`None`: all).
pub(crate) struct FlakeDerivation {
    pub drv_path: StorePath,
    pub output: Option<String>,
}

/// One evaluation session over any number of flakes: the prelude is
/// evaluated at most once, and each flake's outputs once.
pub(crate) struct FlakeSession<'e> {
    ev: &'e mut Evaluator,
    store: &'e Store,
    system: String,
    pkgs: Option<Value>,
    outputs: HashMap<PathBuf, Value>,
    /// The flakes whose source filter the evaluator has been given.
    filtered: HashSet<PathBuf>,
}

impl<'e> FlakeSession<'e> {
    /// Makes `ev` pure and writing derivations to `store`.
    pub fn new(ev: &'e mut Evaluator, store: &'e Store) -> FlakeSession<'e> {
        ev.store_root = Some(store.root().to_path_buf());
        ev.pure = true;
        ev.write_derivations = true;
        FlakeSession {
            ev,
            store,
            system: mini_lang::builtins::current_system(),
            pkgs: None,
            outputs: HashMap::new(),
            filtered: HashSet::new(),
        }
    }

    /// The derivation attribute `attr` of the flake in `dir` (canonical) names.
    pub fn derivation(&mut self, dir: &Path, attr: &[String]) -> Result<FlakeDerivation, FlakeError> {
        // Set for every attribute: thunks of this flake are forced only now.
        self.ev.restrict_to(&[dir.to_path_buf()]).map_err(|e| self.eval_error(&e))?;
        self.filter_sources(dir)?;
        let outputs = self.outputs(dir)?;
        let value = self.select_attribute(dir, &outputs, attr)?;
        self.as_derivation(dir, attr, value)
    }

    /// Makes paths copied from the flake in `dir` take only its sources
    /// (see [`crate::sources`]), working them out once per session.
    fn filter_sources(&mut self, dir: &Path) -> Result<(), FlakeError> {
        if self.filtered.contains(dir) {
            return Ok(());
        }
        if let Some(filter) = crate::sources::source_filter(dir)? {
            self.ev.add_source_filter(filter);
        }
        self.filtered.insert(dir.to_path_buf());
        Ok(())
    }

    /// Writes every derivation made to the store.
    pub fn flush(&mut self) -> Result<(), FlakeError> {
        self.ev.flush_derivations().map_err(|e| self.eval_error(&e))
    }

    fn eval_error(&self, e: &EvalError) -> FlakeError {
        let rendered = e.render(&self.ev.sources);
        let message = rendered.strip_prefix("error: ").unwrap_or(&rendered);
        FlakeError::Eval(message.trim_end().to_string())
    }

    /// The flake's output set, evaluated once per session.
    fn outputs(&mut self, dir: &Path) -> Result<Value, FlakeError> {
        if let Some(v) = self.outputs.get(dir) {
            return Ok(v.clone());
        }
        let file = dir.join(FLAKE_FILE);
        if !file.is_file() {
            return Err(FlakeError::NoFlake { dir: dir.to_path_buf() });
        }
        let top = self.ev.eval_file(&file).map_err(|e| self.eval_error(&e))?;
        let outputs = if top.is_function() { self.call_flake_function(dir, top)? } else { top };
        if !matches!(outputs, Value::Attrs(_)) {
            return Err(FlakeError::BadFlake {
                dir: dir.to_path_buf(),
                message: format!(
                    "{FLAKE_FILE} gives {}, not an attribute set (or a function returning one)",
                    outputs.describe()
                ),
            });
        }
        self.outputs.insert(dir.to_path_buf(), outputs.clone());
        Ok(outputs)
    }

    /// Calls `{ pkgs, system, self, ... }: …` with the arguments it accepts,
    /// `self` being the result itself: a cell that applies the function to
    /// a set that holds the cell.
    fn call_flake_function(&mut self, dir: &Path, function: Value) -> Result<Value, FlakeError> {
        let accepted: Vec<&str> = match &function {
            Value::Lambda(closure) => match &closure.lambda.param {
                ParamInfo::Pattern { formals, ellipsis, .. } => {
                    let required = formals
                        .iter()
                        .find(|(name, default)| default.is_none() && !FLAKE_ARGUMENTS.contains(&name.as_str()));
                    if let Some((name, _)) = required {
                        return Err(FlakeError::BadFlake {
                            dir: dir.to_path_buf(),
                            message: format!(
                                "its function requires the argument '{name}', but a flake is given only {}",
                                FLAKE_ARGUMENTS.join(", ")
                            ),
                        });
                    }
                    let takes = |arg: &&str| *ellipsis || formals.iter().any(|(name, _)| name.as_str() == *arg);
                    FLAKE_ARGUMENTS.iter().copied().filter(takes).collect()
                }
                ParamInfo::Idents(_) => FLAKE_ARGUMENTS.to_vec(),
            },
            _ => FLAKE_ARGUMENTS.to_vec(),
        };
        let result = Rc::new(RefCell::new(Lazy::Blackhole));
        let mut args = Vec::new();
        for name in accepted {
            let value = match name {
                "pkgs" => self.pkgs()?.into(),
                "system" => Value::string(self.system.as_str()).into(),
                _ => Thunk::Lazy(result.clone()),
            };
            args.push((Symbol::intern(name), value));
        }
        let args = Value::attrs(Attrs::from_unsorted(args));
        *result.borrow_mut() = Lazy::Apply(function.into(), args.into());
        self.ev.force(&Thunk::Lazy(result)).map_err(|e| self.eval_error(&e))
    }

    /// The prelude, with busybox imported into the store on first use.
    fn pkgs(&mut self) -> Result<Value, FlakeError> {
        if let Some(pkgs) = &self.pkgs {
            return Ok(pkgs.clone());
        }
        let busybox = crate::busybox::import(self.store)?;
        let pkgs = crate::prelude::load(self.ev, &busybox, &self.system).map_err(|e| self.eval_error(&e))?;
        self.pkgs = Some(pkgs.clone());
        Ok(pkgs)
    }

    /// `attr` at the top level, else under `packages.<system>`.
    fn select_attribute(&mut self, dir: &Path, outputs: &Value, attr: &[String]) -> Result<Value, FlakeError> {
        let at_top = match self.select(outputs, attr)? {
            Selection::Found(v) => return Ok(v),
            Selection::Missing(missed) => missed,
        };
        let packages_path = ["packages".to_string(), self.system.clone()];
        let under_packages = match self.select(outputs, &packages_path)? {
            Selection::Found(packages) => match self.select(&packages, attr)? {
                Selection::Found(v) => return Ok(v),
                Selection::Missing(missed) => Some(missed),
            },
            Selection::Missing(_) => None,
        };
        Err(FlakeError::MissingAttribute(missing_attribute_message(
            dir,
            attr,
            &self.system,
            &at_top,
            under_packages.as_ref(),
        )))
    }

    /// Follows `path` from `root`, forcing only the values on the way.
    fn select(&mut self, root: &Value, path: &[String]) -> Result<Selection, FlakeError> {
        let mut value = root.clone();
        for (depth, name) in path.iter().enumerate() {
            let Value::Attrs(attrs) = &value else {
                return Ok(Selection::Missing(Missed { depth, available: Vec::new() }));
            };
            let Some(thunk) = attrs.get_str(name).cloned() else {
                let available = attrs.sorted_by_name().into_iter().map(|(n, _)| n.to_string()).collect();
                return Ok(Selection::Missing(Missed { depth, available }));
            };
            value = self.ev.force(&thunk).map_err(|e| self.eval_error(&e))?;
        }
        Ok(Selection::Found(value))
    }

    fn as_derivation(&mut self, dir: &Path, attr: &[String], value: Value) -> Result<FlakeDerivation, FlakeError> {
        let not_a_derivation =
            |kind| FlakeError::NotADerivation { attr: show_attr_path(attr), dir: dir.to_path_buf(), kind };
        match &value {
            Value::Attrs(attrs) => {
                let (Some(kind), Some(drv)) = (attrs.get_str("type").cloned(), attrs.get_str("drvPath").cloned())
                else {
                    return Err(not_a_derivation(value.describe()));
                };
                let kind = self.ev.force(&kind).map_err(|e| self.eval_error(&e))?;
                if !matches!(kind, Value::String(s) if s.as_str() == "derivation") {
                    return Err(not_a_derivation(value.describe()));
                }
                let drv = self.ev.force(&drv).map_err(|e| self.eval_error(&e))?;
                let Value::String(drv) = drv else { return Err(not_a_derivation(value.describe())) };
                let drv_path = self.parse_store_path(dir, drv.as_str())?;
                Ok(FlakeDerivation { drv_path, output: None })
            }
            // A derivation's output path, such as `"${pkgs.hello}"`.
            Value::String(s) => match s.context() {
                [ContextElem::Output { drv, output }] if s.as_str().starts_with(mini_store::store_path::STORE_DIR) => {
                    let drv_path = self.parse_store_path(dir, drv)?;
                    Ok(FlakeDerivation { drv_path, output: Some(output.clone()) })
                }
                _ => Err(not_a_derivation(value.describe())),
            },
            _ => Err(not_a_derivation(value.describe())),
        }
    }

    fn parse_store_path(&self, dir: &Path, text: &str) -> Result<StorePath, FlakeError> {
        StorePath::parse(text).map_err(|e| FlakeError::BadFlake { dir: dir.to_path_buf(), message: e.to_string() })
    }
}

enum Selection {
    Found(Value),
    Missing(Missed),
}

/// Where a lookup stopped: the depth of the missing name and the names
/// that were there instead.
struct Missed {
    depth: usize,
    available: Vec<String>,
}

/// Says what is missing, what is there, and the closest name.
fn missing_attribute_message(
    dir: &Path,
    attr: &[String],
    system: &str,
    at_top: &Missed,
    under_packages: Option<&Missed>,
) -> String {
    let packages = format!("packages.{system}");
    let head = format!("flake '{}' has no attribute '{}'", dir.display(), show_attr_path(attr));
    // A lookup that got past its first name says more than one that did not.
    let partial = match under_packages {
        Some(under) if under.depth > at_top.depth => Some((under, Some(packages.as_str()))),
        _ if at_top.depth > 0 => Some((at_top, None)),
        _ => None,
    };
    if let Some((missed, prefix)) = partial {
        let found = show_attr_path(&attr[..missed.depth]);
        let found = prefix.map_or(found.clone(), |p| format!("{p}.{found}"));
        let name = &attr[missed.depth];
        if missed.available.is_empty() {
            return format!("{head}: '{found}' is not an attribute set");
        }
        let hint = suggestion(name, missed.available.iter().map(String::as_str));
        return format!(
            "{head}: '{found}' has no attribute '{name}'{hint}\n       available in '{found}': {}",
            missed.available.join(", ")
        );
    }
    let name = &attr[0];
    let candidates = at_top.available.iter().chain(under_packages.iter().flat_map(|m| &m.available));
    let hint = suggestion(name, candidates.map(String::as_str));
    let mut message = format!("{head}{hint}\n       available at the top level: {}", list_or_none(&at_top.available));
    match under_packages {
        Some(under) => {
            message.push_str(&format!("\n       available in '{packages}': {}", list_or_none(&under.available)))
        }
        None => message.push_str(&format!("\n       (the flake has no '{packages}')")),
    }
    message
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

/// `; did you mean 'x'?` for the most similar name, if one is similar enough.
fn suggestion<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> String {
    match closest(wanted, names) {
        Some(name) => format!("; did you mean '{name}'?"),
        None => String::new(),
    }
}

/// The most similar name by Jaro-Winkler similarity, above a threshold
/// that accepts typos and truncations but not unrelated words.
fn closest<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names
        .map(|name| (strsim::jaro_winkler(wanted, name), name))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missed(depth: usize, names: &[&str]) -> Missed {
        Missed { depth, available: names.iter().map(|n| n.to_string()).collect() }
    }

    #[test]
    fn the_closest_similar_name_is_suggested() {
        let names = ["default", "docker", "hello", "packages"];
        assert_eq!(closest("dockr", names.into_iter()), Some("docker"));
        assert_eq!(closest("dock", names.into_iter()), Some("docker"));
        assert_eq!(closest("helo", names.into_iter()), Some("hello"));
        assert_eq!(closest("zzz", names.into_iter()), None);
        assert_eq!(closest("x", std::iter::empty()), None);
    }

    #[test]
    fn messages_list_both_places_and_suggest() {
        let dir = Path::new("/p");
        let attr = vec!["dockr".to_string()];
        let text = missing_attribute_message(
            dir,
            &attr,
            "x86_64-linux",
            &missed(0, &["default", "packages"]),
            Some(&missed(0, &["docker"])),
        );
        assert!(text.starts_with("flake '/p' has no attribute 'dockr'; did you mean 'docker'?"), "{text}");
        assert!(text.contains("available at the top level: default, packages"), "{text}");
        assert!(text.contains("available in 'packages.x86_64-linux': docker"), "{text}");

        let text = missing_attribute_message(dir, &attr, "x86_64-linux", &missed(0, &[]), None);
        assert!(text.contains("top level: (none)") && text.contains("has no 'packages.x86_64-linux'"), "{text}");
    }

    #[test]
    fn a_partial_match_reports_where_it_stopped() {
        let attr: Vec<String> = ["images", "dokcer"].map(String::from).to_vec();
        let text = missing_attribute_message(
            Path::new("/p"),
            &attr,
            "s",
            &missed(1, &["docker", "oci"]),
            Some(&missed(0, &[])),
        );
        assert!(text.contains("'images' has no attribute 'dokcer'; did you mean 'docker'?"), "{text}");
        assert!(text.contains("available in 'images': docker, oci"), "{text}");

        let text = missing_attribute_message(Path::new("/p"), &attr, "s", &missed(0, &[]), Some(&missed(1, &[])));
        assert!(text.ends_with("'packages.s.images' is not an attribute set"), "{text}");
    }
}
