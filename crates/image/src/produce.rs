//! Making layer bytes: a layer is described by how to write its tar
//! ([`Source`]), and made only when an image is written, streamed or
//! copied, straight from the store into wherever it goes. Nothing keeps
//! the tars: their digests are cached (`layer_cache`), their bytes are not.
//!
//! [`in_order`] makes several layers at once (one per core) and hands
//! their bytes to one consumer in layer order, so a docker-archive can be
//! written front to back while the layers after the current one are
//! already being read, tarred and hashed. Each layer's bytes travel in
//! chunks through a small bounded channel, and workers start a layer only
//! within a window of two per worker past the one being consumed, so
//! memory stays a few MiB per layer in that window however many or large
//! the layers.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};

use mini_store::hash_io::HashingWriter;
use mini_store::store_path::StorePath;
use sha2::{Digest as _, Sha256};

use crate::compress::Compressor;
use crate::error::{ImageError, Result};
use crate::layer_cache::Digest;
use crate::tarball::{self, Counter, LayerWriter};

/// Writes a layer's tar entries (the writer ends the tar).
pub type Fill = Arc<dyn Fn(&mut LayerWriter<&mut dyn Write>) -> Result<()> + Send + Sync>;

/// How to make a layer's uncompressed tar.
#[derive(Clone)]
pub enum Source {
    /// Entries written by a function (store paths, or the customisation
    /// entries); with a sizing writer it measures the tar without reading
    /// the files.
    Tar(Fill),
    /// The whole tar, already made (a small customisation layer).
    Bytes(Arc<Vec<u8>>),
}

impl Source {
    /// The exact size of the tar, from metadata alone.
    pub fn size(&self) -> Result<u64> {
        match self {
            Source::Bytes(bytes) => Ok(bytes.len() as u64),
            Source::Tar(fill) => {
                let mut counter = Counter::default();
                let mut layer = LayerWriter::for_sizing(&mut counter as &mut dyn Write);
                fill(&mut layer)?;
                layer.finish().map_err(finish_error)?;
                Ok(counter.0)
            }
        }
    }

    /// Writes the tar, compressed by `compressor`, into `out`.
    pub fn write(&self, compressor: Compressor, out: impl Write) -> Result<Made> {
        if compressor == Compressor::None {
            // The blob is the tar: hashed once.
            let mut tar = sha256_writer(out);
            self.write_tar(&mut tar)?;
            let (mut out, sha256, size) = finish_sha256(tar);
            out.flush().map_err(write_error)?;
            let digest = Digest { sha256, size };
            return Ok(Made { tar: digest, blob: digest });
        }
        let blob = sha256_writer(out);
        let encoder = compressor.encoder(blob).map_err(write_error)?;
        let mut tar = sha256_writer(encoder);
        self.write_tar(&mut tar)?;
        let (encoder, diff_id, tar_size) = finish_sha256(tar);
        let blob = encoder.finish().map_err(write_error)?;
        let (mut out, blob_digest, blob_size) = finish_sha256(blob);
        out.flush().map_err(write_error)?;
        Ok(Made {
            tar: Digest { sha256: diff_id, size: tar_size },
            blob: Digest { sha256: blob_digest, size: blob_size },
        })
    }

    pub(crate) fn write_tar(&self, out: &mut dyn Write) -> Result<()> {
        match self {
            Source::Bytes(bytes) => out.write_all(bytes).map_err(write_error),
            Source::Tar(fill) => {
                let mut layer = LayerWriter::new(out);
                fill(&mut layer)?;
                layer.finish().map_err(finish_error)?;
                Ok(())
            }
        }
    }

    /// The tar as a reader (made by a thread writing into a pipe), for
    /// consumers that pull, such as a registry upload. A failure ends the
    /// stream early, which the consumer's digest check catches.
    pub fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        let (reader, writer) = io::pipe()?;
        let source = self.clone();
        std::thread::spawn(move || source.write(Compressor::None, io::BufWriter::with_capacity(CHUNK, writer)));
        Ok(Box::new(reader))
    }
}

