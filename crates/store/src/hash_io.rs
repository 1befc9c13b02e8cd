//! Hashing while copying, in one place: a reader or writer that feeds every
//! byte it passes to a digest and counts them. The digest is anything that
//! is `Write` (`sha2::Sha256`, `blake3::Hasher`), so one pair of wrappers
//! serves every algorithm. Also [`read_full`], the one "fill this buffer
//! unless the stream ends" loop.

use std::io::{self, Read, Write};

/// Writes through to `inner` and feeds `digest` exactly the bytes written.
pub struct HashingWriter<W, D> {
    inner: W,
    digest: D,
    written: u64,
}

impl<W: Write, D: Write> HashingWriter<W, D> {
    pub fn new(inner: W, digest: D) -> Self {
        HashingWriter { inner, digest, written: 0 }
    }

    /// The writer, the digest and the byte count.
    pub fn into_parts(self) -> (W, D, u64) {
        (self.inner, self.digest, self.written)
    }
}

impl<W: Write, D: Write> Write for HashingWriter<W, D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.write_all(&buf[..n])?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads from `inner` and feeds `digest` exactly the bytes read.
pub struct HashingReader<R, D> {
    inner: R,
    digest: D,
    read: u64,
}

impl<R: Read, D: Write> HashingReader<R, D> {
    pub fn new(inner: R, digest: D) -> Self {
        HashingReader { inner, digest, read: 0 }
    }

    /// Bytes read so far.
    pub fn read_bytes(&self) -> u64 {
        self.read
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The digest of the bytes read so far.
    pub fn digest(&self) -> &D {
        &self.digest
    }

    /// The reader, the digest and the byte count.
    pub fn into_parts(self) -> (R, D, u64) {
        (self.inner, self.digest, self.read)
    }
}

impl<R: Read, D: Write> Read for HashingReader<R, D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.write_all(&buf[..n])?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads until `buf` is full or the stream ends; how many bytes it read.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_wrappers_hash_and_count_what_passes() {
        let mut w = HashingWriter::new(Vec::new(), blake3::Hasher::new());
        w.write_all(b"hello").unwrap();
        let (out, digest, n) = w.into_parts();
        assert_eq!((out.as_slice(), n), (&b"hello"[..], 5));
        assert_eq!(digest.finalize(), blake3::hash(b"hello"));

        let mut r = HashingReader::new(&b"hello world"[..], blake3::Hasher::new());
        let mut buf = [0u8; 5];
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 5);
        let (_, digest, n) = r.into_parts();
        assert_eq!((n, digest.finalize()), (5, blake3::hash(b"hello")));
    }
}
