//! Reading an archive: [`validate`] and the parser behind it, which checks
//! every rule of the format (sorted unique names, zero padding, bounded
//! tokens and nesting) and reports nodes to an event sink as each is known
//! valid. Generic over any `Read`; no filesystem here — [`super::disk`]'s
//! restore is one sink, [`validate`]'s discarding one another.

use std::io::{self, BufReader, Read};

use super::writer::padding_len;
use super::{check_name, check_target, show, NarError, COPY_LEN, MAGIC, MAX_DEPTH, MAX_TOKEN_LEN};

/// Contents longer than this cannot be a file (`off_t` is signed), so the length is corrupt.
const MAX_CONTENTS_LEN: u64 = i64::MAX as u64;

/// Checks that `input` holds exactly one well-formed archive and returns its size.
pub fn validate(input: &mut impl Read) -> Result<u64, NarError> {
    Parser::new(input, &mut Discard).run()
}

/// What the parser reports, in archive order, once each part is known valid.
pub(super) trait EventSink {
    /// Where the contents of the current regular file go.
    type File;
    fn directory(&mut self) -> Result<(), NarError>;
    fn regular(&mut self, executable: bool) -> Result<Self::File, NarError>;
    fn contents(&mut self, file: &mut Self::File, chunk: &[u8]) -> Result<(), NarError>;
    fn symlink(&mut self, target: &[u8]) -> Result<(), NarError>;
    /// The current directory's entries are complete.
    fn end_directory(&mut self);
    /// The next node is the entry `name` of the current directory.
    fn enter(&mut self, name: &[u8]);
}

/// Accepts every event and keeps nothing.
struct Discard;

impl EventSink for Discard {
    type File = ();
    fn directory(&mut self) -> Result<(), NarError> {
        Ok(())
    }
    fn regular(&mut self, _executable: bool) -> Result<(), NarError> {
        Ok(())
    }
    fn contents(&mut self, _file: &mut (), _chunk: &[u8]) -> Result<(), NarError> {
        Ok(())
    }
    fn symlink(&mut self, _target: &[u8]) -> Result<(), NarError> {
        Ok(())
    }
    fn end_directory(&mut self) {}
    fn enter(&mut self, _name: &[u8]) {}
}

/// Reads tokens, counting the offset for error messages.
struct TokenReader<R> {
    input: R,
    offset: u64,
}

impl<R: Read> TokenReader<R> {
    /// Fills `buf` completely, or reports where the input ended.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), NarError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => return Err(NarError::Truncated { offset: self.offset }),
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(NarError::Read { offset: self.offset, source }),
            }
        }
        Ok(())
    }

    fn read_len(&mut self) -> Result<u64, NarError> {
        let mut bytes = [0; 8];
        self.fill(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn skip_padding(&mut self, len: u64) -> Result<(), NarError> {
        let mut pad = [0; 8];
        let pad = &mut pad[..padding_len(len)];
        let start = self.offset;
        self.fill(pad)?;
        match pad.iter().position(|&b| b != 0) {
            Some(i) => Err(malformed(start + i as u64, "padding is not zero".to_string())),
            None => Ok(()),
        }
    }

    /// Reads a token other than file contents; returns its offset and bytes.
    fn read_token(&mut self) -> Result<(u64, Vec<u8>), NarError> {
        let start = self.offset;
        let len = self.read_len()?;
        if len > MAX_TOKEN_LEN {
            return Err(malformed(
                start,
                format!("a token of {len} bytes is longer than the limit of {MAX_TOKEN_LEN}"),
            ));
        }
        let mut token = vec![0; len as usize];
        self.fill(&mut token)?;
        self.skip_padding(len)?;
        Ok((start, token))
    }

    fn expect(&mut self, tag: &str) -> Result<(), NarError> {
        let (start, token) = self.read_token()?;
        if token == tag.as_bytes() {
            Ok(())
        } else {
            Err(malformed(start, format!("expected '{tag}', found '{}'", show(&token))))
        }
    }

    /// Fails unless the input has ended.
    fn expect_end(&mut self) -> Result<(), NarError> {
        let mut byte = [0; 1];
        loop {
            match self.input.read(&mut byte) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(malformed(self.offset, "unexpected data after the end of the archive".to_string()))
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(NarError::Read { offset: self.offset, source }),
            }
        }
    }
}

fn malformed(offset: u64, message: String) -> NarError {
    NarError::Malformed { offset, message }
}

