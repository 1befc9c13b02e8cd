//! Reading a `.deb`, which is untrusted input: an `ar` archive holding
//! `debian-binary` (`2.0\n`), `control.tar` (the package's metadata and
//! maintainer scripts) and `data.tar` (its files), each tar uncompressed
//! or compressed with gzip, xz or zstd.
//!
//! [`Deb::open`] reads only the `ar` headers, checking every size against
//! the file and against limits before anything is allocated; the members
//! are then read in place (positioned reads, no shared cursor), so a
//! package's data can be decompressed on another thread. Truncated or
//! corrupt input is an error naming the file and the member, never a panic.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

pub use crate::deb822::{Deb822Error, Paragraph};

/// The `ar` archive's magic bytes.
const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
/// The size of an `ar` member header.
const AR_HEADER: u64 = 60;
/// The largest `control.tar` member accepted (compressed or not).
pub const MAX_CONTROL_MEMBER: u64 = 64 << 20;
/// The largest `data.tar` member accepted; Debian's largest packages are
/// a few GiB.
pub const MAX_DATA_MEMBER: u64 = 16 << 30;
/// The largest `control` file accepted (decompressed).
pub const MAX_CONTROL_FILE: u64 = 1 << 20;
/// The largest `md5sums` file accepted (decompressed).
pub const MAX_MD5SUMS_FILE: u64 = 64 << 20;
/// The most bytes `control.tar` may decompress to: its files are small,
/// and a compression bomb must not keep mini busy.
pub const MAX_CONTROL_TAR: u64 = 256 << 20;
/// The size of the buffer between a member's bytes on disk and its decompressor.
const READ_BUFFER: usize = 256 << 10;

/// Why a `.deb` could not be read.
#[derive(Debug, Error)]
pub enum DebError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a Debian package: it does not start with the ar magic '!<arch>'", path.display())]
    NotAnArchive { path: PathBuf },
    #[error("{} is truncated: {what} ends before its declared size; download the package again", path.display())]
    Truncated { path: PathBuf, what: String },
    #[error("{} has a malformed ar member header at byte {offset}: {reason}", path.display())]
    BadHeader { path: PathBuf, offset: u64, reason: &'static str },
    #[error("{}: member '{member}' declares {size} bytes, more than the {limit} accepted", path.display())]
    TooLarge { path: PathBuf, member: String, size: u64, limit: u64 },
    #[error("{}: the first member is '{found}', not 'debian-binary'; this is not a Debian binary package", path.display())]
    NotDebianBinary { path: PathBuf, found: String },
    #[error("{}: format version '{found}' is not 2.x (debian-binary must hold '2.0')", path.display())]
    BadFormatVersion { path: PathBuf, found: String },
    #[error("{}: unexpected member '{member}' (a .deb holds debian-binary, control.tar and data.tar)", path.display())]
    UnknownMember { path: PathBuf, member: String },
    #[error("{}: the member '{member}' appears twice", path.display())]
    DuplicateMember { path: PathBuf, member: String },
    #[error("{}: no {member} member", path.display())]
    MissingMember { path: PathBuf, member: &'static str },
    #[error(
        "{}: member '{member}' is compressed with {compression}, which mini does not read \
         (it reads uncompressed, gzip, xz and zstd members)",
        path.display()
    )]
    UnsupportedCompression { path: PathBuf, member: String, compression: &'static str },
    #[error("{}: cannot read member '{member}': {source}", path.display())]
    Member { path: PathBuf, member: String, source: io::Error },
    #[error("{}: control.tar has no 'control' file", path.display())]
    NoControlFile { path: PathBuf },
    #[error("{}: control.tar's '{file}' is larger than the {limit} bytes accepted", path.display())]
    ControlFileTooLarge { path: PathBuf, file: &'static str, limit: u64 },
    #[error("{}: its control file: {source}", path.display())]
    Control { path: PathBuf, source: Deb822Error },
}

/// How a tar member is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// The compression a member's name (after `control.tar` or
    /// `data.tar`) names; `Err` holds the name of a known but unsupported one.
    fn from_suffix(suffix: &str) -> Option<Result<Compression, &'static str>> {
        Some(match suffix {
            "" => Ok(Compression::None),
            ".gz" => Ok(Compression::Gzip),
            ".xz" => Ok(Compression::Xz),
            ".zst" => Ok(Compression::Zstd),
            ".bz2" => Err("bzip2"),
            ".lzma" => Err("lzma"),
            _ => return None,
        })
    }
}

/// One member of the `ar` archive: where its bytes are.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    offset: u64,
    size: u64,
    compression: Compression,
}

/// An opened `.deb` whose structure has been checked.
#[derive(Debug)]
pub struct Deb {
    path: PathBuf,
    file: Arc<File>,
    control: Member,
    data: Member,
}

