//! The client side of remote builds: [`RemoteBuilder`] is the build
//! scheduler's [`RemoteExecutor`]. For each derivation the scheduler finds
//! ready it
//!
//! 1. makes the Action ([`crate::action`]) from the derivation's input
//!    closure and the NAR digests of its paths;
//! 2. asks the action cache (`GetActionResult`): a hit means nothing is
//!    executed (a cached failure counts as a miss, as Bazel takes it);
//! 3. otherwise sends what CAS lacks (`FindMissingBlobs`, then batches or
//!    ByteStream) and calls `Execute`, following the operation to its end
//!    (again with `WaitExecution` if the stream breaks, as when the server
//!    restarts);
//! 4. reads each output's NAR, checked against the result's digest, and
//!    unpacks it where the sandbox would have left it. The scheduler then
//!    scans and registers it as after a local build.
//!
//! Any answer that fails a check is refused whole: the scheduler builds
//! the derivation here instead ([`RemoteFailure::Unavailable`]), and
//! nothing of the answer reaches the store.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mini_build::{RemoteExecutor, RemoteFailure, RemoteOutcome, RemoteRequest};
use mini_store::store::Store;
use mini_store::store_path::StorePath;
use tokio_stream::StreamExt;

use crate::action::{self, InputPath};
use crate::cas::{Cas, Connection, MAX_MESSAGE};
use crate::digest::{Digest, SHA256};
use crate::endpoint::Endpoint;
use crate::error::{RemoteError, Result};
use crate::nar_blob;
use crate::proto::longrunning::operation;
use crate::proto::re;
use crate::proto::re::action_cache_client::ActionCacheClient;
use crate::proto::re::execution_client::ExecutionClient;
use crate::proto::{self, unpack};

/// How often a broken `Execute` is followed again before the derivation
/// is built here.
const EXECUTE_ATTEMPTS: u32 = 8;
/// How long after an action's timeout the client stops waiting for the
/// server to report it.
const EXECUTE_GRACE: Duration = Duration::from_secs(60);

/// What a client did, for `mini build`'s summary and the benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Actions the service executed.
    pub executed: u64,
    /// Actions the action cache answered.
    pub cached: u64,
    pub uploaded_blobs: u64,
    pub uploaded_bytes: u64,
    pub downloaded_bytes: u64,
}

/// Builds derivations on a REAPI service.
pub struct RemoteBuilder {
    runtime: tokio::runtime::Runtime,
    connection: Connection,
    /// NAR digests of local store paths, computed once per process.
    digests: Mutex<HashMap<StorePath, Digest>>,
    timeout: Option<Duration>,
    executed: AtomicU64,
    cached: AtomicU64,
    uploaded_blobs: AtomicU64,
    uploaded_bytes: AtomicU64,
    downloaded_bytes: AtomicU64,
}