/// The archive grammar, read iteratively: open directories live on an
/// explicit stack, so hostile nesting cannot exhaust the call stack.
pub(super) struct Parser<'s, R, S> {
    tokens: TokenReader<BufReader<R>>,
    sink: &'s mut S,
}

impl<'s, R: Read, S: EventSink> Parser<'s, R, S> {
    pub(super) fn new(input: R, sink: &'s mut S) -> Self {
        Parser { tokens: TokenReader { input: BufReader::with_capacity(COPY_LEN, input), offset: 0 }, sink }
    }

    /// Parses the whole input and returns the archive's size.
    pub(super) fn run(mut self) -> Result<u64, NarError> {
        self.tokens.expect(MAGIC)?;
        // For each open directory, the name of its last entry so far.
        let mut open: Vec<Option<Vec<u8>>> = Vec::new();
        if self.node(0)? {
            open.push(None);
        }
        while let Some(last) = open.last() {
            let (start, token) = self.tokens.read_token()?;
            match token.as_slice() {
                b")" => {
                    open.pop();
                    self.sink.end_directory();
                    if !open.is_empty() {
                        self.close_entry()?;
                    }
                }
                b"entry" => {
                    let name = self.entry_name(last.as_deref())?;
                    self.tokens.expect("node")?;
                    self.sink.enter(&name);
                    if let Some(last) = open.last_mut() {
                        *last = Some(name);
                    }
                    if self.node(open.len())? {
                        open.push(None);
                    } else {
                        self.close_entry()?;
                    }
                }
                _ => return Err(malformed(start, format!("expected 'entry' or ')', found '{}'", show(&token)))),
            }
        }
        self.tokens.expect_end()?;
        Ok(self.tokens.offset)
    }

    /// Reads `"(" "name" <name>` and checks the name against the previous one.
    fn entry_name(&mut self, previous: Option<&[u8]>) -> Result<Vec<u8>, NarError> {
        self.tokens.expect("(")?;
        self.tokens.expect("name")?;
        let (start, name) = self.tokens.read_token()?;
        check_name(&name).map_err(|message| malformed(start, message))?;
        match previous {
            Some(previous) if name.as_slice() == previous => {
                Err(malformed(start, format!("duplicate directory entry '{}'", show(&name))))
            }
            Some(previous) if name.as_slice() < previous => Err(malformed(
                start,
                format!("directory entries are not sorted ('{}' after '{}')", show(&name), show(previous)),
            )),
            _ => Ok(name),
        }
    }

    fn close_entry(&mut self) -> Result<(), NarError> {
        self.tokens.expect(")")
    }

    /// Reads a node inside `depth` directories. A file or symlink is read
    /// whole; a directory is only opened, and the result says so.
    fn node(&mut self, depth: usize) -> Result<bool, NarError> {
        self.tokens.expect("(")?;
        self.tokens.expect("type")?;
        let (start, kind) = self.tokens.read_token()?;
        match kind.as_slice() {
            b"regular" => self.regular().map(|()| false),
            b"symlink" => self.symlink().map(|()| false),
            b"directory" if depth >= MAX_DEPTH => Err(NarError::TooDeep { offset: start }),
            b"directory" => self.sink.directory().map(|()| true),
            _ => Err(malformed(start, format!("unknown node type '{}'", show(&kind)))),
        }
    }

    fn regular(&mut self) -> Result<(), NarError> {
        let (mut start, mut token) = self.tokens.read_token()?;
        let executable = token == b"executable";
        if executable {
            let (value_start, value) = self.tokens.read_token()?;
            if !value.is_empty() {
                return Err(malformed(
                    value_start,
                    format!("expected '' after 'executable', found '{}'", show(&value)),
                ));
            }
            (start, token) = self.tokens.read_token()?;
        }
        if token != b"contents" {
            return Err(malformed(start, format!("expected 'contents', found '{}'", show(&token))));
        }
        let mut file = self.sink.regular(executable)?;
        self.contents(&mut file)?;
        self.tokens.expect(")")
    }

    /// Streams a file's contents to the sink in bounded chunks.
    fn contents(&mut self, file: &mut S::File) -> Result<(), NarError> {
        let start = self.tokens.offset;
        let len = self.tokens.read_len()?;
        if len > MAX_CONTENTS_LEN {
            return Err(malformed(start, format!("file length {len} is impossibly large")));
        }
        let mut buf = vec![0; len.min(COPY_LEN as u64) as usize];
        let mut remaining = len;
        while remaining > 0 {
            let chunk = &mut buf[..remaining.min(COPY_LEN as u64) as usize];
            self.tokens.fill(chunk)?;
            self.sink.contents(file, chunk)?;
            remaining -= chunk.len() as u64;
        }
        self.tokens.skip_padding(len)
    }

