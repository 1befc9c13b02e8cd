//! Evaluating flakes. `DIR/flake.nixlike` is one of:
//!
//! - an attribute set of outputs;
//! - a function from `{ pkgs, system, self }` to one (`self` being that
//!   very set, lazily);
//! - `{ inputs = { NAME.url = "…"; … }; outputs = { pkgs, self, NAME, … }: …; }`,
//!   a flake with inputs: other flakes (or, with `flake = false`, source
//!   trees) pinned by `mini.lock` (see [`crate::lock`], [`crate::inputs`]).
//!   Each arrives as its outputs plus `outPath`, `narHash` and, from git,
//!   `rev` and `shortRev`.
//!
//! Evaluation is pure and may read only files under `DIR` and its inputs'
//! store copies, so a flake gives the same derivations on every machine.
//! An attribute is looked up at the top level, then under
//! `packages.<system>`, and must be a derivation. A path the flake copies
//! to the store takes only the flake's sources (see [`crate::flake_sources`]).
//!
//! Images record where they came from: the prelude's `dockerTools` gets
//! labels naming the git revision and source of the flake (when it is
//! built from one, or from a clean working tree, which is its commit) and
//! the content of its locked inputs — never a time or a local path.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use mini_lang::{store_path_value, Attrs, ContextElem, EvalError, Evaluator, Fixpoint, Thunk, Value};
use mini_store::provenance::{INPUT_LABEL_PREFIX, REVISION_LABEL, SOURCE_LABEL};
use mini_store::store::Store;
use mini_store::store_path::StorePath;

use crate::flake_sources::Watched;
use crate::inputs::{self, FlakeLocation};
use crate::installable::{show_attr_path, FLAKE_FILE};
use crate::lock::{DeclaredInput, LockFile, LOCK_FILE};
use crate::relock::{relock, LockReport, LockUpdate};
use crate::FlakeError;

/// The arguments a flake function may take, besides its inputs.
const FLAKE_ARGUMENTS: [&str; 3] = ["pkgs", "system", "self"];

/// A flake attribute's derivation, and which output it names (`None`: all).
pub(crate) struct FlakeDerivation {
    pub drv_path: StorePath,
    pub output: Option<String>,
}

/// One evaluation session over any number of flakes: the prelude is
/// evaluated at most once per set of image labels, and each flake's
/// outputs once.
pub(crate) struct FlakeSession<'e> {
    ev: &'e mut Evaluator,
    store: &'e Store,
    system: String,
    busybox: Option<StorePath>,
    /// The prelude, by the image labels it was given (rendered as JSON).
    pkgs: HashMap<String, Value>,
    /// Each flake's outputs, by the directory evaluated.
    outputs: HashMap<PathBuf, Value>,
    /// What evaluating each flake may read: its directory and its inputs'.
    allowed: HashMap<PathBuf, Vec<PathBuf>>,
    /// The source filter the evaluator was given for each flake directory.
    filters: HashMap<PathBuf, Rc<Watched>>,
    /// The flakes whose outputs are being evaluated, outermost first: an
    /// input that leads back to one of them is a cycle.
    evaluating: Vec<FlakeLocation>,
    /// Whether a missing or stale lock of a flake named on the command
    /// line is locked afresh (`--update-lock`) rather than refused.
    pub update_lock: bool,
    /// The locks `update_lock` made.
    pub lock_updates: Vec<LockReport>,
}

