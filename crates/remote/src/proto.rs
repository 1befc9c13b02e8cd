//! The protocol's messages and clients. REAPI, ByteStream and longrunning
//! come generated from the `bazel-remote-apis` crate; the Bots API
//! (`google.devtools.remoteworkers.v1test2`), which that crate lacks, is
//! declared here from its published field numbers, with a client for its
//! two calls mini's worker makes.

pub use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
pub use bazel_remote_apis::google::bytestream;
pub use bazel_remote_apis::google::longrunning;
pub use bazel_remote_apis::google::protobuf::Any;
pub use bazel_remote_apis::google::rpc::Status;

/// `type.googleapis.com/` and a message's full name: what an [`Any`]
/// holding it says.
pub fn type_url(full_name: &str) -> String {
    format!("type.googleapis.com/{full_name}")
}

pub const ACTION: &str = "build.bazel.remote.execution.v2.Action";
pub const ACTION_RESULT: &str = "build.bazel.remote.execution.v2.ActionResult";
pub const DIGEST: &str = "build.bazel.remote.execution.v2.Digest";
pub const EXECUTE_RESPONSE: &str = "build.bazel.remote.execution.v2.ExecuteResponse";

/// `message` packed into an [`Any`].
pub fn pack(full_name: &str, message: &impl prost::Message) -> Any {
    Any { type_url: type_url(full_name), value: message.encode_to_vec() }
}

/// The message an [`Any`] holds, if it is a `full_name`.
pub fn unpack<M: prost::Message + Default>(any: &Any, full_name: &str) -> Option<Result<M, prost::DecodeError>> {
    (any.type_url.rsplit('/').next() == Some(full_name)).then(|| M::decode(any.value.as_slice()))
}

/// `google.devtools.remoteworkers.v1test2`: bot sessions and leases.
pub mod bots {
    use super::{Any, Status};
    use tonic::codegen::http;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BotSession {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub bot_id: String,
        #[prost(enumeration = "BotStatus", tag = "3")]
        pub status: i32,
        #[prost(message, optional, tag = "4")]
        pub worker: Option<Worker>,
        #[prost(message, repeated, tag = "5")]
        pub leases: Vec<Lease>,
        #[prost(string, tag = "7")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Lease {
        #[prost(string, tag = "7")]
        pub id: String,
        #[prost(message, optional, tag = "8")]
        pub payload: Option<Any>,
        #[prost(message, optional, tag = "9")]
        pub result: Option<Any>,
        #[prost(enumeration = "LeaseState", tag = "2")]
        pub state: i32,
        #[prost(message, optional, tag = "3")]
        pub status: Option<Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Worker {
        #[prost(message, repeated, tag = "1")]
        pub devices: Vec<Device>,
        #[prost(message, repeated, tag = "2")]
        pub properties: Vec<Property>,
        #[prost(message, repeated, tag = "3")]
        pub configs: Vec<Property>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Device {
        #[prost(string, tag = "1")]
        pub handle: String,
        #[prost(message, repeated, tag = "2")]
        pub properties: Vec<Property>,
    }

    /// `Worker.Property`, `Worker.Config` and `Device.Property` alike: a
    /// key and a value.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Property {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CreateBotSessionRequest {
        #[prost(string, tag = "1")]
        pub parent: String,
        #[prost(message, optional, tag = "2")]
        pub bot_session: Option<BotSession>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UpdateBotSessionRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub bot_session: Option<BotSession>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum BotStatus {
        Unspecified = 0,
        Ok = 1,
        Unhealthy = 2,
        HostRebooting = 3,
        BotTerminating = 4,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum LeaseState {
        Unspecified = 0,
        Pending = 1,
        Active = 2,
        Completed = 4,
        Cancelled = 5,
    }

    /// The Bots service's client: `CreateBotSession` and `UpdateBotSession`.
    #[derive(Clone)]
    pub struct BotsClient {
        inner: tonic::client::Grpc<tonic::transport::Channel>,
    }

    impl BotsClient {
        pub fn new(channel: tonic::transport::Channel) -> BotsClient {
            BotsClient { inner: tonic::client::Grpc::new(channel) }
        }

        pub async fn create_bot_session(
            &mut self,
            request: CreateBotSessionRequest,
        ) -> Result<BotSession, tonic::Status> {
            self.call("/google.devtools.remoteworkers.v1test2.Bots/CreateBotSession", tonic::Request::new(request))
                .await
        }

        /// A request, so that it may carry a deadline (the long poll's).
        pub async fn update_bot_session(
            &mut self,
            request: tonic::Request<UpdateBotSessionRequest>,
        ) -> Result<BotSession, tonic::Status> {
            self.call("/google.devtools.remoteworkers.v1test2.Bots/UpdateBotSession", request).await
        }

        async fn call<Q: prost::Message + Send + Sync + 'static>(
            &mut self,
            path: &'static str,
            request: tonic::Request<Q>,
        ) -> Result<BotSession, tonic::Status> {
            self.inner
                .ready()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("the service is not ready: {e}")))?;
            let codec = tonic_prost::ProstCodec::<Q, BotSession>::default();
            let path = http::uri::PathAndQuery::from_static(path);
            Ok(self.inner.unary(request, path, codec).await?.into_inner())
        }
    }
}