    fn symlink(&mut self) -> Result<(), NarError> {
        self.tokens.expect("target")?;
        let (start, target) = self.tokens.read_token()?;
        check_target(&target).map_err(|message| malformed(start, message))?;
        self.sink.symlink(&target)?;
        self.tokens.expect(")")
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn rejects_wrong_magic() {
        let scratch = Scratch::new("magic");
        let err = restore_fails(&tokens(&[b"nix-archive-2"]), &scratch);
        assert_eq!(err.to_string(), "archive is malformed at byte 0: expected 'nix-archive-1', found 'nix-archive-2'");
        let err = restore_fails(b"\xff\xff\xff\xff\xff\xff\xff\xff tar?", &scratch);
        assert!(malformed_message(err).1.contains("longer than the limit"));
    }

    #[test]
    fn rejects_every_truncation() {
        let scratch = Scratch::new("truncated");
        let golden = golden_directory();
        for len in 0..golden.len() {
            match restore_fails(&golden[..len], &scratch) {
                NarError::Truncated { offset } => assert_eq!(offset, len as u64),
                other => panic!("prefix of {len} bytes: expected Truncated, got {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_unsorted_and_duplicate_entries() {
        let scratch = Scratch::new("unsorted");
        // Header 80 bytes, each entry 184, the name token 48 bytes into an entry.
        let err = restore_fails(&directory_of(&[b"a", b"c", b"b"]), &scratch);
        assert_eq!(
            err.to_string(),
            "archive is malformed at byte 496: directory entries are not sorted ('b' after 'c')"
        );
        let (_, message) = malformed_message(restore_fails(&directory_of(&[b"a", b"a"]), &scratch));
        assert_eq!(message, "duplicate directory entry 'a'");
    }

    #[test]
    fn rejects_bad_names() {
        let scratch = Scratch::new("names");
        for name in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            let (offset, message) = malformed_message(restore_fails(&directory_of(&[b"ok", name]), &scratch));
            assert!(message.starts_with("invalid entry name"), "{message}");
            assert_eq!(offset, 80 + 184 + 48, "{message}");
        }
    }

    #[test]
    fn rejects_unknown_tokens_and_bad_padding() {
        let scratch = Scratch::new("tokens");
        let fifo = tokens(&[b"nix-archive-1", b"(", b"type", b"fifo", b")"]);
        assert_eq!(malformed_message(restore_fails(&fifo, &scratch)), (56, "unknown node type 'fifo'".to_string()));
        let mode = tokens(&[b"nix-archive-1", b"(", b"type", b"regular", b"mode", b"", b")"]);
        assert_eq!(malformed_message(restore_fails(&mode, &scratch)).1, "expected 'contents', found 'mode'");
        let exec =
            tokens(&[b"nix-archive-1", b"(", b"type", b"regular", b"executable", b"yes", b"contents", b"", b")"]);
        assert!(malformed_message(restore_fails(&exec, &scratch)).1.starts_with("expected '' after 'executable'"));
        let mut huge = tokens(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(malformed_message(restore_fails(&huge, &scratch)).1.contains("impossibly large"));

        let mut padded = golden_file();
        padded[21] = 1;
        assert_eq!(malformed_message(restore_fails(&padded, &scratch)), (21, "padding is not zero".to_string()));
        let mut padded = golden_file();
        padded[104 - 1] = b'!';
        assert_eq!(malformed_message(restore_fails(&padded, &scratch)).0, 103);
    }

    #[test]
    fn rejects_trailing_garbage() {
        let scratch = Scratch::new("trailing");
        let mut archive = golden_directory();
        let end = archive.len() as u64;
        archive.push(0);
        let (offset, message) = malformed_message(restore_fails(&archive, &scratch));
        assert_eq!((offset, message.as_str()), (end, "unexpected data after the end of the archive"));
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing_the_stack() {
        let scratch = Scratch::new("deep");
        assert_eq!(validate(&mut &nested(MAX_DEPTH)[..]).unwrap(), nested(MAX_DEPTH).len() as u64);
        for depth in [MAX_DEPTH + 1, 300, 100_000] {
            assert!(matches!(restore_fails(&nested(depth), &scratch), NarError::TooDeep { .. }), "{depth}");
        }
    }
}
