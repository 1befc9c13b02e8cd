//! Running a build plan: `jobs` workers take ready derivations, longest
//! remaining chain first, and build each one in the sandbox (or in process,
//! for a builtin builder); then its outputs are checked, scanned for
//! references and registered. With a [`Substituter`], missing outputs are
//! first asked of it, and only built if it cannot supply them.
//!
//! Outputs are locked before a derivation is built and their validity is
//! checked again under the lock, so several `mini` processes building
//! overlapping graphs build each derivation once. The first failure stops
//! new work unless `keep_going` is set.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use mini_store::derivation::Derivation;
use mini_store::references::{find_occurrences, scan_references, Occurrence};
use mini_store::store::{discard_tree, PathLock, Store};
use mini_store::store_path::StorePath;
use petgraph::graph::NodeIndex;
use petgraph::Direction;

use crate::builtin_builders::{BuiltinBuilder, BuiltinJob, Declared};
use crate::constraints::{self, Constraint};
use crate::dag::{self, BuildPlan, Job};
use crate::elf;
use crate::error::{io_err, BuildError, Result};
use crate::output;
use crate::remote::{RemoteExecutor, RemoteFailure, RemoteRequest};
use crate::sandbox::{self, SandboxSpec};
use mini_store::STORE_DIR;

/// `SOURCE_DATE_EPOCH` in every build: 1980-01-01, as nixpkgs sets it (the
/// earliest time a zip file can hold).
pub const SOURCE_DATE_EPOCH: &str = "315532800";
/// How many log lines a failure shows.
pub const LOG_TAIL_LINES: usize = 25;
/// The system this machine builds for.
pub const SYSTEM: &str = "x86_64-linux";

/// How to run a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Derivations built at once.
    pub jobs: usize,
    /// Go on with what does not depend on a failed derivation.
    pub keep_going: bool,
    /// Keep the `/build` directory of a failed build.
    pub keep_failed: bool,
    pub timeout: Option<Duration>,
    pub max_silent_time: Option<Duration>,
    /// `MINI_BUILD_CORES` as each builder sees it.
    pub cores: usize,
    /// The size of each build's `/tmp` and `/dev/shm`, in bytes.
    pub tmpfs_size: u64,
    /// Values for the variables a fixed-output derivation names in
    /// `impureEnvVars` (proxies, `GOPROXY`): the CLI gives its own
    /// environment here. A variable not here stays unset.
    pub impure_env: BTreeMap<String, String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        BuildOptions {
            jobs: cores,
            keep_going: false,
            keep_failed: false,
            timeout: None,
            max_silent_time: None,
            cores,
            tmpfs_size: sandbox::DEFAULT_TMPFS_SIZE,
            impure_env: BTreeMap::new(),
        }
    }
}

/// What the scheduler reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// The plan is made: this many derivations will be built.
    Planned {
        total: usize,
    },
    /// A substitution failed, so this many more derivations (inputs the
    /// plan expected to download with it) will be built first.
    PlannedMore {
        count: usize,
    },
    /// A derivation's builder starts.
    Started {
        drv: &'a StorePath,
    },
    /// A derivation's outputs were downloaded instead of built.
    Substituted {
        drv: &'a StorePath,
    },
    /// Substitution failed; the derivation is built instead.
    SubstitutionFailed {
        drv: &'a StorePath,
        message: &'a str,
    },
    /// The remote build service's action cache held its outputs.
    RemoteCached {
        drv: &'a StorePath,
    },
    /// The remote build service could not build it, or its answer was
    /// refused; the derivation is built here instead.
    RemoteFailed {
        drv: &'a StorePath,
        message: &'a str,
    },
    /// A line of a builder's output.
    Log {
        drv: &'a StorePath,
        line: &'a str,
    },
    Built {
        drv: &'a StorePath,
    },
    /// Another process built it while this one waited for its lock.
    AlreadyValid {
        drv: &'a StorePath,
    },
    Failed {
        drv: &'a StorePath,
        error: &'a BuildError,
    },
    /// The build directory of a failed build was kept here.
    KeptBuildDir {
        drv: &'a StorePath,
        dir: &'a Path,
    },
}

/// Receives [`Event`]s, from any worker thread.
pub trait Observer: Sync {
    fn event(&self, event: Event<'_>);
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: Event<'_>) {}
}

/// Supplies store paths without building them, as a binary cache does.
pub trait Substituter: Sync {
    /// Whether `path` can be supplied (so its derivation's inputs need not be built).
    fn has(&self, path: &StorePath) -> bool;
    /// Makes `path` valid in `store`; the caller holds its lock. `Ok(false)`
    /// if no source offers it; an error says what was wrong with what was
    /// offered, and nothing was registered.
    fn substitute(&self, store: &Store, path: &StorePath) -> std::result::Result<bool, String>;
}

/// What a build did.
#[derive(Debug, Default)]
pub struct BuildReport {
    pub built: Vec<StorePath>,
    /// Derivations whose outputs a substituter (or the remote action
    /// cache) supplied.
    pub substituted: Vec<StorePath>,
    pub failed: Vec<(StorePath, BuildError)>,
    /// Derivations not built because an input failed or the build stopped.
    pub not_attempted: Vec<StorePath>,
}

/// Builds derivations into a store.
pub struct Builder<'a> {
    store: &'a Store,
    options: BuildOptions,
    builtins: Vec<Box<dyn BuiltinBuilder>>,
    observer: &'a dyn Observer,
    substituter: Option<&'a dyn Substituter>,
    remote: Option<&'a dyn RemoteExecutor>,
}

/// How a derivation's outputs became valid.
enum Outcome {
    Built,
    Substituted,
    /// The remote action cache held the outputs: nothing was executed.
    RemoteCached,
    /// Another process made them valid while this one waited for the locks.
    AlreadyValid,
}