fn sha256_writer<W: Write>(out: W) -> HashingWriter<W, Sha256> {
    HashingWriter::new(out, Sha256::new())
}

/// The writer, the SHA-256 and the byte count of what went through.
fn finish_sha256<W: Write>(writer: HashingWriter<W, Sha256>) -> (W, [u8; 32], u64) {
    let (out, digest, size) = writer.into_parts();
    (out, digest.finalize().into(), size)
}

/// The source of the layer holding `paths`, from the store at `store_dir`.
pub fn store_layer(store_dir: &Path, paths: &[StorePath]) -> Source {
    let store_dir: PathBuf = store_dir.to_path_buf();
    let names: Vec<String> = paths.iter().map(StorePath::base_name).collect();
    Source::Tar(Arc::new(move |w| tarball::fill_store_layer(w, &store_dir, &names)))
}

fn write_error(e: io::Error) -> ImageError {
    ImageError::Io { action: "writing", path: "a layer".into(), source: e }
}

fn finish_error(e: io::Error) -> ImageError {
    ImageError::Io { action: "ending", path: "a layer's tar".into(), source: e }
}

/// What making a layer gave: its tar's digest (the diff_id) and size, and
/// the blob's (the same unless compressed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    pub tar: Digest,
    pub blob: Digest,
}

/// What [`in_order`] hands its consumer.
pub enum Piece<'a> {
    /// Layer `i` begins.
    Start(usize),
    /// The next bytes of the current layer.
    Bytes(&'a [u8]),
    /// Layer `i` is complete.
    End(usize, Made),
}

const CHUNK: usize = 1 << 20;
/// Chunks a layer may have in flight before its maker waits.
const DEPTH: usize = 8;

enum Message {
    Chunk(Vec<u8>),
    Done(Result<Made>),
}

/// Sends what is written as chunks, in buffers taken from (and, once
/// consumed, given back to) a shared pool: the same few buffers go round,
/// instead of a fresh megabyte per chunk freed on another thread.
struct ChunkSender<'a> {
    tx: SyncSender<Message>,
    buf: Vec<u8>,
    pool: &'a Mutex<Vec<Vec<u8>>>,
}

impl ChunkSender<'_> {
    fn send(&mut self) -> io::Result<()> {
        let spare = self.pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_else(|| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, spare);
        self.tx.send(Message::Chunk(full)).map_err(|_| io::Error::other("the image writer stopped"))
    }
}

impl Write for ChunkSender<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = buf.len().min(room);
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

/// A layer for [`in_order`] to make.
pub struct Job<'a> {
    pub source: &'a Source,
    /// Its tar's digest as this store recorded it: the layer is then only
    /// counted as it is made, not hashed again (the consumer checks the
    /// size). `None`: hashed.
    pub recorded: Option<Digest>,
}

impl Job<'_> {
    pub(crate) fn make(&self, compressor: Compressor, out: &mut dyn Write) -> Result<Made> {
        match self.recorded {
            Some(tar) if compressor == Compressor::None => {
                let mut counted = Counting { out, count: 0 };
                self.source.write_tar(&mut counted)?;
                counted.flush().map_err(write_error)?;
                let made = Digest { sha256: tar.sha256, size: counted.count };
                Ok(Made { tar: made, blob: made })
            }
            _ => self.source.write(compressor, out),
        }
    }
}

/// A writer that counts what passes through.
struct Counting<'a> {
    out: &'a mut dyn Write,
    count: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Tells the workers the consumer stopped (whether done or failed), so
/// none waits for it forever.
struct Stop<'a>(&'a (Mutex<usize>, Condvar));

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        if let Ok(mut done) = self.0 .0.lock() {
            *done = usize::MAX;
        }
        self.0 .1.notify_all();
    }
}

