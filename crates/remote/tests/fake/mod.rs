//! An in-process REAPI server whose answers a test chooses: an honest CAS
//! over memory that can be made to lie (other bytes under a digest, extra
//! bytes on a ByteStream read), an action cache and an `Execute` that give
//! whatever answer the test set, and a record of what the client asked and
//! sent. It serves on 127.0.0.1 on a port of its own, from a runtime on a
//! thread of its own, until dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use mini_remote::digest::Digest;
use mini_remote::endpoint::Endpoint;
use mini_remote::proto::bytestream::byte_stream_server::{ByteStream, ByteStreamServer};
use mini_remote::proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, ReadResponse, WriteRequest, WriteResponse,
};
use mini_remote::proto::longrunning::{operation, Operation};
use mini_remote::proto::re;
use mini_remote::proto::re::action_cache_server::{ActionCache, ActionCacheServer};
use mini_remote::proto::re::capabilities_server::{Capabilities, CapabilitiesServer};
use mini_remote::proto::re::content_addressable_storage_server::{
    ContentAddressableStorage, ContentAddressableStorageServer,
};
use mini_remote::proto::re::execution_server::{Execution, ExecutionServer};
use mini_remote::proto::{self, Status};
use tokio_stream::Stream;
use tonic::{Request, Response};

type Answer<T> = Result<Response<T>, tonic::Status>;
type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// How the finished operation of `Execute` ends.
#[derive(Clone)]
pub enum ExecuteAnswer {
    /// An `ExecuteResponse` holding this result.
    Result(Box<re::ActionResult>),
    /// An `ExecuteResponse` whose status is this error.
    ResponseStatus(tonic::Code, String),
    /// The operation's error.
    Error(tonic::Code, String),
    /// A response that is some other message.
    WrongType,
    /// Done, with neither a response nor an error.
    Empty,
}

/// How `BatchReadBlobs` lies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BatchLie {
    Honest,
    /// Answers under another digest.
    OtherDigest,
    /// Answers each blob twice.
    Twice,
    /// Answers nothing.
    Nothing,
}