/// Shared by the workers, under one mutex.
struct Progress {
    ready: BinaryHeap<(usize, std::cmp::Reverse<usize>)>,
    inputs_left: Vec<usize>,
    running: usize,
    stop: bool,
    report: BuildReport,
    finished: Vec<bool>,
}

impl<'a> Builder<'a> {
    pub fn new(store: &'a Store, options: BuildOptions, observer: &'a dyn Observer) -> Builder<'a> {
        Builder {
            store,
            options,
            builtins: crate::builtin_builders::standard(),
            observer,
            substituter: None,
            remote: None,
        }
    }

    /// Sends the derivations it may build elsewhere to `remote` (see
    /// [`crate::remote`]).
    pub fn with_remote(mut self, remote: &'a dyn RemoteExecutor) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Asks `substituter` for missing outputs before building them.
    pub fn with_substituter(mut self, substituter: &'a dyn Substituter) -> Self {
        self.substituter = Some(substituter);
        self
    }

    /// Adds a builtin builder (such as the image builder).
    pub fn with_builtin(mut self, builder: Box<dyn BuiltinBuilder>) -> Self {
        self.builtins.push(builder);
        self
    }

    /// Makes the outputs of `targets` valid, building what is missing; with
    /// `check`, rebuilds the targets themselves and compares.
    pub fn realise(&self, targets: &[StorePath], check: bool) -> Result<BuildReport> {
        self.realise_planned(targets, check, false)
    }

    /// [`Builder::realise`]; `nested` for the inputs of a derivation whose
    /// substitution failed, realised by the worker that was to substitute
    /// it: they are added to the plan shown, and built by that worker alone,
    /// so no more than `jobs` builders ever run at once.
    ///
    /// Everything the plan uses (the input closure of every build included)
    /// is a temporary root of this process while it builds, so a
    /// concurrent GC deletes none of it.
    fn realise_planned(&self, targets: &[StorePath], check: bool, nested: bool) -> Result<BuildReport> {
        let plan = dag::plan_held(self.store, targets, check, self.substituter)?;
        let logs = self.store.root().join("log");
        fs::create_dir_all(&logs).map_err(io_err("creating", &logs))?;
        let count = plan.graph.node_count();
        let workers = if nested {
            self.observer.event(Event::PlannedMore { count });
            1
        } else {
            self.observer.event(Event::Planned { total: count });
            self.options.jobs.max(1)
        };
        Ok(self.run(&plan, workers))
    }

    fn run(&self, plan: &BuildPlan, workers: usize) -> BuildReport {
        let graph = &plan.graph;
        let mut progress = Progress {
            ready: BinaryHeap::new(),
            inputs_left: vec![0; graph.node_count()],
            running: 0,
            stop: false,
            report: BuildReport::default(),
            finished: vec![false; graph.node_count()],
        };
        for node in graph.node_indices() {
            let inputs = graph.neighbors_directed(node, Direction::Incoming).count();
            progress.inputs_left[node.index()] = inputs;
            if inputs == 0 {
                progress.ready.push((graph[node].priority, std::cmp::Reverse(node.index())));
            }
        }
        let shared = (Mutex::new(progress), Condvar::new());
        let workers = workers.min(graph.node_count().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| self.work(plan, &shared));
            }
        });
        let (progress, _) = shared;
        let mut progress = progress.into_inner().unwrap_or_else(|e| e.into_inner());
        for node in graph.node_indices() {
            if !progress.finished[node.index()] {
                progress.report.not_attempted.push(graph[node].drv_path.clone());
            }
        }
        progress.report
    }

    /// One worker: takes the best ready job until none is left.
    fn work(&self, plan: &BuildPlan, shared: &(Mutex<Progress>, Condvar)) {
        self.work_on(plan, shared);
    }

    fn work_on(&self, plan: &BuildPlan, (lock, wake): &(Mutex<Progress>, Condvar)) {
        let graph = &plan.graph;
        loop {
            let node = {
                let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if p.stop {
                        return;
                    }
                    if let Some((_, std::cmp::Reverse(i))) = p.ready.pop() {
                        p.running += 1;
                        break NodeIndex::new(i);
                    }
                    if p.running == 0 {
                        // Nothing runs and nothing is ready: done, or the
                        // rest waits on something that failed.
                        wake.notify_all();
                        return;
                    }
                    p = wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
            };
            let job = &graph[node];
            let outcome = self.build_one(job);
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            p.running -= 1;
            match outcome {
                Ok(done) => {
                    p.finished[node.index()] = true;
                    match done {
                        Outcome::Built => {
                            self.observer.event(Event::Built { drv: &job.drv_path });
                            p.report.built.push(job.drv_path.clone());
                        }
                        Outcome::Substituted => {
                            self.observer.event(Event::Substituted { drv: &job.drv_path });
                            p.report.substituted.push(job.drv_path.clone());
                        }
                        Outcome::RemoteCached => {
                            self.observer.event(Event::RemoteCached { drv: &job.drv_path });
                            p.report.substituted.push(job.drv_path.clone());
                        }
                        Outcome::AlreadyValid => self.observer.event(Event::AlreadyValid { drv: &job.drv_path }),
                    }
                    for next in graph.neighbors_directed(node, Direction::Outgoing) {
                        p.inputs_left[next.index()] -= 1;
                        if p.inputs_left[next.index()] == 0 {
                            p.ready.push((graph[next].priority, std::cmp::Reverse(next.index())));
                        }
                    }
                }
                Err(error) => {
                    p.finished[node.index()] = true;
                    self.observer.event(Event::Failed { drv: &job.drv_path, error: &error });
                    p.report.failed.push((job.drv_path.clone(), error));
                    if !self.options.keep_going {
                        p.stop = true;
                    }
                }
            }
            wake.notify_all();
        }
    }

    /// Substitutes or builds one derivation.
    fn build_one(&self, job: &Job) -> Result<Outcome> {
        let outputs: BTreeMap<String, StorePath> = job
            .drv
            .outputs
            .iter()
            .map(|(name, o)| {
                o.path.clone().map(|p| (name.clone(), p)).ok_or_else(|| BuildError::BadDerivation {
                    drv: job.drv_path.to_string(),
                    message: format!("output '{name}' has no path"),
                })
            })
            .collect::<Result<_>>()?;
        let mut sorted: Vec<&StorePath> = outputs.values().collect();
        sorted.sort();
        let _locks: Vec<PathLock> = sorted.iter().map(|p| self.store.lock(p)).collect::<std::result::Result<_, _>>()?;
        if !job.check && dag::outputs_valid(self.store, &job.drv) {
            return Ok(Outcome::AlreadyValid);
        }
        if !job.check && self.substitute_outputs(job, &outputs) {
            return Ok(Outcome::Substituted);
        }
        if job.inputs_skipped {
            self.build_inputs(job)?;
        }
        self.observer.event(Event::Started { drv: &job.drv_path });
        let builtin = job.drv.builder.strip_prefix("builtin:");
        if builtin.is_none() && job.drv.system != SYSTEM {
            return Err(BuildError::WrongSystem {
                drv: job.drv_path.to_string(),
                needed: job.drv.system.clone(),
                have: SYSTEM.into(),
            });
        }
        // A malformed list fails now, not after a long build.
        let constraints = constraints::parse(&job.drv_path, &job.drv, &outputs)?;
        let impure = self.impure_env(job)?;
        let inputs = self.input_closure(&job.drv)?;
        let build_root = build_root_of(job, builtin.is_some(), &inputs)?;
        // Every build gets a root of its own, made now and removed after:
        // nothing one builder leaves can reach another build or the host.
        let work_dir = self.store.staging_dir()?;
        let spec = self.sandbox_spec(job, &outputs, &inputs, &impure, build_root, work_dir.clone());
        let remote = if builtin.is_none() { self.run_remote(job, &outputs, &inputs, &spec) } else { None };
        let cached = matches!(remote, Some(Ok(true)));
        let result = match (remote, builtin) {
            (Some(done), _) => done.map(|_| Declared::default()),
            (None, Some(name)) => self.run_builtin(name, job, &outputs, &spec),
            (None, None) => self.run_sandboxed(job, &spec, &outputs).map(|()| Declared::default()),
        }
        .and_then(|declared| self.finish_outputs(job, &outputs, &inputs, &spec, declared, &constraints));
        if result.is_err() && self.options.keep_failed {
            let kept = self.store.root().join("failed").join(format!("{}-{}", job.drv.name, std::process::id()));
            let moved = fs::create_dir_all(&kept)
                .and_then(|()| {
                    discard_tree(&kept.join("build"));
                    fs::rename(spec.build_dir_on_host(), kept.join("build"))
                })
                .is_ok();
            if moved {
                self.observer.event(Event::KeptBuildDir { drv: &job.drv_path, dir: &kept.join("build") });
            }
        }
        discard_tree(&work_dir);
        result.map(|()| if cached { Outcome::RemoteCached } else { Outcome::Built })
    }

    /// Builds on the remote service, when there is one and the derivation
    /// may go there: `Some(Ok(cached))` once its outputs are where the
    /// sandbox would leave them, `Some(Err)` when the remote builder
    /// failed, and `None` to build here (after saying why, if the service
    /// failed).
    fn run_remote(
        &self,
        job: &Job,
        outputs: &BTreeMap<String, StorePath>,
        inputs: &[StorePath],
        spec: &SandboxSpec,
    ) -> Option<Result<bool>> {
        let remote = self.remote?;
        if job.check || job.drv.fixed_output().is_some() {
            return None;
        }
        let outputs_dir = spec.outputs_dir();
        if let Err(e) = fs::create_dir_all(&outputs_dir) {
            return Some(Err(io_err("creating", &outputs_dir)(e)));
        }
        let request = RemoteRequest {
            store: self.store,
            drv_path: &job.drv_path,
            drv: &job.drv,
            inputs,
            outputs: outputs.values().map(|p| (p.clone(), spec.output_on_host(&p.base_name()))).collect(),
        };
        match remote.execute(request) {
            Ok(outcome) => Some(self.keep_remote_log(&job.drv_path, &outcome.log).map(|_| outcome.cached)),
            Err(RemoteFailure::Builder { status, log }) => {
                Some(self.keep_remote_log(&job.drv_path, &log).and_then(|log_tail| {
                    Err(BuildError::BuilderFailed {
                        drv: job.drv_path.to_string(),
                        status: format!("{status} on the remote builder"),
                        log_tail,
                        hints: Vec::new(),
                        log_path: self.log_path(&job.drv_path),
                    })
                }))
            }
            Err(RemoteFailure::Unavailable(message)) => {
                self.observer.event(Event::RemoteFailed { drv: &job.drv_path, message: &message });
                for path in outputs.values() {
                    discard_tree(&spec.output_on_host(&path.base_name()));
                }
                None
            }
        }
    }

    /// Keeps a remote build's log where `mini log` reads it, and shows its
    /// lines as a local build's; returns the last lines.
    fn keep_remote_log(&self, drv: &StorePath, log: &[u8]) -> Result<Vec<String>> {
        let log_path = self.log_path(drv);
        fs::write(&log_path, log).map_err(io_err("writing", &log_path))?;
        let mut tail = Default::default();
        for line in String::from_utf8_lossy(log).lines() {
            self.log_line(drv, &mut tail, line.to_string());
        }
        Ok(tail.into())
    }

    /// A line of a builder's output: shown to the observer, and kept among
    /// the last [`LOG_TAIL_LINES`] a failure shows.
    fn log_line(&self, drv: &StorePath, tail: &mut std::collections::VecDeque<String>, line: String) {
        self.observer.event(Event::Log { drv, line: &line });
        if tail.len() == LOG_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }

    /// Asks the substituter for each missing output, in order, stopping at
    /// the first it cannot supply; true if all are valid then.
    fn substitute_outputs(&self, job: &Job, outputs: &BTreeMap<String, StorePath>) -> bool {
        let Some(substituter) = self.substituter else { return false };
        for path in outputs.values().filter(|p| !self.store.is_valid(p)) {
            match substituter.substitute(self.store, path) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(message) => {
                    self.observer.event(Event::SubstitutionFailed { drv: &job.drv_path, message: &message });
                    return false;
                }
            }
        }
        true
    }

    /// Builds the inputs the plan left out because substitution was
    /// expected to work, before building the derivation itself.
    fn build_inputs(&self, job: &Job) -> Result<()> {
        let inputs: Vec<StorePath> = job.drv.input_drvs.keys().cloned().collect();
        let report = self.realise_planned(&inputs, false, true)?;
        match report.failed.len() + report.not_attempted.len() {
            0 => Ok(()),
            failed => Err(BuildError::InputsFailed { drv: job.drv_path.to_string(), failed }),
        }
    }

    /// The store paths a build may see: the closure of its input sources
    /// and of the outputs it uses of its input derivations.
    fn input_closure(&self, drv: &Derivation) -> Result<Vec<StorePath>> {
        let roots = self.input_roots(drv)?;
        Ok(self.store.closure(&roots)?.into_iter().map(|info| info.path).collect())
    }

    /// The store paths a derivation names: its input sources and the
    /// outputs it uses of its input derivations.
    fn input_roots(&self, drv: &Derivation) -> Result<Vec<StorePath>> {
        let mut roots: Vec<StorePath> = drv.input_srcs.iter().cloned().collect();
        for (input, wanted) in &drv.input_drvs {
            let input_drv = self.store.read_derivation(input)?;
            for name in wanted {
                match input_drv.outputs.get(name).and_then(|o| o.path.clone()) {
                    Some(path) => roots.push(path),
                    None => {
                        return Err(BuildError::BadDerivation {
                            drv: input.to_string(),
                            message: format!("it has no output '{name}'"),
                        })
                    }
                }
            }
        }
        Ok(roots)
    }

    /// The variables `impureEnvVars` names and their values from
    /// [`BuildOptions::impure_env`], as Nix passes them: only to
    /// fixed-output builds, whose hash makes the result independent of
    /// them. Anywhere else the attribute is an error, not ignored.
    fn impure_env(&self, job: &Job) -> Result<Vec<(String, String)>> {
        let Some(names) = job.drv.env.get("impureEnvVars") else { return Ok(Vec::new()) };
        let bad = |message: String| BuildError::BadDerivation { drv: job.drv_path.to_string(), message };
        if job.drv.fixed_output().is_none() {
            return Err(bad("impureEnvVars is only for fixed-output derivations (with outputHash): \
                            the environment would make any other output depend on the machine"
                .into()));
        }
        let mut values = Vec::new();
        for name in names.split_whitespace() {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(bad(format!("impureEnvVars: '{name}' is not a variable name")));
            }
            if let Some(value) = self.options.impure_env.get(name) {
                values.push((name.to_string(), value.clone()));
            }
        }
        Ok(values)
    }

    /// The environment is cleared, then: Nix's defaults, the derivation's
    /// own variables (which may override `PATH` and the like), the impure
    /// variables of a fixed-output build, its output paths, and the build
    /// directory variables, which nothing overrides.
    fn sandbox_spec(
        &self,
        job: &Job,
        outputs: &BTreeMap<String, StorePath>,
        inputs: &[StorePath],
        impure: &[(String, String)],
        build_root: Option<String>,
        work_dir: PathBuf,
    ) -> SandboxSpec {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in [
            ("PATH", "/path-not-set"),
            ("HOME", "/homeless-shelter"),
            ("MINI_STORE", STORE_DIR),
            ("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH),
            ("TZ", "UTC"),
            ("LC_ALL", "C"),
        ] {
            env.insert(k.into(), v.into());
        }
        env.insert("MINI_BUILD_CORES".into(), self.options.cores.to_string());
        env.extend(job.drv.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(impure.iter().cloned());
        env.extend(outputs.iter().map(|(name, path)| (name.clone(), path.to_string())));
        for k in ["TMPDIR", "TEMPDIR", "TMP", "TEMP", "MINI_BUILD_TOP", "PWD"] {
            env.insert(k.into(), "/build".into());
        }
        SandboxSpec {
            builder: job.drv.builder.clone(),
            args: job.drv.args.clone(),
            env: env.into_iter().collect(),
            work_dir,
            store_dir: self.store.store_dir(),
            inputs: inputs.iter().map(StorePath::base_name).collect(),
            network: job.drv.fixed_output().is_some(),
            tmpfs_size: self.options.tmpfs_size,
            build_root,
        }
    }

    fn log_path(&self, drv_path: &StorePath) -> PathBuf {
        log_path(self.store, drv_path)
    }

    fn run_builtin(
        &self,
        name: &str,
        job: &Job,
        outputs: &BTreeMap<String, StorePath>,
        spec: &SandboxSpec,
    ) -> Result<Declared> {
        let builder = self.builtins.iter().find(|b| b.name() == name).ok_or_else(|| BuildError::Builtin {
            builder: name.into(),
            drv: job.drv_path.to_string(),
            message: "there is no such builtin builder".into(),
        })?;
        let hosts: BTreeMap<String, PathBuf> =
            outputs.iter().map(|(n, p)| (n.clone(), spec.output_on_host(&p.base_name()))).collect();
        let outputs_dir = spec.outputs_dir();
        fs::create_dir_all(&outputs_dir).map_err(io_err("creating", &outputs_dir))?;
        let log_path = self.log_path(&job.drv_path);
        let mut log = File::create(&log_path).map_err(io_err("creating", &log_path))?;
        let mut builtin_job = BuiltinJob {
            drv_path: &job.drv_path,
            drv: &job.drv,
            outputs: &hosts,
            store: self.store,
            log: &mut log,
            references: BTreeMap::new(),
            archive_hashes: BTreeMap::new(),
        };
        builder.build(&mut builtin_job)?;
        Ok(Declared { references: builtin_job.references, archive_hashes: builtin_job.archive_hashes })
    }

    /// Runs the builder in its sandbox; once it and everything it started
    /// are dead, takes its outputs out of the sandbox.
    fn run_sandboxed(&self, job: &Job, spec: &SandboxSpec, outputs: &BTreeMap<String, StorePath>) -> Result<()> {
        let log_path = self.log_path(&job.drv_path);
        let mut log = File::create(&log_path).map_err(io_err("creating", &log_path))?;
        let (reader, writer) = io::pipe().map_err(io_err("creating a pipe for", &log_path))?;
        let child = sandbox::spawn(spec, &OwnedFd::from(writer))?;
        // The builder holds the only write end now: the log ends with it.
        let watch = self.watch_output(&job.drv_path, reader, &mut log, &child);
        let code = child.wait()?;
        let (tail, stopped) = watch?;
        if let Some(error) = child.setup_error() {
            // The kernel's ENOENT for a missing loader names neither.
            if error.starts_with("executing the builder") {
                if let Some(program) = elf::unrunnable(self.store, &job.drv.builder) {
                    return Err(BuildError::UnrunnableBuilder { drv: job.drv_path.to_string(), program, error });
                }
            }
            return Err(BuildError::Sandbox(error));
        }
        let (status, hints) = match stopped {
            Some(reason) => (reason, Vec::new()),
            None if code == 0 => {
                let bases: Vec<String> = outputs.values().map(StorePath::base_name).collect();
                return spec.collect_outputs(&bases, job.drv.fixed_output().is_some());
            }
            None if code > 128 => (format!("was killed by signal {}", code - 128), Vec::new()),
            None => (format!("failed with exit code {code}"), self.unrunnable_hints(&job.drv)),
        };
        Err(BuildError::BuilderFailed { drv: job.drv_path.to_string(), status, log_tail: tail, hints, log_path })
    }

    /// After a failed build: the programs of its inputs (their `bin/` and
    /// `sbin/`, not their closures) that need a loader builds do not have,
    /// since a shell reports running one only as `not found`.
    fn unrunnable_hints(&self, drv: &Derivation) -> Vec<String> {
        let Ok(roots) = self.input_roots(drv) else { return Vec::new() };
        let found = elf::unrunnable_inputs(self.store, &roots);
        let mut hints: Vec<String> = found.iter().take(elf::MAX_HINTS).map(elf::Unrunnable::describe).collect();
        if found.len() > elf::MAX_HINTS {
            hints.push(format!("and {} more programs like these", found.len() - elf::MAX_HINTS));
        }
        hints
    }

    /// Copies the builder's output to its log and the observer until it
    /// ends, killing it on a timeout. Returns the last lines, and why it
    /// was stopped if it was.
    fn watch_output(
        &self,
        drv: &StorePath,
        mut reader: io::PipeReader,
        log: &mut File,
        child: &sandbox::SandboxChild,
    ) -> Result<(Vec<String>, Option<String>)> {
        let start = Instant::now();
        let mut last_output = start;
        let mut tail: std::collections::VecDeque<String> = Default::default();
        let mut partial = Vec::new();
        let mut buffer = vec![0u8; 64 << 10];
        let mut stopped = None;
        loop {
            let now = Instant::now();
            let deadlines = [
                self.options.timeout.map(|t| (start + t, format!("timed out after {} seconds", t.as_secs()))),
                self.options.max_silent_time.map(|t| {
                    (last_output + t, format!("was silent for more than {} seconds and was killed", t.as_secs()))
                }),
            ];
            let next = deadlines.iter().flatten().min_by_key(|(at, _)| *at);
            if let Some((at, reason)) = next {
                if *at <= now {
                    child.kill();
                    stopped = Some(reason.clone());
                    break;
                }
            }
            let wait_ms = next.map_or(-1, |(at, _)| at.duration_since(now).as_millis().min(i32::MAX as u128) as i32);
            let mut poll = libc::pollfd { fd: reader.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut poll, 1, wait_ms.max(-1)) };
            if r == 0 || (r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted) {
                continue;
            }
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(BuildError::Io {
                        action: "reading the log of",
                        path: drv.to_string().into(),
                        source: e,
                    })
                }
            };
            last_output = Instant::now();
            log.write_all(&buffer[..n]).map_err(|e| BuildError::Io {
                action: "writing the log of",
                path: drv.to_string().into(),
                source: e,
            })?;
            partial.extend_from_slice(&buffer[..n]);
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&partial[..end]).into_owned();
                partial.drain(..=end);
                self.log_line(drv, &mut tail, line);
            }
        }
        if !partial.is_empty() {
            self.log_line(drv, &mut tail, String::from_utf8_lossy(&partial).into_owned());
        }
        Ok((tail.into(), stopped))
    }

    /// Checks, canonicalises, scans and registers (or, for `--check`,
    /// compares) each output the builder left. Every output is checked,
    /// its reference constraints included, before any is registered.
    fn finish_outputs(
        &self,
        job: &Job,
        outputs: &BTreeMap<String, StorePath>,
        inputs: &[StorePath],
        spec: &SandboxSpec,
        mut declared: Declared,
        constraints: &[Constraint],
    ) -> Result<()> {
        let drv = job.drv_path.to_string();
        let mut candidates: Vec<StorePath> = inputs.to_vec();
        candidates.extend(outputs.values().cloned());
        let mut finished = Vec::new();
        for (name, path) in outputs {
            let host = spec.output_on_host(&path.base_name());
            if fs::symlink_metadata(&host).is_err() {
                return Err(BuildError::MissingOutput { drv, output: name.clone(), path: path.to_string() });
            }
            output::canonicalise(&job.drv.name, &host)?;
            if let Some(fixed) = &job.drv.outputs[name].fixed {
                output::verify_fixed(&drv, &host, fixed)?;
            }
            if job.check {
                self.compare_with_valid(&drv, path, &host)?;
                continue;
            }
            let hashed = declared.archive_hashes.remove(name);
            let output = match declared.references.remove(name) {
                Some(references) => Finished { name, path, host, references, scanned: false, hashed },
                None => {
                    let references =
                        scan_references(&host, &candidates).map_err(io_err("scanning the references of", &host))?;
                    Finished { name, path, host, references, scanned: true, hashed }
                }
            };
            finished.push(output);
        }
        self.check_constraints(&drv, &finished, constraints)?;
        for output in finished {
            let deriver = Some(job.drv_path.clone());
            match output.hashed {
                Some(hashed) => {
                    self.store.install_hashed(output.path, &output.host, hashed, output.references, deriver)
                }
                None => self.store.install(output.path, &output.host, output.references, deriver),
            }?;
        }
        Ok(())
    }

    /// Fails with every dependency of `finished` that `constraints` forbid.
    /// The closure of a new output runs through its siblings' new
    /// references, then through the store's records of the inputs.
    fn check_constraints(&self, drv: &str, finished: &[Finished<'_>], constraints: &[Constraint]) -> Result<()> {
        if constraints.is_empty() {
            return Ok(());
        }
        let fresh: BTreeMap<&StorePath, &BTreeSet<StorePath>> =
            finished.iter().map(|f| (f.path, &f.references)).collect();
        let mut references = |path: &StorePath| -> Result<BTreeSet<StorePath>> {
            match fresh.get(path) {
                Some(references) => Ok((*references).clone()),
                None => Ok(self.store.infos(std::slice::from_ref(path))?.remove(0).references),
            }
        };
        let mut violations = Vec::new();
        for output in finished {
            for mut violation in constraints::check(constraints, output.name, output.path, &mut references)? {
                // Where the output mentions the next path, unless a builtin
                // declared its references to spare reading a large output.
                if let (true, Some(next)) = (output.scanned, violation.chain.get(1)) {
                    let found = find_occurrences(&output.host, &next.hash_part())
                        .map_err(io_err("searching the references of", &output.host))?;
                    violation.found_in = found.iter().take(SHOWN_OCCURRENCES).map(describe_occurrence).collect();
                }
                violations.push(violation);
            }
        }
        if violations.is_empty() {
            return Ok(());
        }
        Err(BuildError::ForbiddenReferences { drv: drv.to_string(), violations })
    }

    /// `--check`: the rebuilt output must be bit-identical to the files of
    /// the valid one. Those are hashed, not taken from the record, so a
    /// path modified in the store never passes; the record only tells a
    /// modified path from a builder that is not deterministic.
    fn compare_with_valid(&self, drv: &str, path: &StorePath, rebuilt: &Path) -> Result<()> {
        let Some(info) = self.store.query(path)? else {
            return Err(BuildError::BadDerivation {
                drv: drv.into(),
                message: format!("cannot check {path}: it was never built"),
            });
        };
        let hash = |tree: &Path| mini_store::nar::hash_path(tree).map(|(hash, size)| (*hash.as_bytes(), size));
        let valid = self.store.physical_path(path);
        let Ok(in_store) = hash(&valid) else {
            return Err(BuildError::ModifiedOutput { path: path.to_string(), files: vec![path.to_string()] });
        };
        let rebuilt_hash = hash(rebuilt).map_err(mini_store::store::StoreError::from)?;
        if in_store == rebuilt_hash {
            return Ok(());
        }
        let mut files = output::differing_files(&valid, rebuilt).map_err(io_err("comparing", rebuilt))?;
        // The output itself (a single file, say) differs: name it.
        for file in files.iter_mut().filter(|f| f.as_str() == ".") {
            *file = path.to_string();
        }
        if in_store != (info.nar_hash, info.nar_size) {
            return Err(BuildError::ModifiedOutput { path: path.to_string(), files });
        }
        Err(BuildError::NotDeterministic { drv: drv.into(), files })
    }
}

