//! The content-addressable storage as a client sees it: which blobs it
//! lacks (`FindMissingBlobs`), sending blobs (`BatchUpdateBlobs` for small
//! ones, ByteStream `Write` for large ones) and reading them back
//! (`BatchReadBlobs` or ByteStream `Read`). Every blob read is checked
//! against its digest, and never read past its size, before anyone sees
//! it: a server that sends other bytes, or none, is refused.
//!
//! [`Connection`] is one channel to the service; the clients of the other
//! services share it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::digest::{Digest, SHA256};
use crate::endpoint::Endpoint;
use crate::error::{RemoteError, Result};
use crate::proto::bytestream::byte_stream_client::ByteStreamClient;
use crate::proto::bytestream::{ReadRequest, WriteRequest};
use crate::proto::re;
use crate::proto::re::content_addressable_storage_client::ContentAddressableStorageClient;

/// The largest message mini accepts from a service.
pub const MAX_MESSAGE: usize = 64 << 20;
/// The largest blob read whole into memory by one call: messages
/// (Actions, Directories, ActionResults) are far smaller.
pub const MAX_MESSAGE_BLOB: u64 = 16 << 20;
/// The most directories an input root may have.
const MAX_TREE: usize = 1024;
/// ByteStream chunks sent.
const CHUNK: usize = 1 << 20;
/// The batch size assumed when the server names none.
const DEFAULT_BATCH: u64 = 4 << 20;
/// Digests asked about in one `FindMissingBlobs`.
const FIND_CHUNK: usize = 4096;

/// A channel to one instance of a remote service.
#[derive(Clone)]
pub struct Connection {
    pub channel: Channel,
    pub endpoint: Endpoint,
    /// The most bytes one batch call may carry, from the server's capabilities.
    pub max_batch: u64,
}

impl Connection {
    /// A channel that connects on first use, and again after the service
    /// restarts; then the server's capabilities are read, so a service
    /// that cannot hash with SHA-256 is refused now, not mid-build.
    pub async fn open(endpoint: &Endpoint) -> Result<Connection> {
        let channel = Connection::channel(endpoint)?;
        let mut connection = Connection { channel, endpoint: endpoint.clone(), max_batch: DEFAULT_BATCH };
        connection.read_capabilities().await?;
        Ok(connection)
    }

    /// [`Connection::open`] without asking for capabilities, for a worker
    /// that must start before its server does.
    pub fn lazy(endpoint: &Endpoint) -> Result<Connection> {
        Ok(Connection { channel: Connection::channel(endpoint)?, endpoint: endpoint.clone(), max_batch: DEFAULT_BATCH })
    }

    fn channel(endpoint: &Endpoint) -> Result<Channel> {
        let bad =
            |e: tonic::transport::Error| RemoteError::Connect { url: endpoint.text.clone(), message: e.to_string() };
        Ok(tonic::transport::Endpoint::from_shared(endpoint.uri.clone())
            .map_err(bad)?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .connect_lazy())
    }

    pub async fn read_capabilities(&mut self) -> Result<()> {
        use crate::proto::re::capabilities_client::CapabilitiesClient;
        let mut client = CapabilitiesClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let request = re::GetCapabilitiesRequest { instance_name: self.endpoint.instance.clone() };
        let capabilities = client.get_capabilities(request).await.map_err(|status| {
            if status.code() == tonic::Code::Unavailable {
                RemoteError::Connect { url: self.endpoint.text.clone(), message: status.message().to_string() }
            } else {
                RemoteError::rpc("GetCapabilities")(status)
            }
        })?;
        let capabilities = capabilities.into_inner();
        let sha256 = SHA256;
        if let Some(cache) = &capabilities.cache_capabilities {
            if !cache.digest_functions.is_empty() && !cache.digest_functions.contains(&sha256) {
                return Err(RemoteError::Unsupported("its storage does not hash with SHA-256".into()));
            }
            // No larger than a message this client may send, whatever the server takes.
            if cache.max_batch_total_size_bytes > 0 {
                self.max_batch = (cache.max_batch_total_size_bytes as u64).min(MAX_MESSAGE as u64);
            }
        }
        Ok(())
    }

    pub fn cas(&self) -> Cas {
        Cas { connection: self.clone() }
    }

    pub fn instance(&self) -> &str {
        &self.endpoint.instance
    }
}