/// Makes the layers `sources` (each compressed by `compressor`), several
/// at once, and hands their bytes to `consume` in order. Stops at the
/// first error, the consumer's included.
pub fn in_order(
    jobs: &[Job<'_>],
    compressor: Compressor,
    mut consume: impl FnMut(Piece<'_>) -> Result<()>,
) -> Result<Vec<Made>> {
    let count = jobs.len();
    let pool: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let (senders, receivers): (Vec<_>, Vec<Receiver<Message>>) = (0..count).map(|_| sync_channel(DEPTH)).unzip();
    let senders = Mutex::new(senders.into_iter().map(Some).collect::<Vec<_>>());
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, count.max(1));
    // How many layers the consumer has taken (`usize::MAX`: it stopped). A
    // worker starts a layer only within a window of that, so layers made
    // ahead of the consumer are few, however small they are.
    let window = 2 * workers;
    let taken = (Mutex::new(0usize), Condvar::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    break;
                }
                let Ok(mut done) = taken.0.lock() else { break };
                while *done != usize::MAX && i >= *done + window {
                    done = match taken.1.wait(done) {
                        Ok(done) => done,
                        Err(_) => return,
                    };
                }
                if *done == usize::MAX {
                    break;
                }
                drop(done);
                let Some(tx) = senders.lock().ok().and_then(|mut s| s[i].take()) else { break };
                let mut chunks = ChunkSender { tx: tx.clone(), buf: Vec::with_capacity(CHUNK), pool: &pool };
                let made = jobs[i].make(compressor, &mut chunks);
                if tx.send(Message::Done(made)).is_err() {
                    break;
                }
            });
        }
        let _stop = Stop(&taken);
        let mut made = Vec::with_capacity(count);
        for (i, rx) in receivers.into_iter().enumerate() {
            consume(Piece::Start(i))?;
            loop {
                match rx.recv() {
                    Ok(Message::Chunk(mut bytes)) => {
                        consume(Piece::Bytes(&bytes))?;
                        bytes.clear();
                        if let Ok(mut pool) = pool.lock() {
                            pool.push(bytes);
                        }
                    }
                    Ok(Message::Done(result)) => {
                        let layer = result?;
                        consume(Piece::End(i, layer))?;
                        made.push(layer);
                        if let Ok(mut done) = taken.0.lock() {
                            *done += 1;
                        }
                        taken.1.notify_all();
                        break;
                    }
                    Err(_) => {
                        return Err(ImageError::Io {
                            action: "making",
                            path: format!("layer {}", i + 1).into(),
                            source: io::Error::other("its maker stopped"),
                        })
                    }
                }
            }
        }
        Ok(made)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_arrive_whole_and_in_order() {
        let sources: Vec<Source> =
            (0..7u8).map(|i| Source::Bytes(Arc::new(vec![i; (i as usize) * 700_000 + 1]))).collect();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let jobs: Vec<Job> = sources.iter().map(|source| Job { source, recorded: None }).collect();
        let made = in_order(&jobs, Compressor::None, |piece| {
            match piece {
                Piece::Start(i) => {
                    assert_eq!(i, got.len());
                    got.push(Vec::new())
                }
                Piece::Bytes(b) => got.last_mut().unwrap().extend_from_slice(b),
                Piece::End(i, m) => assert_eq!(m.tar.size as usize, got[i].len()),
            }
            Ok(())
        })
        .unwrap();
        for (i, (bytes, made)) in got.iter().zip(&made).enumerate() {
            assert_eq!(bytes, &vec![i as u8; i * 700_000 + 1]);
            assert_eq!(made.tar.sha256, <[u8; 32]>::from(sha2::Sha256::digest(bytes)));
            assert_eq!(made.tar, made.blob);
        }
    }

    #[test]
    fn a_consumer_error_stops_every_maker() {
        let sources: Vec<Source> = (0..20).map(|_| Source::Bytes(Arc::new(vec![0; 3 * CHUNK]))).collect();
        let mut seen = 0;
        let jobs: Vec<Job> = sources.iter().map(|source| Job { source, recorded: None }).collect();
        let result = in_order(&jobs, Compressor::Gzip, |piece| {
            if let Piece::End(..) = piece {
                seen += 1;
                if seen == 2 {
                    return Err(ImageError::BadSpec { name: "test".into(), message: "stop".into() });
                }
            }
            Ok(())
        });
        assert!(result.is_err());
        assert_eq!(seen, 2);
    }
}