/// What `control.tar` says about a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The `control` file's paragraph.
    pub paragraph: Paragraph,
    /// The `md5sums` file, when the package has one.
    pub md5sums: Option<Vec<u8>>,
    /// The names of every other file in control.tar (maintainer scripts,
    /// `conffiles`, `shlibs`, `triggers`, …), sorted; none of them is read.
    pub other_files: Vec<String>,
}

impl Deb {
    /// Opens the `.deb` at `path` and checks its `ar` structure and format version.
    pub fn open(path: &Path) -> Result<Deb, DebError> {
        let io_error = |source| DebError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        let mut magic = [0u8; 8];
        if len < 8 {
            return Err(DebError::NotAnArchive { path: path.to_path_buf() });
        }
        file.read_exact_at(&mut magic, 0).map_err(io_error)?;
        if &magic != AR_MAGIC {
            return Err(DebError::NotAnArchive { path: path.to_path_buf() });
        }
        let mut offset = AR_MAGIC.len() as u64;
        let mut members = Vec::new();
        while offset < len {
            let header = read_header(&file, path, offset, len)?;
            let data_offset = offset + AR_HEADER;
            if header.size > len - data_offset {
                return Err(DebError::Truncated {
                    path: path.to_path_buf(),
                    what: format!("member '{}'", header.name),
                });
            }
            members.push(Member {
                name: header.name,
                offset: data_offset,
                size: header.size,
                compression: Compression::None,
            });
            // Members are padded to an even size; the last one's padding may be missing.
            offset = data_offset + header.size + header.size % 2;
        }
        Deb::from_members(path, file, members)
    }

    fn from_members(path: &Path, file: File, members: Vec<Member>) -> Result<Deb, DebError> {
        let path_buf = path.to_path_buf();
        let mut members = members.into_iter();
        let first =
            members.next().ok_or_else(|| DebError::NotDebianBinary { path: path_buf.clone(), found: String::new() })?;
        if first.name != "debian-binary" {
            return Err(DebError::NotDebianBinary { path: path_buf, found: shown(&first.name) });
        }
        check_format_version(&file, path, &first)?;
        let (mut control, mut data) = (None, None);
        for mut member in members {
            // Members whose names start with '_' are additions dpkg ignores too.
            if member.name.starts_with('_') {
                continue;
            }
            let (slot, suffix, limit) = if let Some(suffix) = member.name.strip_prefix("control.tar") {
                (&mut control, suffix, MAX_CONTROL_MEMBER)
            } else if let Some(suffix) = member.name.strip_prefix("data.tar") {
                (&mut data, suffix, MAX_DATA_MEMBER)
            } else {
                return Err(DebError::UnknownMember { path: path_buf, member: shown(&member.name) });
            };
            member.compression = match Compression::from_suffix(suffix) {
                Some(Ok(compression)) => compression,
                Some(Err(compression)) => {
                    return Err(DebError::UnsupportedCompression { path: path_buf, member: member.name, compression })
                }
                None => return Err(DebError::UnknownMember { path: path_buf, member: shown(&member.name) }),
            };
            if member.size > limit {
                return Err(DebError::TooLarge { path: path_buf, member: member.name, size: member.size, limit });
            }
            if slot.is_some() {
                return Err(DebError::DuplicateMember { path: path_buf, member: member.name });
            }
            *slot = Some(member);
        }
        let control = control.ok_or(DebError::MissingMember { path: path_buf.clone(), member: "control.tar" })?;
        let data = data.ok_or(DebError::MissingMember { path: path_buf.clone(), member: "data.tar" })?;
        Ok(Deb { path: path_buf, file: Arc::new(file), control, data })
    }

    /// The path this package was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `control.tar`: the control paragraph, `md5sums`, and the names of the other files.
    pub fn control(&self) -> Result<Control, DebError> {
        let member_error =
            |source| DebError::Member { path: self.path.clone(), member: self.control.name.clone(), source };
        let limited = Limited { inner: self.open_member(&self.control)?, left: MAX_CONTROL_TAR };
        let mut archive = tar::Archive::new(limited);
        let (mut paragraph, mut md5sums, mut other_files) = (None, None, Vec::new());
        for entry in archive.entries().map_err(member_error)? {
            let mut entry = entry.map_err(member_error)?;
            if !matches!(entry.header().entry_type(), tar::EntryType::Regular | tar::EntryType::Continuous) {
                continue;
            }
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name.strip_prefix("./").unwrap_or(&name).to_string();
            match name.as_str() {
                "control" => {
                    let bytes = read_limited(&mut entry, MAX_CONTROL_FILE).map_err(member_error)?.ok_or(
                        DebError::ControlFileTooLarge {
                            path: self.path.clone(),
                            file: "control",
                            limit: MAX_CONTROL_FILE,
                        },
                    )?;
                    let parsed = Paragraph::parse(&bytes)
                        .map_err(|source| DebError::Control { path: self.path.clone(), source })?;
                    paragraph = Some(parsed);
                }
                "md5sums" => {
                    let bytes = read_limited(&mut entry, MAX_MD5SUMS_FILE).map_err(member_error)?.ok_or(
                        DebError::ControlFileTooLarge {
                            path: self.path.clone(),
                            file: "md5sums",
                            limit: MAX_MD5SUMS_FILE,
                        },
                    )?;
                    md5sums = Some(bytes);
                }
                _ => other_files.push(shown(&name)),
            }
        }
        other_files.sort();
        let paragraph = paragraph.ok_or(DebError::NoControlFile { path: self.path.clone() })?;
        Ok(Control { paragraph, md5sums, other_files })
    }

