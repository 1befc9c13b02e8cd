//! Layer compression, the one place it is defined for images and for the
//! registry: which compressors a layer may use, their media types, how a
//! blob's first bytes tell its compression, and a streaming encoder.
//! Deterministic: gzip with no name and mtime 0, zstd at level 3, so the
//! same tar always gives the same blob.

use std::io::{self, Write};

/// How layer blobs are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    None,
    Gzip,
    Zstd,
}

impl Compressor {
    pub fn parse(text: &str) -> Option<Compressor> {
        match text {
            "none" => Some(Compressor::None),
            "gzip" => Some(Compressor::Gzip),
            "zstd" => Some(Compressor::Zstd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compressor::None => "none",
            Compressor::Gzip => "gzip",
            Compressor::Zstd => "zstd",
        }
    }

    /// The compression of a blob whose first bytes are `head`, told by
    /// magic bytes (never by names or media types).
    pub fn detect(head: &[u8]) -> Compressor {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compressor::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compressor::Zstd
        } else {
            Compressor::None
        }
    }

    /// The file name suffix of a blob.
    pub fn extension(self) -> &'static str {
        match self {
            Compressor::None => "tar",
            Compressor::Gzip => "tar.gz",
            Compressor::Zstd => "tar.zst",
        }
    }

    /// The OCI media type of a layer blob.
    pub fn media_type(self) -> &'static str {
        match self {
            Compressor::None => "application/vnd.oci.image.layer.v1.tar",
            Compressor::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compressor::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// A writer compressing into `out`; [`Encoder::finish`] ends the stream.
    pub fn encoder<W: Write>(self, out: W) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compressor::None => Encoder::None(out),
            Compressor::Gzip => {
                Encoder::Gzip(flate2::GzBuilder::new().mtime(0).write(out, flate2::Compression::default()))
            }
            Compressor::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, 3)?),
        })
    }
}

/// A compressing writer (see [`Compressor::encoder`]).
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Ends the compressed stream and hands back the writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}
