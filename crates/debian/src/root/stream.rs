//! Decompressing the packages' `data.tar` members on one thread while the
//! tree is written on another: decompression (xz, mostly) and writing
//! cost about the same, so on two cores this halves the time. The
//! decompressor runs ahead by a bounded number of chunks, across package
//! boundaries; the writer reads the packages strictly in order, so the
//! result is the same as reading them one by one.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};

use crate::deb::Deb;

/// The size of one chunk handed from the decompressor to the writer.
const CHUNK: usize = 1 << 20;
/// How many chunks the decompressor may be ahead.
const AHEAD: usize = 16;

/// What the decompressor sends.
enum Message {
    Chunk(Vec<u8>),
    /// The current package's stream ended.
    End,
    /// The current package's stream could not be read.
    Failed(io::Error),
}

/// Calls `consume(i, stream)` for each of `debs` in order with the
/// decompressed `data.tar` of `debs[i]`; stops at the first error.
/// Whatever `consume` leaves unread of a stream is read (and checked) before the next.
pub fn for_each_data<E>(
    debs: &[&Deb],
    mut consume: impl FnMut(usize, &mut dyn Read) -> Result<(), E>,
    read_error: impl Fn(usize, io::Error) -> E,
) -> Result<(), E> {
    let (to_writer, from_decompressor) = mpsc::sync_channel(AHEAD);
    let (recycle, recycled) = mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(move || decompress(debs, &to_writer, &recycled));
        // The stream owns the receiver: returning early drops it, which stops
        // the decompressor before the scope waits for it.
        let mut stream = Stream { messages: from_decompressor, recycle, chunk: Vec::new(), pos: 0, ended: false };
        for i in 0..debs.len() {
            consume(i, &mut stream)?;
            io::copy(&mut stream, &mut io::sink()).map_err(|e| read_error(i, e))?;
            stream.ended = false;
        }
        Ok(())
    })
}

/// The decompressor thread: every package's stream, in order, in chunks.
fn decompress(debs: &[&Deb], to_writer: &SyncSender<Message>, recycled: &Receiver<Vec<u8>>) {
    for deb in debs {
        let mut data = match deb.data() {
            Ok(data) => data,
            Err(e) => {
                let _ = to_writer.send(Message::Failed(io::Error::other(e.to_string())));
                return;
            }
        };
        loop {
            let mut chunk = recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            match fill(&mut data, &mut chunk) {
                Ok(0) => break,
                Ok(_) => {
                    if to_writer.send(Message::Chunk(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = to_writer.send(Message::Failed(e));
                    return;
                }
            }
        }
        if to_writer.send(Message::End).is_err() {
            return;
        }
    }
}

/// Reads from `reader` until `chunk` holds [`CHUNK`] bytes or the stream ends; how many bytes it holds.
fn fill(reader: &mut dyn Read, chunk: &mut Vec<u8>) -> io::Result<usize> {
    chunk.resize(CHUNK, 0);
    let mut filled = 0;
    while filled < CHUNK {
        match reader.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    chunk.truncate(filled);
    Ok(filled)
}

/// The writer's side: one package's stream, ending at its [`Message::End`].
struct Stream {
    messages: Receiver<Message>,
    recycle: mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            match self.messages.recv() {
                Ok(Message::Chunk(chunk)) => {
                    let spent = std::mem::replace(&mut self.chunk, chunk);
                    let _ = self.recycle.send(spent);
                    self.pos = 0;
                }
                Ok(Message::End) => self.ended = true,
                Ok(Message::Failed(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the decompressing thread stopped")),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use mini_store::testing::Scratch;

    use super::*;
    use crate::deb::testing::{control, deb, Entry};
    use crate::deb::Compression;

    #[test]
    fn every_stream_arrives_whole_and_in_order() {
        let s = Scratch::new("stream-order");
        let big: &'static [u8] =
            Box::leak((0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into_boxed_slice());
        let mut debs = Vec::new();
        for (i, body) in [&b"small"[..], big, b""].into_iter().enumerate() {
            let path = s.0.join(format!("{i}.deb"));
            let data = [Entry::File("./f", 0o644, body)];
            fs::write(&path, deb(&control("p", "1", "all"), None, &data, Compression::Zstd)).unwrap();
            debs.push((Deb::open(&path).unwrap(), body));
        }
        let refs: Vec<&Deb> = debs.iter().map(|(d, _)| d).collect();
        let mut seen = Vec::new();
        for_each_data(
            &refs,
            |i, stream| {
                let mut archive = tar::Archive::new(stream);
                let mut entry = archive.entries()?.next().expect("one entry")?;
                let mut body = Vec::new();
                entry.read_to_end(&mut body)?;
                assert_eq!(body, debs[i].1, "package {i}");
                seen.push(i);
                Ok::<(), io::Error>(())
            },
            |_, e| e,
        )
        .unwrap();
        assert_eq!(seen, [0, 1, 2]);
    }

    #[test]
    fn an_unreadable_stream_is_an_error_for_its_package() {
        let s = Scratch::new("stream-error");
        let path = s.0.join("bad.deb");
        let mut bytes = deb(&control("p", "1", "all"), None, &[Entry::File("./f", 0o644, b"x")], Compression::Xz);
        let len = bytes.len();
        bytes[len - 20..].fill(0);
        fs::write(&path, bytes).unwrap();
        let deb = Deb::open(&path).unwrap();
        let result = for_each_data(
            &[&deb],
            |_, stream| io::copy(stream, &mut io::sink()).map(|_| ()).map_err(|e| (0, e)),
            |i, e| (i, e),
        );
        assert_eq!(result.unwrap_err().0, 0);
    }
}
