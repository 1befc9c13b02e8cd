//! `mini worker`: a bot of a REAPI server's Bots service
//! (`google.devtools.remoteworkers.v1test2`). Each of its `-j` sessions
//! takes one lease at a time, reads the Action, Command and input root
//! from CAS, imports the input closure into the worker's own store, builds
//! the derivation with the scheduler and sandbox of a local build, and
//! reports an ActionResult: the outputs as NAR blobs, the build log as
//! stdout, and the builder's exit status. The server stores successful
//! results in its action cache.
//!
//! What the worker trusts: nothing of an Action but its digests. Every
//! blob is checked against its digest; the Command must be one mini sends
//! ([`crate::action::read_command`]), without the network; the input root
//! must hold exactly the NARs its manifest lists, with references inside
//! it; each NAR is unpacked by the store's restore, which writes through
//! no link; a `.drv` must still give its own path when read, and name the
//! output paths its contents give (`hashDerivationModulo`). A path the
//! worker's store already holds is used only if its NAR and references are
//! those the Action names; only the requested derivation is built (the
//! outputs of its inputs must all come with the Action); an output already
//! held is served only if this worker built it from that derivation. So one
//! client cannot slip other contents under a path into another client's
//! result: at worst its own actions are refused.
//!
//! A session that loses its server (a restart, a network failure) keeps
//! asking for a minute while it holds a lease (a server back in time takes
//! the result), and is otherwise created again with a growing pause (0.1 s
//! to 5 s); the server requeues the leases of a bot that stopped answering.
//! `--timeout` caps each Action's own timeout; `--max-silent-time` applies
//! to every build.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mini_build::schedule::log_path;
use mini_build::{BuildError, BuildOptions, Builder};
use mini_store::derivation::ModuloHash;
use mini_store::store::{discard_tree, Store};
use mini_store::store_path::StorePath;
use tokio::runtime::Handle;

use crate::action::{self, InputPath};
use crate::cas::{Cas, Connection};
use crate::digest::Digest;
use crate::endpoint::Endpoint;
use crate::error::{RemoteError, Result};
use crate::nar_blob;
use crate::proto::bots::{self, BotSession, BotStatus, BotsClient, LeaseState};
use crate::proto::{self, re, unpack, Any, Status};
use prost::Message;

/// How often a session reports while it builds, so the server knows the
/// bot is alive (its keepalive timeout is seconds to minutes).
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How long an idle session's request waits for a lease; the server
/// shortens it to its keepalive timeout.
const LONG_POLL: Duration = Duration::from_secs(30);
/// How long a session with a lease is asked for again before it is given up.
const KEEP_TRYING: Duration = Duration::from_secs(60);
/// The least time between an idle session's requests.
const IDLE_PAUSE: Duration = Duration::from_millis(50);
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// How a worker runs.
pub struct WorkerOptions {
    pub endpoint: Endpoint,
    /// Bot sessions, each building one derivation at a time.
    pub sessions: usize,
    /// How each build runs (`jobs` is ignored: one derivation per lease;
    /// `timeout` caps an Action's own).
    pub build: BuildOptions,
}

/// What the sessions share.
struct Shared {
    store: Store,
    connection: Connection,
    build: BuildOptions,
    /// NAR digests and references of paths of this worker's store, read
    /// once.
    verified: Mutex<HashMap<StorePath, (Digest, BTreeSet<StorePath>)>>,
    /// Hashes modulo of derivations whose output paths were checked.
    modulo: Mutex<HashMap<StorePath, ModuloHash>>,
}

/// Runs the worker until it is killed: it never returns but for an
/// error before its first session.
pub fn run(store: Store, options: WorkerOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RemoteError::Connect { url: options.endpoint.text.clone(), message: e.to_string() })?;
    // The channel's connection tasks run on this runtime.
    let _context = runtime.enter();
    let connection = Connection::lazy(&options.endpoint)?;
    let mut build = options.build;
    build.jobs = 1;
    let shared = Arc::new(Shared {
        store,
        connection,
        build,
        verified: Mutex::new(HashMap::new()),
        modulo: Mutex::new(HashMap::new()),
    });
    let prefix = bot_prefix();
    runtime.block_on(async {
        let sessions: Vec<_> = (0..options.sessions.max(1))
            .map(|i| tokio::spawn(keep_session(shared.clone(), format!("{prefix}-{i}"))))
            .collect();
        for session in sessions {
            let _ = session.await;
        }
    });
    Ok(())
}