/// What the server does, and what it saw.
pub struct State {
    /// `max_batch_total_size_bytes` of the capabilities.
    pub max_batch: i64,
    /// The digest functions the capabilities name.
    pub digest_functions: Vec<i32>,
    /// Blobs by digest; a test may put other bytes under a digest.
    pub cas: BTreeMap<Digest, Vec<u8>>,
    /// What `GetActionResult` answers, for any action (`None`: NotFound).
    pub action_cache: Option<re::ActionResult>,
    /// An error `GetActionResult` answers instead.
    pub action_cache_error: Option<tonic::Code>,
    pub execute: ExecuteAnswer,
    /// Bytes a ByteStream read sends after the blob.
    pub read_extra: Vec<u8>,
    pub batch_lie: BatchLie,
    /// A digest `FindMissingBlobs` names as missing besides those asked.
    pub missing_extra: Option<Digest>,
    /// What every ByteStream `Write` says it committed, if not the truth.
    pub committed: Option<i64>,
    /// The digests each `FindMissingBlobs` asked about.
    pub asked: Vec<Vec<Digest>>,
    /// Every blob received, by `BatchUpdateBlobs` or ByteStream `Write`.
    pub uploaded: Vec<Digest>,
    /// Uploads whose bytes did not match their digest.
    pub bad_uploads: Vec<String>,
    /// Actions `Execute` was asked to run.
    pub executed: Vec<Digest>,
    /// Blobs read by either way, and those by ByteStream.
    pub read: Vec<Digest>,
    pub streamed: Vec<Digest>,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<State>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake server.
pub struct FakeServer {
    state: Shared,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Serves an empty CAS and action cache with an `Execute` that fails,
    /// batches of at most `max_batch` bytes.
    pub fn start(max_batch: i64) -> FakeServer {
        let state = Shared(Arc::new(Mutex::new(State {
            max_batch,
            digest_functions: vec![re::digest_function::Value::Sha256 as i32],
            cas: BTreeMap::new(),
            action_cache: None,
            action_cache_error: None,
            execute: ExecuteAnswer::Error(tonic::Code::FailedPrecondition, "no answer was set".into()),
            read_extra: Vec::new(),
            batch_lie: BatchLie::Honest,
            missing_extra: None,
            committed: None,
            asked: Vec::new(),
            uploaded: Vec::new(),
            bad_uploads: Vec::new(),
            executed: Vec::new(),
            read: Vec::new(),
            streamed: Vec::new(),
        })));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("start the fake server's runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind the fake server");
        let addr = listener.local_addr().expect("the fake server's address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let server = tonic::transport::Server::builder()
                .add_service(CapabilitiesServer::new(served.clone()))
                .add_service(ActionCacheServer::new(served.clone()))
                .add_service(
                    ContentAddressableStorageServer::new(served.clone())
                        .max_decoding_message_size(max_batch.max(4 << 20) as usize + (1 << 20)),
                )
                .add_service(ExecutionServer::new(served.clone()))
                .add_service(ByteStreamServer::new(served))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                });
            if let Err(e) = runtime.block_on(server) {
                eprintln!("the fake server stopped: {e}");
            }
        });
        FakeServer { state, addr, stop: Some(stop), thread: Some(thread) }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&format!("grpc://127.0.0.1:{}", self.addr.port())).expect("the fake server's address")
    }

    /// The state, to set answers or read the record.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Puts an honest blob in CAS; its digest.
    pub fn put(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        self.state().cas.insert(digest, bytes.to_vec());
        digest
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn digest_of(digest: Option<&re::Digest>) -> Result<Digest, tonic::Status> {
    let digest = digest.ok_or_else(|| tonic::Status::invalid_argument("no digest"))?;
    Digest::from_proto(digest, "request").map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

fn status(code: tonic::Code, message: &str) -> Status {
    Status { code: code as i32, message: message.to_string(), details: Vec::new() }
}

/// `[INSTANCE/]uploads/UUID/blobs/HASH/SIZE` or `[INSTANCE/]blobs/HASH/SIZE`:
/// the digest.
fn resource_digest(name: &str) -> Result<Digest, tonic::Status> {
    let bad = || tonic::Status::invalid_argument(format!("resource name '{name}'"));
    let parts: Vec<&str> = name.split('/').collect();
    let at = parts.iter().position(|p| *p == "blobs").ok_or_else(bad)?;
    let [hash, size] = parts.get(at + 1..at + 3).ok_or_else(bad)? else { return Err(bad()) };
    let size = size.parse().map_err(|_| bad())?;
    Digest::from_proto(&re::Digest { hash: hash.to_string(), size_bytes: size }, "resource")
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl Capabilities for Shared {
    async fn get_capabilities(&self, _: Request<re::GetCapabilitiesRequest>) -> Answer<re::ServerCapabilities> {
        let state = self.lock();
        Ok(Response::new(re::ServerCapabilities {
            cache_capabilities: Some(re::CacheCapabilities {
                digest_functions: state.digest_functions.clone(),
                max_batch_total_size_bytes: state.max_batch,
                ..Default::default()
            }),
            execution_capabilities: Some(re::ExecutionCapabilities {
                digest_function: re::digest_function::Value::Sha256 as i32,
                exec_enabled: true,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl ActionCache for Shared {
    async fn get_action_result(&self, _: Request<re::GetActionResultRequest>) -> Answer<re::ActionResult> {
        let state = self.lock();
        if let Some(code) = state.action_cache_error {
            return Err(tonic::Status::new(code, "the action cache gave up"));
        }
        match state.action_cache.clone() {
            Some(result) => Ok(Response::new(result)),
            None => Err(tonic::Status::not_found("no such action")),
        }
    }

    async fn update_action_result(&self, _: Request<re::UpdateActionResultRequest>) -> Answer<re::ActionResult> {
        Err(tonic::Status::permission_denied("the fake action cache takes no updates"))
    }
}

#[tonic::async_trait]
impl ContentAddressableStorage for Shared {
    async fn find_missing_blobs(
        &self,
        request: Request<re::FindMissingBlobsRequest>,
    ) -> Answer<re::FindMissingBlobsResponse> {
        let asked =
            request.into_inner().blob_digests.iter().map(|d| digest_of(Some(d))).collect::<Result<Vec<_>, _>>()?;
        let mut state = self.lock();
        let mut missing: Vec<re::Digest> =
            asked.iter().filter(|d| !state.cas.contains_key(d)).map(|d| d.to_proto()).collect();
        missing.extend(state.missing_extra.map(Digest::to_proto));
        state.asked.push(asked);
        Ok(Response::new(re::FindMissingBlobsResponse { missing_blob_digests: missing }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<re::BatchUpdateBlobsRequest>,
    ) -> Answer<re::BatchUpdateBlobsResponse> {
        let mut responses = Vec::new();
        let mut state = self.lock();
        for blob in request.into_inner().requests {
            let digest = digest_of(blob.digest.as_ref())?;
            state.uploaded.push(digest);
            if Digest::of(&blob.data) == digest {
                state.cas.insert(digest, blob.data);
                responses.push(re::batch_update_blobs_response::Response {
                    digest: Some(digest.to_proto()),
                    status: Some(status(tonic::Code::Ok, "")),
                });
            } else {
                state.bad_uploads.push(format!("batch {digest}"));
                responses.push(re::batch_update_blobs_response::Response {
                    digest: Some(digest.to_proto()),
                    status: Some(status(tonic::Code::InvalidArgument, "the bytes do not match the digest")),
                });
            }
        }
        Ok(Response::new(re::BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<re::BatchReadBlobsRequest>,
    ) -> Answer<re::BatchReadBlobsResponse> {
        let mut responses = Vec::new();
        let mut state = self.lock();
        for digest in &request.into_inner().digests {
            let digest = digest_of(Some(digest))?;
            state.read.push(digest);
            let response = match state.cas.get(&digest) {
                Some(data) => re::batch_read_blobs_response::Response {
                    digest: Some(digest.to_proto()),
                    data: data.clone(),
                    compressor: 0,
                    status: Some(status(tonic::Code::Ok, "")),
                },
                None => re::batch_read_blobs_response::Response {
                    digest: Some(digest.to_proto()),
                    data: Vec::new(),
                    compressor: 0,
                    status: Some(status(tonic::Code::NotFound, "no such blob")),
                },
            };
            match state.batch_lie {
                BatchLie::Honest => responses.push(response),
                BatchLie::OtherDigest => responses.push(re::batch_read_blobs_response::Response {
                    digest: Some(Digest::of(&response.data).to_proto()),
                    data: response.data,
                    ..response
                }),
                BatchLie::Twice => responses.extend([response.clone(), response]),
                BatchLie::Nothing => {}
            }
        }
        Ok(Response::new(re::BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = Streamed<re::GetTreeResponse>;

    async fn get_tree(&self, _: Request<re::GetTreeRequest>) -> Answer<Self::GetTreeStream> {
        Err(tonic::Status::unimplemented("GetTree"))
    }

    async fn split_blob(&self, _: Request<re::SplitBlobRequest>) -> Answer<re::SplitBlobResponse> {
        Err(tonic::Status::unimplemented("SplitBlob"))
    }

    type GetChunkMappingStream = Streamed<re::GetChunkMappingResponse>;

    async fn get_chunk_mapping(&self, _: Request<re::GetChunkMappingRequest>) -> Answer<Self::GetChunkMappingStream> {
        Err(tonic::Status::unimplemented("GetChunkMapping"))
    }

    async fn splice_blob(&self, _: Request<re::SpliceBlobRequest>) -> Answer<re::SpliceBlobResponse> {
        Err(tonic::Status::unimplemented("SpliceBlob"))
    }

    async fn register_chunk_mapping(
        &self,
        _: Request<tonic::Streaming<re::RegisterChunkMappingRequest>>,
    ) -> Answer<re::RegisterChunkMappingResponse> {
        Err(tonic::Status::unimplemented("RegisterChunkMapping"))
    }
}

#[tonic::async_trait]
impl Execution for Shared {
    type ExecuteStream = Streamed<Operation>;

    async fn execute(&self, request: Request<re::ExecuteRequest>) -> Answer<Self::ExecuteStream> {
        let action = digest_of(request.into_inner().action_digest.as_ref())?;
        let answer = {
            let mut state = self.lock();
            state.executed.push(action);
            state.execute.clone()
        };
        let result = match answer {
            ExecuteAnswer::Result(result) => operation::Result::Response(proto::pack(
                proto::EXECUTE_RESPONSE,
                &re::ExecuteResponse { result: Some(*result), ..Default::default() },
            )),
            ExecuteAnswer::ResponseStatus(code, message) => operation::Result::Response(proto::pack(
                proto::EXECUTE_RESPONSE,
                &re::ExecuteResponse { status: Some(status(code, &message)), ..Default::default() },
            )),
            ExecuteAnswer::Error(code, message) => operation::Result::Error(status(code, &message)),
            ExecuteAnswer::WrongType => operation::Result::Response(proto::pack(proto::DIGEST, &action.to_proto())),
            ExecuteAnswer::Empty => {
                let done = Operation { name: "operations/1".into(), done: true, ..Default::default() };
                return Ok(Response::new(Box::pin(tokio_stream::iter(vec![Ok(done)]))));
            }
        };
        let running = Operation { name: "operations/1".into(), done: false, ..Default::default() };
        let done = Operation { name: "operations/1".into(), done: true, result: Some(result), metadata: None };
        Ok(Response::new(Box::pin(tokio_stream::iter(vec![Ok(running), Ok(done)]))))
    }

    type WaitExecutionStream = Streamed<Operation>;

    async fn wait_execution(&self, _: Request<re::WaitExecutionRequest>) -> Answer<Self::WaitExecutionStream> {
        Err(tonic::Status::not_found("no such operation"))
    }
}

#[tonic::async_trait]
impl ByteStream for Shared {
    type ReadStream = Streamed<ReadResponse>;

    async fn read(&self, request: Request<ReadRequest>) -> Answer<Self::ReadStream> {
        let digest = resource_digest(&request.into_inner().resource_name)?;
        let mut state = self.lock();
        state.read.push(digest);
        state.streamed.push(digest);
        let mut data = state.cas.get(&digest).cloned().ok_or_else(|| tonic::Status::not_found("no such blob"))?;
        data.extend_from_slice(&state.read_extra);
        let pieces: Vec<Result<ReadResponse, tonic::Status>> =
            data.chunks(300).map(|c| Ok(ReadResponse { data: c.to_vec() })).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(pieces))))
    }

    async fn write(&self, request: Request<tonic::Streaming<WriteRequest>>) -> Answer<WriteResponse> {
        let mut stream = request.into_inner();
        let mut resource = None;
        let mut data = Vec::new();
        while let Some(piece) = stream.message().await? {
            if resource.is_none() {
                resource = Some(resource_digest(&piece.resource_name)?);
            }
            if piece.write_offset != data.len() as i64 {
                return Err(tonic::Status::invalid_argument("a write at the wrong offset"));
            }
            data.extend_from_slice(&piece.data);
            if piece.finish_write {
                break;
            }
        }
        let digest = resource.ok_or_else(|| tonic::Status::invalid_argument("an empty write"))?;
        let mut state = self.lock();
        state.uploaded.push(digest);
        if Digest::of(&data) != digest {
            state.bad_uploads.push(format!("stream {digest}"));
            return Err(tonic::Status::invalid_argument("the bytes do not match the digest"));
        }
        state.cas.insert(digest, data);
        Ok(Response::new(WriteResponse { committed_size: state.committed.unwrap_or(digest.size as i64) }))
    }

    async fn query_write_status(&self, _: Request<QueryWriteStatusRequest>) -> Answer<QueryWriteStatusResponse> {
        Err(tonic::Status::unimplemented("QueryWriteStatus"))
    }
}

/// The digests of a record, as a set.
pub fn set(digests: &[Digest]) -> BTreeSet<Digest> {
    digests.iter().copied().collect()
}