impl RemoteBuilder {
    /// Connects to the service at `endpoint` and reads its capabilities.
    /// `timeout` bounds each action's execution, as `--timeout` does a
    /// local build.
    pub fn connect(endpoint: &Endpoint, timeout: Option<Duration>) -> Result<RemoteBuilder> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Connect { url: endpoint.text.clone(), message: e.to_string() })?;
        let connection = runtime.block_on(Connection::open(endpoint))?;
        Ok(RemoteBuilder {
            runtime,
            connection,
            digests: Mutex::new(HashMap::new()),
            timeout,
            executed: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            uploaded_blobs: AtomicU64::new(0),
            uploaded_bytes: AtomicU64::new(0),
            downloaded_bytes: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> Stats {
        Stats {
            executed: self.executed.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            uploaded_blobs: self.uploaded_blobs.load(Ordering::Relaxed),
            uploaded_bytes: self.uploaded_bytes.load(Ordering::Relaxed),
            downloaded_bytes: self.downloaded_bytes.load(Ordering::Relaxed),
        }
    }

    /// The NAR digest of a valid path of `store`.
    fn digest(&self, store: &Store, path: &StorePath) -> Result<Digest> {
        if let Some(digest) = self.digests.lock().unwrap_or_else(|e| e.into_inner()).get(path) {
            return Ok(*digest);
        }
        let digest = nar_blob::digest_of(&store.physical_path(path))?;
        self.digests.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone(), digest);
        Ok(digest)
    }

    /// The Action for `request`, with the inputs it names.
    fn prepare(&self, request: &RemoteRequest<'_>) -> Result<(action::Prepared, Vec<InputPath>)> {
        let mut roots: Vec<StorePath> = request.inputs.to_vec();
        roots.push(request.drv_path.clone());
        // Every output of each input derivation, as the worker's scheduler
        // (like this one) takes an input derivation as built only when all
        // of its outputs are valid; the sandbox still sees only those used.
        for input in request.drv.input_drvs.keys() {
            let input_drv = request.store.read_derivation(input)?;
            roots.extend(input_drv.outputs.values().filter_map(|o| o.path.clone()));
        }
        let mut inputs = Vec::new();
        for info in request.store.closure(&roots)? {
            let digest = self.digest(request.store, &info.path)?;
            inputs.push(InputPath { path: info.path, digest, references: info.references });
        }
        let outputs: Vec<StorePath> = request.outputs.keys().cloned().collect();
        Ok((action::prepare(request.drv_path, &outputs, &inputs, self.timeout), inputs))
    }

    async fn run(&self, request: &RemoteRequest<'_>) -> Result<Finished> {
        let (prepared, inputs) = self.prepare(request)?;
        let cas = self.connection.cas();
        // A cached failure is a miss, as Bazel takes it: the failure may
        // have been the machine's, and is executed again, not believed.
        let cached = self.look_up(&prepared.action).await?;
        let cached_failure = cached.as_ref().is_some_and(|r| r.exit_code != 0);
        if let Some(result) = cached.filter(|r| r.exit_code == 0) {
            return self.finish(&cas, request, &result, true).await;
        }
        self.upload(&cas, request.store, &prepared, &inputs).await?;
        let response = match self.timeout {
            // The server enforces the action's timeout; this bounds a
            // server that never finishes the operation.
            Some(timeout) => {
                tokio::time::timeout(timeout + EXECUTE_GRACE, self.execute(&prepared.action, cached_failure))
                    .await
                    .map_err(|_| {
                    RemoteError::Refused(format!("no result {} s after the action's timeout", EXECUTE_GRACE.as_secs()))
                })??
            }
            None => self.execute(&prepared.action, cached_failure).await?,
        };
        let result = response.result.ok_or_else(|| RemoteError::Refused("the ExecuteResponse has no result".into()))?;
        self.finish(&cas, request, &result, response.cached_result).await
    }

    /// The action cache's result for `action`, if it has one.
    async fn look_up(&self, action: &Digest) -> Result<Option<re::ActionResult>> {
        let mut client = ActionCacheClient::new(self.connection.channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let request = re::GetActionResultRequest {
            instance_name: self.connection.instance().to_string(),
            action_digest: Some(action.to_proto()),
            inline_stdout: true,
            inline_stderr: true,
            ..Default::default()
        };
        match client.get_action_result(request).await {
            Ok(result) => Ok(Some(result.into_inner())),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(RemoteError::rpc("GetActionResult")(status)),
        }
    }

    /// Sends what CAS lacks of the Action, its messages and its inputs.
    async fn upload(&self, cas: &Cas, store: &Store, prepared: &action::Prepared, inputs: &[InputPath]) -> Result<()> {
        let mut wanted: Vec<Digest> = prepared.messages.iter().map(|(d, _)| *d).collect();
        wanted.extend(inputs.iter().map(|i| i.digest));
        let missing = cas.find_missing(&wanted).await?;
        let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
        let mut sent = BTreeSet::new();
        for (digest, bytes) in &prepared.messages {
            if missing.contains(digest) && sent.insert(*digest) {
                blobs.push((*digest, bytes.clone()));
            }
        }
        for input in inputs {
            if missing.contains(&input.digest) && sent.insert(input.digest) {
                let (digest, bytes) = nar_blob::read(&store.physical_path(&input.path))?;
                if digest != input.digest {
                    return Err(RemoteError::Io {
                        action: "archiving",
                        path: store.physical_path(&input.path),
                        source: std::io::Error::other("its files changed while it was sent"),
                    });
                }
                blobs.push((digest, bytes));
            }
        }
        self.uploaded_blobs.fetch_add(blobs.len() as u64, Ordering::Relaxed);
        self.uploaded_bytes.fetch_add(blobs.iter().map(|(d, _)| d.size).sum(), Ordering::Relaxed);
        cas.upload(blobs).await
    }

    /// `Execute`, followed to the end of its operation; a broken stream
    /// is resumed with `WaitExecution`, or the action sent again (the
    /// server deduplicates it), with a growing pause.
    async fn execute(&self, action: &Digest, skip_cache_lookup: bool) -> Result<re::ExecuteResponse> {
        let mut client = ExecutionClient::new(self.connection.channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let mut operation_name: Option<String> = None;
        let mut pause = Duration::from_millis(200);
        let mut last_error = None;
        // Broken streams are counted apart from failed executions: news of
        // the operation forgives the first, nothing the second.
        let (mut breaks, mut failures) = (0, 0);
        while breaks < EXECUTE_ATTEMPTS && failures < EXECUTE_ATTEMPTS {
            let stream = match &operation_name {
                Some(name) => client
                    .wait_execution(re::WaitExecutionRequest { name: name.clone() })
                    .await
                    .map_err(RemoteError::rpc("WaitExecution")),
                None => client
                    .execute(re::ExecuteRequest {
                        instance_name: self.connection.instance().to_string(),
                        skip_cache_lookup,
                        action_digest: Some(action.to_proto()),
                        digest_function: SHA256,
                        ..Default::default()
                    })
                    .await
                    .map_err(RemoteError::rpc("Execute")),
            };
            match stream {
                Ok(stream) => match follow(stream.into_inner(), &mut operation_name, &mut breaks).await {
                    Ok(Some(response)) => return Ok(response),
                    Ok(None) => {
                        breaks += 1;
                        last_error = Some(RemoteError::Refused("the operation ended without a result".into()));
                    }
                    Err(e @ RemoteError::Operation { .. }) if e.is_transient() => {
                        failures += 1;
                        last_error = Some(e);
                    }
                    Err(e) if e.is_transient() => {
                        breaks += 1;
                        last_error = Some(e);
                    }
                    Err(e) => return Err(e),
                },
                // An operation the server forgot (it restarted): send the action again.
                Err(RemoteError::Rpc { code: tonic::Code::NotFound, .. }) if operation_name.is_some() => {
                    operation_name = None;
                    breaks += 1;
                    continue;
                }
                Err(e) if e.is_transient() => {
                    breaks += 1;
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
        Err(last_error.unwrap_or_else(|| RemoteError::Refused("Execute gave no answer".into())))
    }

    /// Reads a result's log and outputs, checking each against its digest,
    /// and unpacks the outputs where the request says.
    async fn finish(
        &self,
        cas: &Cas,
        request: &RemoteRequest<'_>,
        result: &re::ActionResult,
        cached: bool,
    ) -> Result<Finished> {
        // The logs (unless inlined) and the outputs, in one batch where
        // they are small.
        let streams = [
            (&result.stdout_raw, result.stdout_digest.as_ref(), "the build log"),
            (&result.stderr_raw, result.stderr_digest.as_ref(), "the build's stderr"),
        ];
        let mut wanted: Vec<(Digest, String)> = Vec::new();
        for (raw, digest, what) in streams {
            if let Some(digest) = digest.filter(|d| raw.is_empty() && d.size_bytes > 0) {
                wanted.push((Digest::from_proto(digest, what)?, what.to_string()));
            }
        }
        let logs = wanted.len();
        let outputs: Vec<StorePath> = request.outputs.keys().cloned().collect();
        let produced = if result.exit_code == 0 { action::read_outputs(result, &outputs)? } else { Vec::new() };
        wanted.extend(produced.iter().map(|(path, digest)| (*digest, format!("output {}", path.base_name()))));
        let asked: Vec<(Digest, &str)> = wanted.iter().map(|(d, w)| (*d, w.as_str())).collect();
        let mut blobs = cas.read_many(&asked).await?.into_iter();
        let mut log = Vec::new();
        for (raw, digest, _) in streams {
            match digest.filter(|d| raw.is_empty() && d.size_bytes > 0) {
                Some(_) => log.extend(blobs.next().unwrap_or_default()),
                None => log.extend_from_slice(raw),
            }
        }
        debug_assert_eq!(blobs.len(), wanted.len() - logs);
        if result.exit_code != 0 {
            return Ok(Finished::Failed { status: format!("failed with exit code {}", result.exit_code), log });
        }
        let fetched: Vec<(StorePath, Digest, Vec<u8>)> =
            produced.into_iter().zip(blobs).map(|((path, digest), bytes)| (path, digest, bytes)).collect();
        self.downloaded_bytes.fetch_add(fetched.iter().map(|(_, d, _)| d.size).sum(), Ordering::Relaxed);
        // Only once every output is here and checked is any unpacked.
        for (path, _, bytes) in &fetched {
            nar_blob::unpack(bytes, &request.outputs[path], &format!("output {}", path.base_name()))?;
        }
        // The archive of what is registered is the blob read: the next
        // actions need not hash it again.
        let mut digests = self.digests.lock().unwrap_or_else(|e| e.into_inner());
        for (path, digest, _) in fetched {
            digests.insert(path, digest);
        }
        drop(digests);
        if cached {
            self.cached.fetch_add(1, Ordering::Relaxed);
        } else {
            self.executed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Finished::Built { cached, log })
    }
}

/// How a remote build ended, before the scheduler sees it.
enum Finished {
    Built { cached: bool, log: Vec<u8> },
    Failed { status: String, log: Vec<u8> },
}

/// Follows an operation stream to its end: the `ExecuteResponse` of the
/// finished operation, `None` if the stream ended first. Remembers the
/// operation's name for `WaitExecution`; news of it resets `breaks`.
async fn follow(
    mut stream: tonic::Streaming<crate::proto::longrunning::Operation>,
    name: &mut Option<String>,
    breaks: &mut u32,
) -> Result<Option<re::ExecuteResponse>> {
    while let Some(operation) = stream.next().await {
        let operation = operation.map_err(RemoteError::rpc("Execute"))?;

        if !operation.name.is_empty() {
            *name = Some(operation.name.clone());
        }
        if !operation.done {
            // News of an unfinished operation is progress: a long action
            // may outlive many streams.
            *breaks = 0;
            continue;
        }
        // A finished operation cannot be waited on again: if it failed,
        // the action is sent again.
        *name = None;
        return match operation.result {
            Some(operation::Result::Response(any)) => {
                let response: re::ExecuteResponse = unpack(&any, proto::EXECUTE_RESPONSE)
                    .ok_or_else(|| RemoteError::Refused(format!("the operation's response is a {}", any.type_url)))?
                    .map_err(|e| RemoteError::Refused(format!("the ExecuteResponse is not valid: {e}")))?;
                match response.status.as_ref().filter(|s| s.code != 0) {
                    Some(status) => Err(RemoteError::Operation {
                        code: tonic::Code::from(status.code),
                        message: status.message.clone(),
                    }),
                    None => Ok(Some(response)),
                }
            }
            Some(operation::Result::Error(status)) => {
                Err(RemoteError::Operation { code: tonic::Code::from(status.code), message: status.message })
            }
            None => Err(RemoteError::Refused("the finished operation holds neither a response nor an error".into())),
        };
    }
    Ok(None)
}

impl RemoteExecutor for RemoteBuilder {
    fn execute(&self, request: RemoteRequest<'_>) -> std::result::Result<RemoteOutcome, RemoteFailure> {
        match self.runtime.block_on(self.run(&request)) {
            Ok(Finished::Built { cached, log }) => Ok(RemoteOutcome { cached, log }),
            Ok(Finished::Failed { status, log }) => Err(RemoteFailure::Builder { status, log }),
            // Only the operation's own status says the action ran out of
            // time; another call's deadline says nothing of the build.
            Err(RemoteError::Operation { code: tonic::Code::DeadlineExceeded, message }) => {
                Err(RemoteFailure::Builder { status: format!("timed out ({message})"), log: Vec::new() })
            }
            Err(error) => {
                for dest in request.outputs.values() {
                    mini_store::store::discard_tree(dest);
                }
                Err(RemoteFailure::Unavailable(error.to_string()))
            }
        }
    }
}