/// The CAS of one instance.
#[derive(Clone)]
pub struct Cas {
    connection: Connection,
}

impl Cas {
    fn client(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.connection.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn byte_stream(&self) -> ByteStreamClient<Channel> {
        ByteStreamClient::new(self.connection.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn instance(&self) -> String {
        self.connection.endpoint.instance.clone()
    }

    /// Those of `digests` the CAS does not hold.
    pub async fn find_missing(&self, digests: &[Digest]) -> Result<BTreeSet<Digest>> {
        let wanted: BTreeSet<Digest> = digests.iter().copied().filter(|d| d.size > 0).collect();
        let wanted: Vec<Digest> = wanted.into_iter().collect();
        let mut missing = BTreeSet::new();
        for chunk in wanted.chunks(FIND_CHUNK) {
            let request = re::FindMissingBlobsRequest {
                instance_name: self.instance(),
                blob_digests: chunk.iter().map(|d| d.to_proto()).collect(),
                digest_function: SHA256,
            };
            let answer =
                self.client().find_missing_blobs(request).await.map_err(RemoteError::rpc("FindMissingBlobs"))?;
            for digest in &answer.into_inner().missing_blob_digests {
                let digest = Digest::from_proto(digest, "FindMissingBlobs")?;
                if !chunk.contains(&digest) {
                    return Err(RemoteError::Refused(format!(
                        "FindMissingBlobs named {digest}, which was not asked about"
                    )));
                }
                missing.insert(digest);
            }
        }
        Ok(missing)
    }

    /// Stores `blobs`: small ones in batches, large ones streamed.
    pub async fn upload(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<()> {
        let limit = self.connection.max_batch.saturating_sub(64 << 10).max(64 << 10);
        let mut batch: Vec<(Digest, Vec<u8>)> = Vec::new();
        let mut batch_size = 0u64;
        for (digest, bytes) in blobs {
            if digest.size == 0 {
                continue;
            }
            if digest.size > limit / 2 {
                self.write(digest, &bytes).await?;
                continue;
            }
            if batch_size + digest.size > limit {
                self.batch_update(std::mem::take(&mut batch)).await?;
                batch_size = 0;
            }
            batch_size += digest.size + 128;
            batch.push((digest, bytes));
        }
        if !batch.is_empty() {
            self.batch_update(batch).await?;
        }
        Ok(())
    }

    async fn batch_update(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<()> {
        use crate::proto::re::batch_update_blobs_request::Request;
        let request = re::BatchUpdateBlobsRequest {
            instance_name: self.instance(),
            requests: blobs
                .into_iter()
                .map(|(digest, data)| Request { digest: Some(digest.to_proto()), data, compressor: 0 })
                .collect(),
            digest_function: SHA256,
        };
        let answer = self.client().batch_update_blobs(request).await.map_err(RemoteError::rpc("BatchUpdateBlobs"))?;
        for response in answer.into_inner().responses {
            if let Some(status) = response.status.filter(|s| s.code != 0) {
                return Err(RemoteError::Rpc {
                    call: "BatchUpdateBlobs",
                    code: tonic::Code::from(status.code),
                    message: status.message,
                });
            }
        }
        Ok(())
    }

    /// ByteStream `Write` of one blob.
    async fn write(&self, digest: Digest, bytes: &[u8]) -> Result<()> {
        let resource =
            format!("{}uploads/{}/blobs/{}/{}", prefix(&self.instance()), upload_id(), digest.hex(), digest.size);
        let mut requests = Vec::new();
        let mut offset = 0usize;
        for chunk in bytes.chunks(CHUNK) {
            let last = offset + chunk.len() == bytes.len();
            requests.push(WriteRequest {
                resource_name: if offset == 0 { resource.clone() } else { String::new() },
                write_offset: offset as i64,
                finish_write: last,
                data: chunk.to_vec(),
            });
            offset += chunk.len();
        }
        let answer = self
            .byte_stream()
            .write(tokio_stream::iter(requests))
            .await
            .map_err(RemoteError::rpc("ByteStream.Write"))?;
        let committed = answer.into_inner().committed_size;
        // A server that already held the blob may answer at once, with its size.
        if committed != digest.size as i64 {
            return Err(RemoteError::Refused(format!("ByteStream.Write of {digest} committed {committed} bytes")));
        }
        Ok(())
    }

    /// The blob `digest` names, checked against it. `what` says what it
    /// is for the error. A blob the CAS lacks is refused as missing.
    pub async fn read(&self, digest: &Digest, what: &str) -> Result<Vec<u8>> {
        if digest.size == 0 {
            digest.verify(&[], what)?;
            return Ok(Vec::new());
        }
        let bytes = if digest.size <= (self.connection.max_batch / 2).min(MAX_MESSAGE_BLOB) {
            self.batch_read(digest, what).await?
        } else {
            self.stream_read(digest, what).await?
        };
        digest.verify(&bytes, what)?;
        Ok(bytes)
    }

    async fn batch_read(&self, digest: &Digest, what: &str) -> Result<Vec<u8>> {
        Ok(self.batch_read_many(&[(*digest, what)]).await?.remove(0))
    }

    /// Several small blobs in one `BatchReadBlobs`, in the order asked.
    async fn batch_read_many(&self, wanted: &[(Digest, &str)]) -> Result<Vec<Vec<u8>>> {
        let request = re::BatchReadBlobsRequest {
            instance_name: self.instance(),
            digests: wanted.iter().map(|(d, _)| d.to_proto()).collect(),
            acceptable_compressors: Vec::new(),
            digest_function: SHA256,
        };
        let answer = self.client().batch_read_blobs(request).await.map_err(RemoteError::rpc("BatchReadBlobs"))?;
        let mut found: BTreeMap<Digest, Vec<u8>> = BTreeMap::new();
        for response in answer.into_inner().responses {
            let Some(digest) = response.digest.as_ref() else {
                return Err(RemoteError::Refused("BatchReadBlobs answered a blob without its digest".into()));
            };
            let digest = Digest::from_proto(digest, "BatchReadBlobs")?;
            let Some((_, what)) = wanted.iter().find(|(d, _)| *d == digest) else {
                return Err(RemoteError::Refused(format!("BatchReadBlobs answered {digest}, which was not asked for")));
            };
            match response.status {
                Some(status) if status.code == tonic::Code::NotFound as i32 => return Err(missing(&digest, what)),
                Some(status) if status.code != 0 => {
                    return Err(RemoteError::Rpc {
                        call: "BatchReadBlobs",
                        code: tonic::Code::from(status.code),
                        message: status.message,
                    })
                }
                _ => {}
            }
            if found.insert(digest, response.data).is_some() {
                return Err(RemoteError::Refused(format!("BatchReadBlobs answered {digest} twice")));
            }
        }
        wanted
            .iter()
            .map(|(digest, what)| {
                found
                    .get(digest)
                    .cloned()
                    .ok_or_else(|| RemoteError::Refused(format!("BatchReadBlobs did not answer {digest} ({what})")))
            })
            .collect()
    }

    /// Several blobs, each checked against its digest: the small ones in
    /// as few batch calls as the server's batch size allows, the large
    /// ones streamed.
    pub async fn read_many(&self, wanted: &[(Digest, &str)]) -> Result<Vec<Vec<u8>>> {
        let small = (self.connection.max_batch / 2).min(MAX_MESSAGE_BLOB);
        let mut blobs: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
        let mut batch: Vec<(usize, Digest, &str)> = Vec::new();
        let mut batch_size = 0u64;
        for (i, (digest, what)) in wanted.iter().enumerate() {
            if digest.size == 0 || digest.size > small {
                blobs[i] = Some(self.read(digest, what).await?);
                continue;
            }
            if batch_size + digest.size > small && !batch.is_empty() {
                self.read_batch_into(&mut blobs, std::mem::take(&mut batch)).await?;
                batch_size = 0;
            }
            batch_size += digest.size;
            batch.push((i, *digest, what));
        }
        if !batch.is_empty() {
            self.read_batch_into(&mut blobs, batch).await?;
        }
        Ok(blobs.into_iter().map(Option::unwrap_or_default).collect())
    }

    async fn read_batch_into(&self, blobs: &mut [Option<Vec<u8>>], batch: Vec<(usize, Digest, &str)>) -> Result<()> {
        // One request per distinct digest; a digest asked twice is read once.
        let mut distinct: Vec<(Digest, &str)> = Vec::new();
        for (_, digest, what) in &batch {
            if !distinct.iter().any(|(d, _)| d == digest) {
                distinct.push((*digest, what));
            }
        }
        let read = self.batch_read_many(&distinct).await?;
        for (i, digest, what) in batch {
            let k = distinct.iter().position(|(d, _)| *d == digest).unwrap_or_default();
            digest.verify(&read[k], what)?;
            blobs[i] = Some(read[k].clone());
        }
        Ok(())
    }

    /// Every Directory below `root` (`GetTree`), by digest; each is
    /// checked by hashing its encoding, so one that does not match is
    /// simply not found.
    pub async fn tree(&self, root: &Digest) -> Result<BTreeMap<Digest, re::Directory>> {
        let mut directories = BTreeMap::new();
        let mut page_token = String::new();
        loop {
            let request = re::GetTreeRequest {
                instance_name: self.instance(),
                root_digest: Some(root.to_proto()),
                page_size: 0,
                page_token: page_token.clone(),
                digest_function: SHA256,
            };
            let mut stream = match self.client().get_tree(request).await {
                Ok(answer) => answer.into_inner(),
                Err(status) if status.code() == tonic::Code::NotFound => return Err(missing(root, "the input root")),
                Err(status) => return Err(RemoteError::rpc("GetTree")(status)),
            };
            let mut next = String::new();
            while let Some(page) = stream.next().await {
                let page = page.map_err(RemoteError::rpc("GetTree"))?;
                for directory in page.directories {
                    let (digest, _) = Digest::of_message(&directory);
                    directories.insert(digest, directory);
                    if directories.len() > MAX_TREE {
                        return Err(RemoteError::Refused(format!(
                            "the input root has more than {MAX_TREE} directories"
                        )));
                    }
                }
                next = page.next_page_token;
            }
            if next.is_empty() || next == page_token {
                return Ok(directories);
            }
            page_token = next;
        }
    }

    async fn stream_read(&self, digest: &Digest, what: &str) -> Result<Vec<u8>> {
        let request = ReadRequest {
            resource_name: format!("{}blobs/{}/{}", prefix(&self.instance()), digest.hex(), digest.size),
            read_offset: 0,
            read_limit: 0,
        };
        let mut stream = match self.byte_stream().read(request).await {
            Ok(answer) => answer.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Err(missing(digest, what)),
            Err(status) => return Err(RemoteError::rpc("ByteStream.Read")(status)),
        };
        let mut bytes = Vec::with_capacity(digest.size.min(1 << 30) as usize);
        while let Some(piece) = stream.next().await {
            let piece = match piece {
                Ok(piece) => piece,
                Err(status) if status.code() == tonic::Code::NotFound => return Err(missing(digest, what)),
                Err(status) => return Err(RemoteError::rpc("ByteStream.Read")(status)),
            };
            if bytes.len() as u64 + piece.data.len() as u64 > digest.size {
                return Err(RemoteError::Refused(format!(
                    "{what}: the service sent more than the {} bytes of {digest}",
                    digest.size
                )));
            }
            bytes.extend_from_slice(&piece.data);
        }
        Ok(bytes)
    }

    /// A message stored as a blob.
    pub async fn read_message<M: prost::Message + Default>(&self, digest: &Digest, what: &str) -> Result<M> {
        if digest.size > MAX_MESSAGE_BLOB {
            return Err(RemoteError::Refused(format!(
                "{what} {digest} is larger than the {MAX_MESSAGE_BLOB} bytes a message may be"
            )));
        }
        let bytes = self.read(digest, what).await?;
        M::decode(bytes.as_slice())
            .map_err(|e| RemoteError::Refused(format!("{what} {digest} is not a valid message: {e}")))
    }
}

fn missing(digest: &Digest, what: &str) -> RemoteError {
    RemoteError::Refused(format!("{what}: the service does not hold the blob {digest} it named"))
}

/// `INSTANCE/`, or nothing for the default instance.
fn prefix(instance: &str) -> String {
    if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    }
}

/// A fresh upload name, UUID-shaped as REAPI asks: this process's id, the
/// time and a counter.
fn upload_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        pid,
        (nanos >> 32) as u16,
        (nanos >> 20) as u16 & 0xfff,
        count as u16 & 0xfff,
        nanos & 0xffff_ffff_ffff
    )
}