impl<'e> FlakeSession<'e> {
    /// Makes `ev` pure and writing derivations to `store`.
    pub fn new(ev: &'e mut Evaluator, store: &'e Store) -> FlakeSession<'e> {
        ev.set_store(store.clone());
        ev.pure = true;
        ev.write_derivations = true;
        FlakeSession {
            ev,
            store,
            system: mini_lang::current_system(),
            busybox: None,
            pkgs: HashMap::new(),
            outputs: HashMap::new(),
            allowed: HashMap::new(),
            filters: HashMap::new(),
            evaluating: Vec::new(),
            update_lock: false,
            lock_updates: Vec::new(),
        }
    }

    /// The derivation attribute `attr` of the flake at `flake` names.
    pub fn derivation(&mut self, flake: &FlakeLocation, attr: &[String]) -> Result<FlakeDerivation, FlakeError> {
        let value = self.attribute(flake, attr)?;
        self.as_derivation(&flake.shown(), attr, value)
    }

    /// Attribute `attr` of the flake at `flake`, whatever it is: at the
    /// top level, else under `packages.<system>`.
    pub fn attribute(&mut self, flake: &FlakeLocation, attr: &[String]) -> Result<Value, FlakeError> {
        let outputs = self.top_outputs(flake)?;
        self.select_attribute(&flake.shown(), &outputs, attr)
    }

    /// The outputs of the flake named on the command line at `flake`,
    /// with the evaluator restricted to what they may read (set for every
    /// use: thunks of this flake are forced only afterwards).
    pub fn top_outputs(&mut self, flake: &FlakeLocation) -> Result<Value, FlakeError> {
        let outputs = self.outputs(flake, true)?;
        let allowed = self.allowed.get(&flake.dir).cloned().unwrap_or_else(|| vec![flake.dir.clone()]);
        self.ev.restrict_to(&allowed).map_err(|e| self.eval_error(&e))?;
        Ok(outputs)
    }

    /// Forces a value of a flake, with errors rendered.
    pub fn force(&mut self, thunk: &Thunk) -> Result<Value, FlakeError> {
        self.ev.force(thunk).map_err(|e| self.eval_error(&e))
    }

    /// The evaluator, for callers that print values.
    pub fn evaluator(&mut self) -> &mut Evaluator {
        self.ev
    }

    /// The system flakes are evaluated for.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// Which of `untracked` (relative to the flake directory `dir`) the
    /// paths copied from that directory so far left out.
    pub fn left_out(&self, dir: &Path, untracked: &[PathBuf]) -> Vec<PathBuf> {
        self.filters.get(dir).map(|watched| watched.left_out(untracked)).unwrap_or_default()
    }

    /// Whether the lock of the working-tree flake at `flake` is present
    /// (when it needs one) and matches its inputs.
    pub fn lock_is_current(&mut self, flake: &FlakeLocation) -> Result<bool, FlakeError> {
        let Value::Attrs(attrs) = self.flake_file(flake)? else { return Ok(true) };
        if !is_flake_with_inputs(&attrs) {
            return Ok(true);
        }
        let declared = self.declared_inputs(flake, &attrs)?;
        Ok(match read_lock(flake)? {
            Some(lock) => lock.staleness(&declared).is_fresh(),
            None => declared.is_empty(),
        })
    }

    /// Locks the inputs of the working-tree flake at `flake` as `update`
    /// says, writing its `mini.lock`; then evaluates each input flake, so
    /// an input whose own inputs are not pinned is reported now rather
    /// than at the first build.
    pub fn lock(&mut self, flake: &FlakeLocation, update: &LockUpdate) -> Result<LockReport, FlakeError> {
        let top = self.flake_file(flake)?;
        let declared = match &top {
            Value::Attrs(attrs) if is_flake_with_inputs(attrs) => self.declared_inputs(flake, attrs)?,
            _ => BTreeMap::new(),
        };
        let existing = read_lock(flake)?;
        let report = relock(self.store, flake, &declared, existing.as_ref(), update)?;
        for (name, locked) in report.lock.inputs.iter().filter(|(_, l)| l.declared.flake) {
            let fetched = inputs::fetch(self.store, flake, name, &locked.declared, Some(locked))?;
            self.outputs(&fetched.location, false).map_err(|e| FlakeError::Input {
                dir: flake.shown(),
                name: name.clone(),
                message: format!("it was locked, but it cannot be used: {e}"),
            })?;
        }
        Ok(report)
    }

    /// Makes paths copied from the flake in `dir` take only its sources
    /// (see [`crate::flake_sources`]), working them out once per session.
    fn filter_sources(&mut self, dir: &Path) -> Result<(), FlakeError> {
        if self.filters.contains_key(dir) {
            return Ok(());
        }
        let watched = Rc::new(Watched::new(crate::flake_sources::source_filter(dir)?));
        self.ev.add_source_filter(watched.clone());
        self.filters.insert(dir.to_path_buf(), watched);
        Ok(())
    }

    /// Writes every derivation made to the store.
    pub fn flush(&mut self) -> Result<(), FlakeError> {
        self.ev.flush_derivations().map_err(|e| self.eval_error(&e))
    }

    fn eval_error(&self, e: &EvalError) -> FlakeError {
        let rendered = self.ev.render_error(e);
        let message = rendered.strip_prefix("error: ").unwrap_or(&rendered);
        FlakeError::Eval(message.trim_end().to_string())
    }

    /// The value of `flake.nixlike`, evaluated with reads restricted to
    /// the flake's directory.
    fn flake_file(&mut self, flake: &FlakeLocation) -> Result<Value, FlakeError> {
        let file = flake.dir.join(FLAKE_FILE);
        if !file.is_file() {
            return Err(FlakeError::NoFlake { dir: flake.shown() });
        }
        self.ev.restrict_to(std::slice::from_ref(&flake.dir)).map_err(|e| self.eval_error(&e))?;
        self.filter_sources(&flake.dir)?;
        self.ev.eval_file(&file).map_err(|e| self.eval_error(&e))
    }

    /// The flake's output set, evaluated once per session. `top`: the flake
    /// was named on the command line (rather than being an input), so
    /// `update_lock` applies to it.
    fn outputs(&mut self, flake: &FlakeLocation, top: bool) -> Result<Value, FlakeError> {
        if let Some(v) = self.outputs.get(&flake.dir) {
            return Ok(v.clone());
        }
        if let Some(start) = self.evaluating.iter().position(|f| f.dir == flake.dir) {
            let cycle: Vec<String> =
                self.evaluating[start..].iter().chain([flake]).map(|f| f.shown().display().to_string()).collect();
            return Err(FlakeError::BadFlake {
                dir: flake.shown(),
                message: format!("its inputs lead back to itself: {}", cycle.join(" → ")),
            });
        }
        self.evaluating.push(flake.clone());
        let outputs = self.evaluate_outputs(flake, top);
        self.evaluating.pop();
        outputs
    }

    /// [`FlakeSession::outputs`], the first time.
    fn evaluate_outputs(&mut self, flake: &FlakeLocation, top: bool) -> Result<Value, FlakeError> {
        let value = self.flake_file(flake)?;
        let mut allowed = vec![flake.dir.clone()];
        let outputs = match value {
            Value::Attrs(attrs) if is_flake_with_inputs(&attrs) => {
                self.call_flake_with_inputs(flake, &attrs, top, &mut allowed)?
            }
            function if function.is_function() => {
                let labels = provenance_labels(flake, &LockFile::default());
                self.call_flake_function(flake, function, Vec::new(), &labels)?
            }
            other => other,
        };
        if !matches!(outputs, Value::Attrs(_)) {
            return Err(FlakeError::BadFlake {
                dir: flake.shown(),
                message: format!(
                    "{FLAKE_FILE} gives {}, not an attribute set (or a function returning one)",
                    outputs.describe()
                ),
            });
        }
        allowed.dedup();
        self.allowed.insert(flake.dir.clone(), allowed);
        self.outputs.insert(flake.dir.clone(), outputs.clone());
        Ok(outputs)
    }

    /// `{ inputs = …; outputs = …; }`: fetches the inputs as the lock pins
    /// them and calls `outputs` with them.
    fn call_flake_with_inputs(
        &mut self,
        flake: &FlakeLocation,
        attrs: &Attrs,
        top: bool,
        allowed: &mut Vec<PathBuf>,
    ) -> Result<Value, FlakeError> {
        let declared = self.declared_inputs(flake, attrs)?;
        let bad = |message: String| FlakeError::BadFlake { dir: flake.shown(), message };
        let Some(function) = attrs.get_str("outputs").cloned() else {
            return Err(bad(format!(
                "{FLAKE_FILE} declares 'inputs' but has no 'outputs': write outputs = {{ pkgs, self, <inputs>, ... }}: {{ … }};"
            )));
        };
        let function = self.ev.force(&function).map_err(|e| self.eval_error(&e))?;
        if !function.is_function() {
            return Err(bad(format!(
                "'outputs' is {}, not a function: write outputs = {{ pkgs, self, <inputs>, ... }}: {{ … }};",
                function.describe()
            )));
        }
        let lock = self.lock_for(flake, &declared, top)?;
        let mut args = Vec::new();
        for (name, locked) in &lock.inputs {
            let fetched = inputs::fetch(self.store, flake, name, &locked.declared, Some(locked))?;
            allowed.push(fetched.root.clone());
            let mut meta = vec![
                ("outPath".to_string(), store_path_value(&fetched.path)),
                ("narHash".to_string(), Value::string(locked.nar_hash.as_str())),
            ];
            if let Some(rev) = &locked.rev {
                meta.push(("rev".to_string(), Value::string(rev.as_str())));
                meta.push(("shortRev".to_string(), Value::string(&rev[..7])));
            }
            let mut entries: Vec<(String, Thunk)> = Vec::new();
            if locked.declared.flake {
                let outputs = self.outputs(&fetched.location, false)?;
                allowed.extend(self.allowed.get(&fetched.location.dir).into_iter().flatten().cloned());
                if let Value::Attrs(outputs) = outputs {
                    entries.extend(
                        outputs
                            .sorted_by_name()
                            .into_iter()
                            .filter(|(n, _)| {
                                let name: &str = n;
                                !meta.iter().any(|(m, _)| m == name)
                            })
                            .map(|(n, t)| (n.to_string(), t.clone())),
                    );
                }
            }
            entries.extend(meta.into_iter().map(|(n, v)| (n, Thunk::from(v))));
            args.push((name.clone(), Value::attr_set(entries)));
        }
        self.ev.restrict_to(allowed).map_err(|e| self.eval_error(&e))?;
        let labels = provenance_labels(flake, &lock);
        self.call_flake_function(flake, function, args, &labels)
    }

    /// The `inputs` attribute: `NAME.url = "…"` and, optionally,
    /// `NAME.flake = false` for a source tree that is not a flake.
    fn declared_inputs(
        &mut self,
        flake: &FlakeLocation,
        attrs: &Attrs,
    ) -> Result<BTreeMap<String, DeclaredInput>, FlakeError> {
        let mut declared = BTreeMap::new();
        let Some(inputs) = attrs.get_str("inputs").cloned() else {
            return Ok(declared);
        };
        let bad = |message: String| FlakeError::BadFlake { dir: flake.shown(), message };
        let inputs = self.ev.force(&inputs).map_err(|e| self.eval_error(&e))?;
        let Value::Attrs(inputs) = inputs else {
            return Err(bad(format!("'inputs' is {}, not an attribute set of {{ url = \"…\"; }}", inputs.describe())));
        };
        for (name, spec) in inputs.sorted_by_name() {
            let name = name.to_string();
            if FLAKE_ARGUMENTS.contains(&name.as_str()) {
                return Err(bad(format!("an input cannot be called '{name}': the flake is given its own '{name}'")));
            }
            let spec = self.ev.force(spec).map_err(|e| self.eval_error(&e))?;
            let Value::Attrs(spec) = spec else {
                return Err(bad(format!("input '{name}' is {}, not {{ url = \"…\"; }}", spec.describe())));
            };
            let mut url = None;
            let mut is_flake = true;
            for (key, value) in spec.sorted_by_name() {
                let key = key.to_string();
                let value = self.ev.force(value).map_err(|e| self.eval_error(&e))?;
                match (key.as_str(), value) {
                    ("url", Value::String(s)) => url = Some(s.as_str().to_string()),
                    ("flake", Value::Bool(b)) => is_flake = b,
                    ("url" | "flake", other) => {
                        let wanted = if key.as_str() == "url" { "a string" } else { "true or false" };
                        return Err(bad(format!("input '{name}': '{key}' is {}, not {wanted}", other.describe())));
                    }
                    (other, _) => {
                        return Err(bad(format!("input '{name}' has '{other}'; an input takes 'url' and 'flake'")))
                    }
                }
            }
            let Some(url) = url else {
                return Err(bad(format!("input '{name}' has no 'url'")));
            };
            declared.insert(name, DeclaredInput { url, flake: is_flake });
        }
        Ok(declared)
    }

    /// The lock of a flake with inputs. A missing or stale lock is an
    /// error, unless the flake was named on the command line and
    /// `update_lock` is set: then it is locked afresh (and, in a working
    /// tree, written).
    fn lock_for(
        &mut self,
        flake: &FlakeLocation,
        declared: &BTreeMap<String, DeclaredInput>,
        top: bool,
    ) -> Result<LockFile, FlakeError> {
        let existing = read_lock(flake)?;
        let current = existing.clone().unwrap_or_default();
        let staleness = current.staleness(declared);
        if staleness.is_fresh() && (existing.is_some() || declared.is_empty()) {
            return Ok(current);
        }
        if top && self.update_lock {
            let report = relock(self.store, flake, declared, existing.as_ref(), &LockUpdate::Missing)?;
            let lock = report.lock.clone();
            self.lock_updates.push(report);
            return Ok(lock);
        }
        let fix = match (top, flake.is_working_tree() || flake.clean_tree.is_some()) {
            (true, true) => format!(
                "run `mini lock {}` to pin them, and commit {LOCK_FILE} (or build with --update-lock)",
                flake.shown().display()
            ),
            (true, false) => format!(
                "a past revision cannot be changed: build with --update-lock to pin its inputs as they are now \
                 (in memory only), or build a revision that has a {LOCK_FILE}"
            ),
            (false, _) => {
                format!("an input's own inputs are pinned by its {LOCK_FILE}: run `mini lock` in it, and commit it")
            }
        };
        let dir = flake.shown();
        match existing {
            None => Err(FlakeError::MissingLock {
                dir,
                inputs: declared.keys().cloned().collect::<Vec<_>>().join(", "),
                file: LOCK_FILE,
                fix,
            }),
            Some(_) => Err(FlakeError::StaleLock { dir, why: staleness.describe(), file: LOCK_FILE, fix }),
        }
    }

    /// Calls a flake function with the arguments it accepts: `pkgs`,
    /// `system`, `self` (the result itself, a [`Fixpoint`]; for a flake at
    /// a git revision, with `rev` and `shortRev` added, and for a dirty
    /// working tree `dirtyRev` and `dirtyShortRev`, as in Nix) and
    /// `inputs` by name.
    fn call_flake_function(
        &mut self,
        flake: &FlakeLocation,
        function: Value,
        inputs: Vec<(String, Value)>,
        labels: &BTreeMap<String, String>,
    ) -> Result<Value, FlakeError> {
        let mut given: Vec<&str> = FLAKE_ARGUMENTS.to_vec();
        given.extend(inputs.iter().map(|(name, _)| name.as_str()));
        let accepted = match function.accepted_arguments(&given) {
            Ok(accepted) => accepted,
            Err(name) => {
                return Err(FlakeError::BadFlake {
                    dir: flake.shown(),
                    message: format!(
                        "its function requires the argument '{name}', but a flake is given only {}",
                        given.join(", ")
                    ),
                })
            }
        };
        let result = Fixpoint::new();
        let meta = match (&flake.revision, &flake.dirty_rev) {
            (Some(rev), _) => Some([("rev", rev.clone()), ("shortRev", rev[..7].to_string())]),
            (None, Some(head)) => {
                Some([("dirtyRev", format!("{head}-dirty")), ("dirtyShortRev", format!("{}-dirty", &head[..7]))])
            }
            (None, None) => None,
        };
        let this = match meta {
            None => result.result(),
            Some(meta) => {
                let meta = meta.map(|(name, value)| (name, Thunk::from(Value::string(value.as_str()))));
                result.result_updated(self.ev, Value::attr_set(meta)).map_err(|e| self.eval_error(&e))?
            }
        };
        let mut args = Vec::new();
        for name in accepted {
            let value = match name {
                "pkgs" => self.pkgs(labels)?.into(),
                "system" => Value::string(self.system.as_str()).into(),
                "self" => this.clone(),
                input => match inputs.iter().find(|(n, _)| n == input) {
                    Some((_, value)) => value.clone().into(),
                    None => continue,
                },
            };
            args.push((name, value));
        }
        result.apply(self.ev, function, Value::attr_set(args)).map_err(|e| self.eval_error(&e))
    }

    /// The prelude with these image labels, busybox imported into the
    /// store on first use.
    fn pkgs(&mut self, labels: &BTreeMap<String, String>) -> Result<Value, FlakeError> {
        let key = serde_json::to_string(labels).expect("labels always serialise");
        if let Some(pkgs) = self.pkgs.get(&key) {
            return Ok(pkgs.clone());
        }
        let busybox = match &self.busybox {
            Some(busybox) => busybox.clone(),
            None => crate::busybox::import(self.store)?,
        };
        self.busybox = Some(busybox.clone());
        let pkgs = crate::prelude::load(self.ev, &busybox, &self.system, labels).map_err(|e| self.eval_error(&e))?;
        self.pkgs.insert(key, pkgs.clone());
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

/// Whether a `flake.nixlike` set is the form with inputs (it has
/// `outputs` or `inputs`) rather than a set of outputs.
fn is_flake_with_inputs(attrs: &Attrs) -> bool {
    attrs.get_str("outputs").is_some() || attrs.get_str("inputs").is_some()
}

/// The flake's `mini.lock`, if it has one.
fn read_lock(flake: &FlakeLocation) -> Result<Option<LockFile>, FlakeError> {
    let file = flake.dir.join(LOCK_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => LockFile::parse(&text).map(Some).map_err(|message| FlakeError::BadLock { file, message }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FlakeError::Io { action: "reading", path: file, source }),
    }
}

/// The image labels recording where a flake came from: its revision and
/// source (when built from git) and what its locked inputs hold (their
/// commit and content hash). Never a time, and never a path on this
/// machine: every input URL mini takes (`git+file:`, `path:`) names a
/// place on this machine, relative or not, so none is recorded, and the
/// same inputs anywhere give the same image.
pub(crate) fn provenance_labels(flake: &FlakeLocation, lock: &LockFile) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(rev) = &flake.revision {
        labels.insert(REVISION_LABEL.to_string(), rev.clone());
        if let Some(source) = &flake.source_url {
            labels.insert(SOURCE_LABEL.to_string(), source.clone());
        }
    }
    for (name, locked) in &lock.inputs {
        let rev = locked.rev.as_ref().map_or(String::new(), |rev| format!("rev={rev} "));
        labels.insert(format!("{INPUT_LABEL_PREFIX}{name}"), format!("{rev}narHash={}", locked.nar_hash));
    }
    labels
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
    fn provenance_names_what_inputs_hold_not_where_they_are() {
        let lock = |url: &str, rev: Option<&str>| {
            let declared = DeclaredInput { url: url.to_string(), flake: false };
            let locked =
                crate::lock::LockedInput { declared, rev: rev.map(str::to_string), nar_hash: "blake3:ab".into() };
            LockFile { inputs: BTreeMap::from([("go".to_string(), locked)]) }
        };
        let flake = FlakeLocation::working(PathBuf::from("/p"));
        let here = provenance_labels(&flake, &lock("path:/opt/go-toolchain", None));
        assert_eq!(here, provenance_labels(&flake, &lock("path:/srv/elsewhere/go", None)));
        assert_eq!(here["dev.mini.input.go"], "narHash=blake3:ab");
        let rev = "a".repeat(40);
        let git = provenance_labels(&flake, &lock("git+file:../go", Some(&rev)));
        assert_eq!(git, provenance_labels(&flake, &lock("git+file:///home/u/go", Some(&rev))));
        assert_eq!(git["dev.mini.input.go"], format!("rev={rev} narHash=blake3:ab"));
        assert!(!git.contains_key(REVISION_LABEL), "a working tree has no revision");
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