/// A bot id unique among this host's workers, and naming nothing of the
/// host: `mini-<pid>-<time>`.
fn bot_prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("mini-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// One bot session, created again whenever it is lost.
async fn keep_session(shared: Arc<Shared>, bot_id: String) {
    let mut pause = FIRST_PAUSE;
    loop {
        if let Err(error) = serve(&shared, &bot_id, &mut pause).await {
            eprintln!("mini worker {bot_id}: {error}; connecting again in {:.1} s", pause.as_secs_f64());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// A lease being built, and how it ended once it has.
struct Running {
    lease: String,
    task: tokio::task::JoinHandle<(Status, Option<re::ActionResult>)>,
    ended: Option<(Status, Option<re::ActionResult>)>,
}

/// Creates a session and serves it until an error.
async fn serve(shared: &Arc<Shared>, bot_id: &str, pause: &mut Duration) -> Result<()> {
    let mut client = BotsClient::new(shared.connection.channel.clone());
    let request = bots::CreateBotSessionRequest {
        parent: shared.connection.instance().to_string(),
        bot_session: Some(BotSession {
            bot_id: bot_id.to_string(),
            status: BotStatus::Ok as i32,
            worker: Some(worker_description(bot_id)),
            ..Default::default()
        }),
    };
    let mut session = client.create_bot_session(request).await.map_err(RemoteError::rpc("CreateBotSession"))?;
    eprintln!("mini worker {bot_id}: serving {} as {}", shared.connection.endpoint.text, session.name);
    *pause = FIRST_PAUSE;
    let mut running: Option<Running> = None;
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        if let Some((done, (status, result))) =
            running.as_mut().and_then(|r| r.ended.take().map(|e| (r.lease.clone(), e)))
        {
            for lease in session.leases.iter_mut().filter(|l| l.id == done) {
                lease.state = LeaseState::Completed as i32;
                lease.status = Some(status.clone());
                lease.result = result.as_ref().map(|r| proto::pack(proto::ACTION_RESULT, r));
            }
            running = None;
        }
        let mut request = tonic::Request::new(bots::UpdateBotSessionRequest {
            name: session.name.clone(),
            bot_session: Some(session.clone()),
        });
        request.set_timeout(if running.is_some() { LONG_POLL.min(Duration::from_secs(10)) } else { LONG_POLL });
        let asked = std::time::Instant::now();
        session = match client.update_bot_session(request).await.map_err(RemoteError::rpc("UpdateBotSession")) {
            Ok(answer) => {
                failing_since = None;
                answer
            }
            // While it builds, or holds a result to report, the bot keeps
            // its session and asks again (for a minute): a server back
            // within its keepalive takes the result.
            Err(error)
                if error.is_transient()
                    && !session.leases.is_empty()
                    && failing_since.get_or_insert_with(std::time::Instant::now).elapsed() < KEEP_TRYING =>
            {
                eprintln!("mini worker {bot_id}: {error}; asking again with its lease");
                match running.as_mut() {
                    Some(building) if building.ended.is_none() => wait_for(building, REPORT_EVERY).await,
                    _ => tokio::time::sleep(REPORT_EVERY).await,
                }
                continue;
            }
            Err(error) => {
                // Never two builds at once in one session: the lost lease's
                // build ends before another session is made.
                if let Some(building) = running.take().filter(|r| r.ended.is_none()) {
                    eprintln!("mini worker {bot_id}: lost the session; waiting for lease {} to end", building.lease);
                    let _ = building.task.await;
                }
                return Err(error);
            }
        };
        let mut accepted = false;
        for lease in &mut session.leases {
            let state = LeaseState::try_from(lease.state).unwrap_or(LeaseState::Unspecified);
            let ours = running.as_ref().is_some_and(|r| r.lease == lease.id);
            match state {
                LeaseState::Pending | LeaseState::Active if !ours && running.is_none() => {
                    lease.state = LeaseState::Active as i32;
                    let task = start(shared.clone(), bot_id.to_string(), lease.id.clone(), lease.payload.clone());
                    running = Some(Running { lease: lease.id.clone(), task, ended: None });
                    accepted = true;
                }
                LeaseState::Cancelled if ours => {
                    eprintln!("mini worker {bot_id}: lease {} was cancelled; its result will not be sent", lease.id);
                    running = None;
                }
                _ => {}
            }
        }
        session.leases.retain(|l| {
            let state = LeaseState::try_from(l.state).unwrap_or(LeaseState::Unspecified);
            !matches!(state, LeaseState::Cancelled | LeaseState::Completed)
        });
        if accepted {
            // Say at once that the lease is taken.
            continue;
        }
        // A server that answers an idle bot at once (BuildGrid does when
        // its keepalive timeout is shorter than its network timeout) is
        // asked again after a pause, not in a busy loop.
        if running.is_none() && asked.elapsed() < IDLE_PAUSE {
            tokio::time::sleep(IDLE_PAUSE).await;
        }
        if let Some(building) = running.as_mut() {
            wait_for(building, REPORT_EVERY).await;
        }
    }
}

/// Waits at most `limit` for a build to end, keeping how it ended. Its
/// task is awaited only here (and, once it is known not to have ended,
/// when a session is lost), so never after it ended.
async fn wait_for(building: &mut Running, limit: Duration) {
    if building.ended.is_some() {
        return;
    }
    if let Ok(joined) = tokio::time::timeout(limit, &mut building.task).await {
        building.ended = Some(joined.unwrap_or_else(|e| {
            let message = format!("the build task failed: {e}");
            (Status { code: tonic::Code::Internal as i32, message, details: Vec::new() }, None)
        }));
    }
}

/// The worker as the Bots service sees it: one device whose properties
/// match the platform mini's Actions ask for.
fn worker_description(bot_id: &str) -> bots::Worker {
    bots::Worker {
        devices: vec![bots::Device {
            handle: bot_id.to_string(),
            properties: action::PLATFORM
                .iter()
                .map(|(key, value)| bots::Property { key: key.to_string(), value: value.to_string() })
                .collect(),
        }],
        ..Default::default()
    }
}

/// Builds a lease's Action on a blocking thread.
fn start(
    shared: Arc<Shared>,
    bot_id: String,
    lease: String,
    payload: Option<Any>,
) -> tokio::task::JoinHandle<(Status, Option<re::ActionResult>)> {
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || match run_lease(&shared, &handle, &bot_id, payload.as_ref()) {
        Ok(result) => (Status::default(), Some(result)),
        Err(error) => {
            eprintln!("mini worker {bot_id}: lease {lease}: {error}");
            // A refused Action fails for good; anything else may work on
            // another bot, and the server retries it.
            let code = if matches!(error, RemoteError::Refused(_)) {
                tonic::Code::FailedPrecondition
            } else {
                tonic::Code::Internal
            };
            (Status { code: code as i32, message: error.to_string(), details: Vec::new() }, None)
        }
    })
}

/// Reads, imports, builds and reports one Action.
fn run_lease(shared: &Shared, handle: &Handle, bot_id: &str, payload: Option<&Any>) -> Result<re::ActionResult> {
    let cas = shared.connection.cas();
    let payload = payload.ok_or_else(|| RemoteError::Refused("the lease has no payload".into()))?;
    let bad = |e: prost::DecodeError| RemoteError::Refused(format!("the lease's payload is not valid: {e}"));
    let action: re::Action = if let Some(action) = unpack(payload, proto::ACTION) {
        action.map_err(bad)?
    } else if let Some(digest) = unpack::<re::Digest>(payload, proto::DIGEST) {
        let digest = Digest::from_proto(&digest.map_err(bad)?, "the lease's Action")?;
        handle.block_on(cas.read_message(&digest, "the Action"))?
    } else {
        return Err(RemoteError::Refused(format!("the lease's payload is a {}, not an Action", payload.type_url)));
    };
    let (command, inputs) = read_input_root(handle, &cas, &action)?;
    let requested = action::read_command(&action, &command)?;
    let held: BTreeSet<&StorePath> = inputs.iter().map(|i| &i.path).collect();
    if !held.contains(&requested.drv_path) {
        return Err(RemoteError::Refused(format!("the input root lacks the derivation {}", requested.drv_path)));
    }
    if let Some(output) = requested.outputs.iter().find(|o| held.contains(o)) {
        return Err(RemoteError::Refused(format!("the input root holds the output {output}")));
    }
    import(shared, handle, &cas, &inputs)?;
    let drv = shared.store.read_derivation(&requested.drv_path)?;
    check_derivations(shared, &inputs)?;
    let declared: BTreeSet<StorePath> = drv.outputs.values().filter_map(|o| o.path.clone()).collect();
    if declared != requested.outputs.iter().cloned().collect() {
        return Err(RemoteError::Refused(format!("the Command's outputs are not those of {}", requested.drv_path)));
    }
    if drv.fixed_output().is_some() || drv.builder.starts_with("builtin:") {
        return Err(RemoteError::Refused(format!(
            "{} is fixed-output or has a builtin builder: mini builds those on the client",
            requested.drv_path
        )));
    }
    // Only this derivation is built: every output of its inputs must have
    // come with the Action (anything else would be built too, a
    // fixed-output one with the network).
    for input in drv.input_drvs.keys() {
        if !mini_build::dag::outputs_valid(&shared.store, &shared.store.read_derivation(input)?) {
            return Err(RemoteError::Refused(format!("the input root lacks outputs of {input}")));
        }
    }
    // An output already here is served only if this worker built it from
    // this derivation, never one a client sent as an input.
    for output in &requested.outputs {
        if let Some(info) = shared.store.query(output)? {
            if info.deriver.as_ref() != Some(&requested.drv_path) {
                return Err(RemoteError::Refused(format!(
                    "{output} is in this worker's store, but was not built here from {}",
                    requested.drv_path
                )));
            }
        }
    }
    eprintln!("mini worker {bot_id}: building {}", requested.drv_path);
    let mut options = shared.build.clone();
    // The Action's timeout is the client's --timeout; the worker's own
    // --timeout caps it.
    if let Some(timeout) = action.timeout.as_ref().filter(|t| t.seconds > 0 || t.nanos > 0) {
        let asked = Duration::new(timeout.seconds.max(0) as u64, timeout.nanos.clamp(0, 999_999_999) as u32);
        options.timeout = Some(options.timeout.map_or(asked, |cap| cap.min(asked)));
    }
    let builder = Builder::new(&shared.store, options, &mini_build::schedule::Silent);
    let report = builder.realise(std::slice::from_ref(&requested.drv_path), false)?;
    let mut log = std::fs::read(log_path(&shared.store, &requested.drv_path)).unwrap_or_default();
    if let Some((_, error)) = report.failed.first() {
        eprintln!("mini worker {bot_id}: failed {}", requested.drv_path);
        // The builder's exit code where it has one, and why it failed as
        // the log's last line (a timeout has no exit code of its own).
        let (exit_code, reason) = match error {
            BuildError::BuilderFailed { status, .. } => (
                status.strip_prefix("failed with exit code ").and_then(|c| c.parse().ok()).unwrap_or(1),
                format!("mini worker: the builder {status}"),
            ),
            other => (1, format!("mini worker: {other}")),
        };
        log.extend_from_slice(format!("{reason}\n").as_bytes());
        let stdout = upload_log(handle, &cas, log)?;
        return Ok(re::ActionResult { exit_code, stdout_digest: Some(stdout.to_proto()), ..Default::default() });
    }
    if !report.not_attempted.is_empty() {
        return Err(RemoteError::Refused(format!("{} could not be built from its input root", requested.drv_path)));
    }
    let mut output_files = Vec::new();
    let mut blobs = Vec::new();
    for output in &requested.outputs {
        let (digest, bytes) = nar_blob::read(&shared.store.physical_path(output))?;
        output_files.push(re::OutputFile {
            path: action::nar_file(output),
            digest: Some(digest.to_proto()),
            ..Default::default()
        });
        blobs.push((digest, bytes));
    }
    output_files.sort_by(|a, b| a.path.cmp(&b.path));
    let stdout = Digest::of(&log);
    blobs.push((stdout, log));
    let digests: Vec<Digest> = blobs.iter().map(|(d, _)| *d).collect();
    let missing = handle.block_on(cas.find_missing(&digests))?;
    blobs.retain(|(d, _)| missing.contains(d));
    handle.block_on(cas.upload(blobs))?;
    eprintln!("mini worker {bot_id}: built {}", requested.drv_path);
    Ok(re::ActionResult {
        output_files,
        exit_code: 0,
        stdout_digest: Some(stdout.to_proto()),
        execution_metadata: Some(re::ExecutedActionMetadata { worker: bot_id.to_string(), ..Default::default() }),
        ..Default::default()
    })
}

fn upload_log(handle: &Handle, cas: &Cas, log: Vec<u8>) -> Result<Digest> {
    let digest = Digest::of(&log);
    handle.block_on(cas.upload(vec![(digest, log)]))?;
    Ok(digest)
}

/// The Action's Command, and its input root's NARs and manifest, checked
/// against each other: the directories in one `GetTree` (read one by one
/// from a server without it), the Command and manifest in one batch.
fn read_input_root(handle: &Handle, cas: &Cas, action: &re::Action) -> Result<(re::Command, Vec<InputPath>)> {
    let command_digest = Digest::required(action.command_digest.as_ref(), "the Action's Command")?;
    let root_digest = Digest::required(action.input_root_digest.as_ref(), "the Action's input root")?;
    let (mini, store) = match handle.block_on(cas.tree(&root_digest)) {
        Ok(tree) => {
            let get = |digest: &Digest, what: &str| {
                tree.get(digest).cloned().ok_or_else(|| RemoteError::Refused(format!("GetTree did not give {what}")))
            };
            let root = get(&root_digest, "the input root")?;
            let mini = get(&action::subdirectory(&root, "mini")?, "mini/")?;
            let store = get(&action::subdirectory(&mini, "store")?, "mini/store/")?;
            (mini, store)
        }
        Err(RemoteError::Rpc { code: tonic::Code::Unimplemented, .. }) => {
            let root: re::Directory = handle.block_on(cas.read_message(&root_digest, "the input root"))?;
            let mini: re::Directory =
                handle.block_on(cas.read_message(&action::subdirectory(&root, "mini")?, "mini/"))?;
            let store = handle.block_on(cas.read_message(&action::subdirectory(&mini, "store")?, "mini/store/"))?;
            (mini, store)
        }
        Err(error) => return Err(error),
    };
    let nars = action::read_store_dir(&store)?;
    let manifest_digest = action::file(&mini, action::MANIFEST)?;
    for (digest, what) in [(manifest_digest, "the manifest"), (command_digest, "the Command")] {
        if digest.size > crate::cas::MAX_MESSAGE_BLOB {
            return Err(RemoteError::Refused(format!("{what} is too large")));
        }
    }
    let mut blobs =
        handle.block_on(cas.read_many(&[(command_digest, "the Command"), (manifest_digest, "the manifest")]))?;
    let manifest = String::from_utf8(blobs.pop().unwrap_or_default())
        .map_err(|_| RemoteError::Refused("the manifest is not UTF-8".into()))?;
    let command = re::Command::decode(blobs.pop().unwrap_or_default().as_slice())
        .map_err(|e| RemoteError::Refused(format!("the Command is not valid: {e}")))?;
    Ok((command, action::read_manifest(&manifest, &nars)?))
}

/// Checks that every derivation among the inputs names the output paths
/// its contents give (Nix's `hashDerivationModulo`): a client cannot have
/// the worker build one derivation's outputs from another recipe, nor make
/// an input derivation point at a path of its choosing. What was checked
/// is remembered for the worker's life (store paths do not change).
fn check_derivations(shared: &Shared, inputs: &[InputPath]) -> Result<()> {
    let mut known = shared.modulo.lock().unwrap_or_else(|e| e.into_inner());
    for input in inputs.iter().filter(|i| i.path.name().ends_with(".drv")) {
        modulo_of(&shared.store, &input.path, &mut known)?;
    }
    Ok(())
}

/// The hash modulo of a derivation of the store, whose inputs' are found
/// first (depth first, with an explicit stack) and whose output paths are
/// checked against it.
fn modulo_of(store: &Store, drv_path: &StorePath, known: &mut HashMap<StorePath, ModuloHash>) -> Result<ModuloHash> {
    let mut stack = vec![drv_path.clone()];
    while let Some(path) = stack.last().cloned() {
        if known.contains_key(&path) {
            stack.pop();
            continue;
        }
        let drv = store.read_derivation(&path)?;
        let missing: Vec<StorePath> = drv.input_drvs.keys().filter(|i| !known.contains_key(*i)).cloned().collect();
        if !missing.is_empty() {
            if stack.len() > store_path_limit() {
                return Err(RemoteError::Refused(format!("the derivations below {drv_path} are nested too deep")));
            }
            stack.extend(missing);
            continue;
        }
        // As the evaluator hashes it: output paths and their variables blank.
        let mut filled = drv.clone();
        for (name, output) in filled.outputs.iter_mut() {
            output.path = None;
            filled.env.insert(name.clone(), String::new());
        }
        let modulo = filled.hash_modulo(&mut |input| known.get(input).copied().unwrap_or(ModuloHash([0; 32])));
        filled.fill_output_paths(modulo).map_err(|e| RemoteError::Refused(format!("{path}: {e}")))?;
        let variables_agree =
            filled.outputs.iter().all(|(name, o)| o.path.as_ref().map(|p| p.to_string()).as_ref() == drv.env.get(name));
        if filled.outputs != drv.outputs || !variables_agree {
            return Err(RemoteError::Refused(format!("{path} names output paths its contents do not give")));
        }
        known.insert(path, modulo);
        stack.pop();
    }
    Ok(known[drv_path])
}

/// How deep the derivation graph of one Action may go.
fn store_path_limit() -> usize {
    1 << 16
}

/// Makes every input valid in the worker's store, references first; the
/// NARs it lacks are read in as few calls as the server allows.
fn import(shared: &Shared, handle: &Handle, cas: &Cas, inputs: &[InputPath]) -> Result<()> {
    let store = &shared.store;
    let order = in_dependency_order(inputs)?;
    let lacking: Vec<&InputPath> = order.iter().copied().filter(|i| !store.is_valid(&i.path)).collect();
    let names: Vec<String> = lacking.iter().map(|i| format!("input {}", i.path.base_name())).collect();
    let wanted: Vec<(Digest, &str)> = lacking.iter().zip(&names).map(|(i, n)| (i.digest, n.as_str())).collect();
    let mut fetched: HashMap<&StorePath, Vec<u8>> =
        lacking.iter().map(|i| &i.path).zip(handle.block_on(cas.read_many(&wanted))?).collect();
    for input in order {
        let _lock = store.lock(&input.path)?;
        if store.is_valid(&input.path) {
            check_held(shared, input)?;
            continue;
        }
        let what = format!("input {}", input.path.base_name());
        let bytes = match fetched.remove(&input.path) {
            Some(bytes) => bytes,
            // Made invalid since (a collection): read it now.
            None => handle.block_on(cas.read(&input.digest, &what))?,
        };
        let staging = store.staging_dir()?;
        let dest = staging.join("nar");
        let installed = nar_blob::unpack(&bytes, &dest, &what)
            .and_then(|()| Ok(store.install(&input.path, &dest, input.references.clone(), None)?));
        discard_tree(&staging);
        installed?;
        shared
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(input.path.clone(), (input.digest, input.references.clone()));
    }
    Ok(())
}

/// A path the worker's store already holds is used only if its NAR and
/// references are those the Action names (checked once per process).
fn check_held(shared: &Shared, input: &InputPath) -> Result<()> {
    let known = shared.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&input.path).cloned();
    let (digest, references) = match known {
        Some(known) => known,
        None => {
            let digest = nar_blob::digest_of(&shared.store.physical_path(&input.path))?;
            let references = shared.store.query(&input.path)?.map(|info| info.references).unwrap_or_default();
            shared
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(input.path.clone(), (digest, references.clone()));
            (digest, references)
        }
    };
    if digest != input.digest {
        return Err(RemoteError::Refused(format!(
            "{} in this worker's store has the NAR digest {digest}, but the Action names {}",
            input.path, input.digest
        )));
    }
    if references != input.references {
        return Err(RemoteError::Refused(format!(
            "{} in this worker's store has other references than the Action names",
            input.path
        )));
    }
    Ok(())
}

/// `inputs` with every path after its references (the manifest holds
/// every reference; a path's reference to itself is no edge). A cycle,
/// which no store can hold, is refused.
fn in_dependency_order(inputs: &[InputPath]) -> Result<Vec<&InputPath>> {
    let by_path: BTreeMap<&StorePath, &InputPath> = inputs.iter().map(|i| (&i.path, i)).collect();
    let mut placed: BTreeSet<&StorePath> = BTreeSet::new();
    let mut open: BTreeSet<&StorePath> = BTreeSet::new();
    let mut order = Vec::new();
    for input in inputs {
        let mut stack = vec![(input, false)];
        while let Some((node, expanded)) = stack.pop() {
            if placed.contains(&node.path) {
                continue;
            }
            if expanded {
                open.remove(&node.path);
                placed.insert(&node.path);
                order.push(node);
                continue;
            }
            if !open.insert(&node.path) {
                return Err(RemoteError::Refused(format!("the manifest's references of {} form a cycle", node.path)));
            }
            stack.push((node, true));
            for reference in &node.references {
                if reference == &node.path || placed.contains(reference) {
                    continue;
                }
                if open.contains(reference) {
                    return Err(RemoteError::Refused(format!("the manifest's references of {reference} form a cycle")));
                }
                if let Some(next) = by_path.get(reference) {
                    stack.push((next, false));
                }
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(base: &str, references: &[&str]) -> InputPath {
        InputPath {
            path: StorePath::parse_base_name(base).unwrap(),
            digest: Digest::of(base.as_bytes()),
            references: references.iter().map(|r| StorePath::parse_base_name(r).unwrap()).collect(),
        }
    }

    const A: &str = "00000000000000000000000000000001-a";
    const B: &str = "00000000000000000000000000000002-b";
    const C: &str = "00000000000000000000000000000003-c";

    /// A derivation as the evaluator makes it, written to `store`.
    fn derivation(store: &Store, name: &str, script: &str) -> (StorePath, mini_store::derivation::Derivation) {
        use mini_store::derivation::{Derivation, Output};
        let mut drv = Derivation {
            name: name.into(),
            outputs: [("out".to_string(), Output { path: None, fixed: None })].into(),
            input_drvs: Default::default(),
            input_srcs: Default::default(),
            system: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: [("out".to_string(), String::new())].into(),
        };
        let modulo = drv.hash_modulo(&mut |_| unreachable!("no inputs"));
        drv.fill_output_paths(modulo).unwrap();
        drv.env.insert("out".into(), drv.outputs["out"].path.as_ref().unwrap().to_string());
        (store.add_text(&format!("{name}.drv"), &drv.to_json(), &BTreeSet::new()).unwrap(), drv)
    }

    #[test]
    fn a_derivation_naming_another_recipe_s_outputs_is_refused() {
        let dir = std::env::temp_dir().join(format!("mini-remote-worker-{}", std::process::id()));
        let store = Store::open(&dir).unwrap();
        let mut known = HashMap::new();
        let (honest, honest_drv) = derivation(&store, "app", "echo honest > $out");
        assert!(modulo_of(&store, &honest, &mut known).is_ok());
        // Another recipe claiming the honest one's output path.
        let mut crafted = honest_drv.clone();
        crafted.args = vec!["-c".into(), "echo evil > $out".into()];
        let crafted_path = store.add_text("app.drv", &crafted.to_json(), &BTreeSet::new()).unwrap();
        assert_ne!(crafted_path, honest);
        let error = modulo_of(&store, &crafted_path, &mut known).unwrap_err().to_string();
        assert!(error.contains("names output paths its contents do not give"), "{error}");
        mini_store::store::discard_tree(&dir);
    }

    #[test]
    fn references_come_first_and_a_cycle_is_refused() {
        let inputs = vec![input(A, &[B, A]), input(B, &[C]), input(C, &[])];
        let order: Vec<String> = in_dependency_order(&inputs).unwrap().iter().map(|i| i.path.base_name()).collect();
        assert_eq!(order, [C, B, A]);
        let cycle = vec![input(A, &[B]), input(B, &[A])];
        assert!(matches!(in_dependency_order(&cycle), Err(RemoteError::Refused(_))));
        let long = vec![input(A, &[B]), input(B, &[C]), input(C, &[A])];
        assert!(matches!(in_dependency_order(&long), Err(RemoteError::Refused(_))));
    }
}