    /// The decompressed `data.tar` stream, read as it is consumed.
    pub fn data(&self) -> Result<Box<dyn Read + Send>, DebError> {
        self.open_member(&self.data)
    }

    /// The name of the `data.tar` member, for messages.
    pub fn data_member(&self) -> &str {
        &self.data.name
    }

    fn open_member(&self, member: &Member) -> Result<Box<dyn Read + Send>, DebError> {
        let section = Section {
            path: self.path.clone(),
            member: member.name.clone(),
            file: Arc::clone(&self.file),
            pos: member.offset,
            end: member.offset + member.size,
        };
        let buffered = BufReader::with_capacity(READ_BUFFER, section);
        Ok(match member.compression {
            Compression::None => Box::new(buffered),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(buffered)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(|source| DebError::Member {
                    path: self.path.clone(),
                    member: member.name.clone(),
                    source,
                })?)
            }
        })
    }
}

/// An `ar` member header's fields that matter.
struct Header {
    name: String,
    size: u64,
}

fn read_header(file: &File, path: &Path, offset: u64, len: u64) -> Result<Header, DebError> {
    let bad = |reason| DebError::BadHeader { path: path.to_path_buf(), offset, reason };
    if len - offset < AR_HEADER {
        return Err(DebError::Truncated { path: path.to_path_buf(), what: format!("the ar header at byte {offset}") });
    }
    let mut raw = [0u8; AR_HEADER as usize];
    file.read_exact_at(&mut raw, offset).map_err(|source| DebError::Io { path: path.to_path_buf(), source })?;
    if &raw[58..60] != b"`\n" {
        return Err(bad("it does not end with the ar terminator '`\\n'"));
    }
    let name = std::str::from_utf8(&raw[..16]).map_err(|_| bad("the member name is not text"))?;
    // GNU ar ends names with '/'; dpkg-deb pads them with spaces.
    let name = name.trim_end_matches(' ');
    let name = name.strip_suffix('/').unwrap_or(name);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("the member name is empty or not printable"));
    }
    let size = std::str::from_utf8(&raw[48..58]).map_err(|_| bad("the size is not a number"))?.trim_end_matches(' ');
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the size is not a decimal number"));
    }
    let size = size.parse().map_err(|_| bad("the size is not a decimal number"))?;
    Ok(Header { name: name.to_string(), size })
}

/// Checks that `debian-binary` says 2.x.
fn check_format_version(file: &File, path: &Path, member: &Member) -> Result<(), DebError> {
    const MAX: u64 = 64;
    let mut bytes = vec![0u8; member.size.min(MAX) as usize];
    file.read_exact_at(&mut bytes, member.offset)
        .map_err(|source| DebError::Io { path: path.to_path_buf(), source })?;
    let text = String::from_utf8_lossy(&bytes);
    let first_line = text.split('\n').next().unwrap_or("");
    let valid = text.contains('\n')
        && first_line
            .strip_prefix("2.")
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(DebError::BadFormatVersion { path: path.to_path_buf(), found: shown(first_line) });
    }
    Ok(())
}

/// Reads all of `reader` if it holds at most `limit` bytes; `None` if it holds more.
fn read_limited(reader: &mut impl Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// A stream that fails once it has given `left` bytes.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Only an error if there is more.
            return match self.inner.read(&mut [0u8; 1])? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!("it decompresses to more than {MAX_CONTROL_TAR} bytes"))),
            };
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// The bytes of one member, read in place with positioned reads.
struct Section {
    path: PathBuf,
    member: String,
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Section {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            let message = format!("{} shrank while member '{}' was read", self.path.display(), self.member);
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Untrusted text in a message: escaped, and cut short if long.
pub(crate) fn shown(text: &str) -> String {
    show_bytes(text.as_bytes())
}

/// Untrusted bytes in a message: escaped, and cut short if long.
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let escaped = bytes.escape_ascii().to_string();
    match escaped.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