/// An output checked and scanned, waiting to be registered.
struct Finished<'a> {
    name: &'a str,
    path: &'a StorePath,
    /// Where it is now, in the build's root.
    host: PathBuf,
    references: BTreeSet<StorePath>,
    /// Whether the references were scanned (else a builtin declared them).
    scanned: bool,
    /// The archive hash and size a builtin computed as it wrote the output.
    hashed: Option<(blake3::Hash, u64)>,
}

/// How many places a reference-constraint failure shows per path.
const SHOWN_OCCURRENCES: usize = 3;

/// `file: …context…`, as `mini why-depends` shows an occurrence.
fn describe_occurrence(occurrence: &Occurrence) -> String {
    format!("{}: …{}…", occurrence.file_label(), occurrence.context)
}

/// Where the log of a derivation's last build is kept.
pub fn log_path(store: &Store, drv_path: &StorePath) -> PathBuf {
    store.root().join("log").join(drv_path.base_name())
}

/// The base name of the derivation's `buildRoot`, checked: one store
/// path of its input closure, for a sandboxed builder. Anything else is an
/// error, not ignored.
fn build_root_of(job: &Job, builtin: bool, inputs: &[StorePath]) -> Result<Option<String>> {
    let Some(value) = job.drv.env.get("buildRoot") else { return Ok(None) };
    let bad = |message: String| BuildError::BadDerivation { drv: job.drv_path.to_string(), message };
    if builtin {
        return Err(bad(format!("buildRoot is for builders run in the sandbox, not for {}", job.drv.builder)));
    }
    let input = inputs.iter().find(|p| p.to_string() == *value).ok_or_else(|| {
        bad(format!(
            "buildRoot '{value}' is not a store path among the derivation's inputs: give the root itself \
             (buildRoot = pkgs.debian.root {{ … }};), not a path inside it or a string without its context"
        ))
    })?;
    Ok(Some(input.base_name()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::testing::{add_drv, Scratch};

    /// A builtin builder that counts how many of its builds run at once.
    #[derive(Default)]
    struct Concurrency {
        running: AtomicUsize,
        most: AtomicUsize,
    }

    struct Tracked(Arc<Concurrency>);

    impl BuiltinBuilder for Tracked {
        fn name(&self) -> &'static str {
            "tracked"
        }

        fn build(&self, job: &mut BuiltinJob<'_>) -> Result<()> {
            let now = self.0.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.0.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(40));
            self.0.running.fetch_sub(1, Ordering::SeqCst);
            let out = &job.outputs["out"];
            fs::write(out, job.drv.name.as_bytes()).map_err(io_err("writing", out))
        }
    }

    /// Offers the outputs of derivations named `broken`, then fails to
    /// deliver them.
    struct Broken;

    impl Substituter for Broken {
        fn has(&self, path: &StorePath) -> bool {
            path.name() == "broken"
        }

        fn substitute(&self, _: &Store, _: &StorePath) -> std::result::Result<bool, String> {
            Ok(false)
        }
    }

    /// Counts the derivations announced by each kind of plan event.
    #[derive(Default)]
    struct Plans {
        planned: AtomicUsize,
        more: AtomicUsize,
    }

    impl Observer for Plans {
        fn event(&self, event: Event<'_>) {
            match event {
                Event::Planned { total } => self.planned.fetch_add(total, Ordering::SeqCst),
                Event::PlannedMore { count } => self.more.fetch_add(count, Ordering::SeqCst),
                _ => 0,
            };
        }
    }

    #[test]
    fn a_failed_substitution_builds_the_skipped_inputs_within_the_job_limit() {
        let s = Scratch::new("fallback");
        let store = Store::open(&s.0).unwrap();
        let inputs: Vec<StorePath> =
            (0..4).map(|i| add_drv(&store, &format!("in{i}"), "builtin:tracked", &[])).collect();
        let broken = add_drv(&store, "broken", "builtin:tracked", &inputs.iter().collect::<Vec<_>>());
        // `top` makes broken the longest chain, so a worker takes it first
        // while the other worker builds the others.
        let top = add_drv(&store, "top", "builtin:tracked", &[&broken]);
        let mut targets: Vec<StorePath> =
            (0..4).map(|i| add_drv(&store, &format!("other{i}"), "builtin:tracked", &[])).collect();
        targets.insert(0, top);

        let counts = Arc::new(Concurrency::default());
        let plans = Plans::default();
        let options = BuildOptions { jobs: 2, ..BuildOptions::default() };
        let report = Builder::new(&store, options, &plans)
            .with_builtin(Box::new(Tracked(counts.clone())))
            .with_substituter(&Broken)
            .realise(&targets, false)
            .unwrap();
        assert!(report.failed.is_empty() && report.not_attempted.is_empty(), "{report:?}");
        assert_eq!(report.built.len(), 6, "the four others, broken and top: {report:?}");
        assert!(inputs.iter().all(|drv| {
            let out = store.read_derivation(drv).unwrap().outputs["out"].path.clone().unwrap();
            store.is_valid(&out)
        }));
        // The first plan left broken's inputs out; they came as more work.
        assert_eq!(plans.planned.load(Ordering::SeqCst), 6);
        assert_eq!(plans.more.load(Ordering::SeqCst), 4);
        assert!(
            counts.most.load(Ordering::SeqCst) <= 2,
            "{} builds ran at once with -j 2",
            counts.most.load(Ordering::SeqCst)
        );
    }

    /// Writes `data` holding the derivation's name into a directory.
    struct Named;

    impl BuiltinBuilder for Named {
        fn name(&self) -> &'static str {
            "named"
        }

        fn build(&self, job: &mut BuiltinJob<'_>) -> Result<()> {
            let out = &job.outputs["out"];
            fs::create_dir(out)
                .and_then(|()| fs::write(out.join("data"), job.drv.name.as_bytes()))
                .map_err(io_err("writing", out))
        }
    }

    #[test]
    fn check_compares_the_rebuild_with_the_files_in_the_store() {
        use std::os::unix::fs::PermissionsExt;
        let s = Scratch::new("check-files");
        let store = Store::open(&s.0).unwrap();
        let drv = add_drv(&store, "thing", "builtin:named", &[]);
        let builder = Builder::new(&store, BuildOptions::default(), &Silent).with_builtin(Box::new(Named));
        assert!(builder.realise(std::slice::from_ref(&drv), false).unwrap().failed.is_empty());
        assert!(builder.realise(std::slice::from_ref(&drv), true).unwrap().failed.is_empty(), "deterministic");
        let out = store.read_derivation(&drv).unwrap().outputs["out"].path.clone().unwrap();
        let data = store.physical_path(&out).join("data");
        fs::set_permissions(&data, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&data, "evil").unwrap();
        // The record still says what was built: only the files tell.
        let report = builder.realise(std::slice::from_ref(&drv), true).unwrap();
        match &report.failed[..] {
            [(_, BuildError::ModifiedOutput { path, files })] => {
                assert_eq!((path, &files[..]), (&out.to_string(), &["data".to_string()][..]));
            }
            other => panic!("expected the modification to be found: {other:?}"),
        }
    }

    /// Writes `data` holding the env's `mention` (store paths) into a
    /// directory, and declares its references when `declare` is set.
    struct Mention;

    impl BuiltinBuilder for Mention {
        fn name(&self) -> &'static str {
            "mention"
        }

        fn build(&self, job: &mut BuiltinJob<'_>) -> Result<()> {
            let out = &job.outputs["out"];
            let mention = job.drv.env.get("mention").cloned().unwrap_or_default();
            fs::create_dir(out).and_then(|()| fs::write(out.join("data"), &mention)).map_err(io_err("writing", out))?;
            if job.drv.env.contains_key("declare") {
                let paths = mention.split_whitespace().map(|p| StorePath::parse(p).unwrap()).collect();
                job.references.insert("out".into(), paths);
            }
            Ok(())
        }
    }

    /// A `builtin:mention` derivation on the `out` of each of `inputs`,
    /// with `env`; its `.drv` path and output path.
    fn add_mention(store: &Store, name: &str, inputs: &[&StorePath], env: &[(&str, String)]) -> (StorePath, StorePath) {
        let mut drv = Derivation {
            name: name.into(),
            outputs: BTreeMap::from([("out".to_string(), mini_store::derivation::Output { path: None, fixed: None })]),
            input_drvs: inputs.iter().map(|p| ((*p).clone(), BTreeSet::from(["out".to_string()]))).collect(),
            input_srcs: BTreeSet::new(),
            system: SYSTEM.into(),
            builder: "builtin:mention".into(),
            args: vec![],
            env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        };
        fn modulo(store: &Store, drv: &StorePath) -> mini_store::derivation::ModuloHash {
            store.read_derivation(drv).unwrap().hash_modulo(&mut |p| modulo(store, p))
        }
        let hash = drv.hash_modulo(&mut |p| modulo(store, p));
        drv.fill_output_paths(hash).unwrap();
        let out = drv.outputs["out"].path.clone().unwrap();
        let references = drv.input_drvs.keys().cloned().collect();
        let file = mini_store::store::TextFile { name: format!("{name}.drv"), text: drv.to_json(), references };
        (store.add_texts(&[file]).unwrap().remove(0), out)
    }

    #[test]
    fn reference_constraints_hold_for_builtin_outputs_and_nothing_invalid_is_registered() {
        let s = Scratch::new("constraints");
        let store = Store::open(&s.0).unwrap();
        let builder = Builder::new(&store, BuildOptions::default(), &Silent).with_builtin(Box::new(Mention));
        let build = |drv: &StorePath| {
            let mut report = builder.realise(std::slice::from_ref(drv), false).unwrap();
            report.failed.pop().map(|(_, e)| e)
        };
        let (tool_drv, tool) = add_mention(&store, "tool", &[], &[]);
        let (lib_drv, lib) = add_mention(&store, "lib", &[&tool_drv], &[("mention", tool.to_string())]);
        assert!(build(&lib_drv).is_none());

        // Scanned references: the file that mentions the tool is named.
        for declare in [false, true] {
            let mut env = vec![("mention", tool.to_string()), ("disallowedReferences", tool.to_string())];
            if declare {
                env.push(("declare", "1".into()));
            }
            let (drv, out) = add_mention(&store, "app", &[&tool_drv], &env);
            match build(&drv) {
                Some(BuildError::ForbiddenReferences { violations, .. }) => {
                    assert_eq!(violations.len(), 1, "{violations:?}");
                    assert_eq!(violations[0].chain, [out.clone(), tool.clone()]);
                    assert_eq!(violations[0].attribute, "disallowedReferences");
                    let found = &violations[0].found_in;
                    match declare {
                        false => assert!(found.len() == 1 && found[0].starts_with("data: …"), "{found:?}"),
                        true => assert!(found.is_empty(), "a declared output is not read again: {found:?}"),
                    }
                }
                other => panic!("expected ForbiddenReferences, got {other:?}"),
            }
            assert!(!store.is_valid(&out), "a forbidden output was registered");
        }

        // Requisites: the chain runs through lib, and names the attribute.
        let env = [("mention", lib.to_string()), ("disallowedRequisites", tool.to_string())];
        let (drv, out) = add_mention(&store, "app", &[&lib_drv], &env);
        let err = build(&drv).expect("tool is in the closure");
        let message = err.to_string();
        assert!(message.contains(&format!("depends on {tool}, which its disallowedRequisites forbids")), "{message}");
        assert!(message.contains(&format!("  {out}\n  └───{lib}\n      data: …")), "{message}");
        assert!(message.contains(&format!("      └───{tool}\n")), "{message}");
        assert!(!store.is_valid(&out));

        // Kept promises register as usual.
        let env = [("mention", lib.to_string()), ("allowedReferences", lib.to_string())];
        let (drv, out) = add_mention(&store, "app", &[&lib_drv], &env);
        assert!(build(&drv).is_none());
        assert_eq!(store.query(&out).unwrap().unwrap().references, BTreeSet::from([lib.clone()]));
        let (drv, out) = add_mention(&store, "empty", &[&lib_drv], &[("allowedRequisites", String::new())]);
        assert!(build(&drv).is_none());
        assert!(store.is_valid(&out));
    }
}
