//! Writing an archive: the token encoding of the format and [`encode`] of
//! a tree held in memory. No filesystem here; [`super::disk`] walks trees
//! on disk and feeds the same token builders, so a tree on disk and its
//! [`Node`] give the same bytes by construction.

use std::io::{self, Write};

use super::{check_name, check_target, NarError, MAGIC, MAX_DEPTH};

/// The encoded `")"` token, which closes nodes and entries.
pub(super) const CLOSE: [u8; 16] = [1, 0, 0, 0, 0, 0, 0, 0, b')', 0, 0, 0, 0, 0, 0, 0];
/// How many encoded header bytes a writer gathers before passing them on.
const PENDING_LEN: usize = 64 * 1024;

pub(super) fn write_error(source: io::Error) -> NarError {
    NarError::Write { source }
}

/// A file tree held in memory, for archiving content that is not on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file.
    Regular { executable: bool, contents: Vec<u8> },
    /// A symbolic link; the target is stored, never followed.
    Symlink { target: Vec<u8> },
    /// A directory; the map keeps entry names sorted and unique.
    Directory(std::collections::BTreeMap<Vec<u8>, Node>),
}

/// Writes the archive of `node` to `out` and returns its size in bytes.
pub fn encode(node: &Node, out: &mut impl Write) -> Result<u64, NarError> {
    let mut sink = WriteSink::new(out);
    sink.bytes(&magic_token())?;
    encode_node(node, 0, &mut sink)?;
    sink.finish()
}

fn encode_node(node: &Node, depth: usize, sink: &mut impl ByteSink) -> Result<(), NarError> {
    let mut header = Vec::new();
    match node {
        Node::Regular { executable, contents } => {
            let len = contents.len() as u64;
            push_regular_start(&mut header, *executable, len);
            sink.bytes(&header)?;
            sink.bytes(contents)?;
            header.clear();
            push_regular_end(&mut header, len);
            sink.bytes(&header)
        }
        Node::Symlink { target } => {
            check_target(target).map_err(|message| NarError::InvalidTree { message })?;
            push_symlink(&mut header, target);
            sink.bytes(&header)
        }
        Node::Directory(entries) => {
            if depth >= MAX_DEPTH {
                let message = format!("directories are nested more than {MAX_DEPTH} deep");
                return Err(NarError::InvalidTree { message });
            }
            push_directory_start(&mut header);
            sink.bytes(&header)?;
            for (name, child) in entries {
                check_name(name).map_err(|message| NarError::InvalidTree { message })?;
                header.clear();
                push_entry_start(&mut header, name);
                sink.bytes(&header)?;
                encode_node(child, depth + 1, sink)?;
                sink.bytes(&CLOSE)?;
            }
            sink.bytes(&CLOSE)
        }
    }
}

pub(super) fn push_token(buf: &mut Vec<u8>, token: &[u8]) {
    buf.extend_from_slice(&(token.len() as u64).to_le_bytes());
    buf.extend_from_slice(token);
    buf.extend_from_slice(padding(token.len() as u64));
}

fn push_tokens(buf: &mut Vec<u8>, tokens: &[&str]) {
    for token in tokens {
        push_token(buf, token.as_bytes());
    }
}

/// The zero bytes that follow `len` bytes of token to reach a multiple of 8.
fn padding(len: u64) -> &'static [u8] {
    &[0; 8][..padding_len(len)]
}

pub(super) fn padding_len(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

pub(super) fn magic_token() -> Vec<u8> {
    let mut buf = Vec::new();
    push_token(&mut buf, MAGIC.as_bytes());
    buf
}

/// Everything of a regular file up to its contents, including their length.
pub(super) fn push_regular_start(buf: &mut Vec<u8>, executable: bool, len: u64) {
    push_tokens(buf, &["(", "type", "regular"]);
    if executable {
        push_tokens(buf, &["executable", ""]);
    }
    push_token(buf, b"contents");
    buf.extend_from_slice(&len.to_le_bytes());
}

/// Everything of a regular file after its `len` bytes of contents.
pub(super) fn push_regular_end(buf: &mut Vec<u8>, len: u64) {
    buf.extend_from_slice(padding(len));
    buf.extend_from_slice(&CLOSE);
}

pub(super) fn push_symlink(buf: &mut Vec<u8>, target: &[u8]) {
    push_tokens(buf, &["(", "type", "symlink", "target"]);
    push_token(buf, target);
    buf.extend_from_slice(&CLOSE);
}

pub(super) fn push_directory_start(buf: &mut Vec<u8>) {
    push_tokens(buf, &["(", "type", "directory"]);
}

/// An entry up to its node; the entry is closed by [`CLOSE`] after the node.
pub(super) fn push_entry_start(buf: &mut Vec<u8>, name: &[u8]) {
    push_tokens(buf, &["entry", "(", "name"]);
    push_token(buf, name);
    push_token(buf, b"node");
}

/// Receives an archive's encoded bytes as they are produced, in stream order.
pub(super) trait ByteSink {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), NarError>;
}

/// Streams pieces to a writer, gathering small header writes into one.
pub(super) struct WriteSink<'w, W: Write> {
    pub(super) out: &'w mut W,
    pending: Vec<u8>,
    /// The buffer file contents are copied through (see `disk`).
    pub(super) copy_buf: Vec<u8>,
    pub(super) written: u64,
}

impl<'w, W: Write> WriteSink<'w, W> {
    pub(super) fn new(out: &'w mut W) -> Self {
        WriteSink { out, pending: Vec::with_capacity(PENDING_LEN), copy_buf: Vec::new(), written: 0 }
    }

    pub(super) fn flush_pending(&mut self) -> Result<(), NarError> {
        self.out.write_all(&self.pending).map_err(write_error)?;
        self.pending.clear();
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<u64, NarError> {
        self.flush_pending()?;
        self.out.flush().map_err(write_error)?;
        Ok(self.written)
    }
}

impl<W: Write> ByteSink for WriteSink<'_, W> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), NarError> {
        self.written += bytes.len() as u64;
        if self.pending.len() + bytes.len() <= PENDING_LEN {
            self.pending.extend_from_slice(bytes);
            return Ok(());
        }
        self.flush_pending()?;
        if bytes.len() <= PENDING_LEN {
            self.pending.extend_from_slice(bytes);
            Ok(())
        } else {
            self.out.write_all(bytes).map_err(write_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::fixtures::regular;
    use super::*;

    #[test]
    fn encode_rejects_invalid_trees() {
        let tree = Node::Directory(BTreeMap::from([(b"a/b".to_vec(), regular(false, b""))]));
        let err = encode(&tree, &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "cannot encode the tree: invalid entry name 'a/b': names must not contain '/'");
        let link = Node::Symlink { target: Vec::new() };
        assert!(matches!(encode(&link, &mut Vec::new()), Err(NarError::InvalidTree { .. })));
    }
}
