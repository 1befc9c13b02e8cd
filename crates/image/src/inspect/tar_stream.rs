//! A small, strict, streaming tar reader for inspecting images.
//!
//! The `tar` crate reads GNU long names and PAX headers into memory whole,
//! whatever size a header claims, so a hostile archive could make `mini
//! image inspect` allocate gigabytes. Listing needs little of tar: entry
//! names, types, sizes and the data as a stream. This reader caps every
//! header it buffers, never seeks backwards, and says exactly where an
//! archive stops making sense.

use std::io::{self, Read, Seek, SeekFrom};

use mini_store::hash_io::read_full;

const BLOCK: u64 = 512;
/// The longest GNU long name or link target accepted.
const MAX_LONG_NAME: u64 = 64 * 1024;
/// The largest PAX extended header accepted.
const MAX_PAX: u64 = 1024 * 1024;

/// Where a tar is read from: anything readable that can also skip ahead,
/// by seeking when it is a plain file.
pub(crate) trait Source: Read {
    /// Skips `n` bytes; an `UnexpectedEof` error if the input ends first.
    fn skip(&mut self, n: u64) -> io::Result<()>;
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        (**self).skip(n)
    }
}

/// A stream that skips by reading.
pub(crate) struct Streamed<R>(pub R);

impl<R: Read> Read for Streamed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Source for Streamed<R> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let skipped = io::copy(&mut (&mut self.0).take(n), &mut io::sink())?;
        if skipped < n {
            return Err(truncated());
        }
        Ok(())
    }
}

/// A file that skips by seeking, checking against the file's length so a
/// truncated archive is still noticed.
pub(crate) struct Seekable<F> {
    file: F,
    pos: u64,
    len: u64,
}

impl<F: Read + Seek> Seekable<F> {
    pub(crate) fn new(mut file: F) -> io::Result<Self> {
        let len = file.seek(SeekFrom::End(0))?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Seekable { file, pos: 0, len })
    }
}

impl<F: Read> Read for Seekable<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<F: Read + Seek> Source for Seekable<F> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let target = self.pos.checked_add(n).filter(|&t| t <= self.len).ok_or_else(truncated)?;
        self.file.seek(SeekFrom::Start(target))?;
        self.pos = target;
        Ok(())
    }
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the archive is truncated")
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Directory,
    Symlink,
    HardLink,
    /// Devices, fifos, sparse files and the like: listed, never followed.
    Other,
}

/// One member of the archive, with extension headers already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub link: Vec<u8>,
    pub size: u64,
}

/// Reads entries one after the other; the data of the current entry can be
/// read through [`TarReader::data`] before asking for the next one.
pub(crate) struct TarReader<S> {
    source: S,
    /// Bytes of the current entry's data not read yet.
    remaining: u64,
    /// Zero padding after the current entry's data.
    padding: u64,
    /// Where the next header starts, for messages.
    offset: u64,
    /// The current entry's name, for messages.
    current: String,
}

/// The data of the current entry.
pub(crate) struct EntryData<'a, S> {
    reader: &'a mut TarReader<S>,
}

impl<S: Source> Read for EntryData<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.reader.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.reader.source.read(&mut buf[..want])?;
        if n == 0 {
            return Err(truncated());
        }
        self.reader.remaining -= n as u64;
        Ok(n)
    }
}

/// Extension headers waiting for the entry they describe.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
}

impl<S: Source> TarReader<S> {
    pub(crate) fn new(source: S) -> Self {
        TarReader { source, remaining: 0, padding: 0, offset: 0, current: String::new() }
    }

    /// Where the current entry's data starts in the stream; only
    /// meaningful before any of it is read.
    pub(crate) fn data_offset(&self) -> u64 {
        self.offset.saturating_sub(self.remaining).saturating_sub(self.padding)
    }

    /// The current entry's data.
    pub(crate) fn data(&mut self) -> EntryData<'_, S> {
        EntryData { reader: self }
    }

    /// The next entry, or `None` at the end-of-archive block (or at the end
    /// of the input on a block boundary, which GNU tar also accepts).
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>, String> {
        let mut pending = Pending::default();
        loop {
            let header = match self.next_header()? {
                Some(h) => h,
                None if pending.path.is_some() || pending.link.is_some() || pending.size.is_some() => {
                    return Err("the archive ends after an extension header".into())
                }
                None => return Ok(None),
            };
            let at = self.offset - BLOCK;
            let size = match header[156] {
                b'x' | b'L' | b'K' | b'g' => header_size(&header, at)?,
                _ => pending.size.take().map_or_else(|| header_size(&header, at), Ok)?,
            };
            self.start_data(size);
            match header[156] {
                b'L' => pending.path = Some(self.read_small(size, MAX_LONG_NAME, "GNU long name")?),
                b'K' => pending.link = Some(self.read_small(size, MAX_LONG_NAME, "GNU long link name")?),
                b'x' => {
                    let records = self.read_small(size, MAX_PAX, "PAX header")?;
                    parse_pax(&records, &mut pending).map_err(|e| format!("bad PAX header at byte {at}: {e}"))?;
                }
                b'g' => {}
                flag => {
                    let kind = match flag {
                        b'0' | 0 | b'7' => Kind::File,
                        b'1' => Kind::HardLink,
                        b'2' => Kind::Symlink,
                        b'5' => Kind::Directory,
                        _ => Kind::Other,
                    };
                    let path = pending.path.take().unwrap_or_else(|| header_name(&header));
                    let link = pending.link.take().unwrap_or_else(|| field(&header[157..257]).to_vec());
                    self.current = String::from_utf8_lossy(&path).chars().take(200).collect();
                    return Ok(Some(Entry { path, kind, link, size }));
                }
            }
        }
    }

    /// Skips what is left of the previous entry and reads the next header
    /// block; `None` at the end of the archive.
    fn next_header(&mut self) -> Result<Option<[u8; BLOCK as usize]>, String> {
        let rest = self.remaining + self.padding;
        self.source.skip(rest).map_err(|e| format!("cannot read past '{}': {e}", self.current))?;
        self.remaining = 0;
        self.padding = 0;
        let mut header = [0u8; BLOCK as usize];
        let got = read_full(&mut self.source, &mut header).map_err(|e| format!("cannot read a header: {e}"))?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            return Err(format!("the archive is truncated inside the header at byte {}", self.offset));
        }
        if header.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        check_sum(&header).map_err(|e| format!("{e} at byte {}: not a tar archive, or a damaged one", self.offset))?;
        self.offset += BLOCK;
        Ok(Some(header))
    }

    fn start_data(&mut self, size: u64) {
        self.remaining = size;
        self.padding = (BLOCK - size % BLOCK) % BLOCK;
        self.offset = self.offset.saturating_add(size).saturating_add(self.padding);
    }

    fn read_small(&mut self, size: u64, limit: u64, what: &str) -> Result<Vec<u8>, String> {
        if size > limit {
            return Err(format!("a {what} of {size} bytes (more than {limit}) before byte {}", self.offset));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        self.data().read_to_end(&mut bytes).map_err(|e| format!("cannot read a {what}: {e}"))?;
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        Ok(bytes)
    }
}

/// A NUL-terminated header field.
fn field(bytes: &[u8]) -> &[u8] {
    bytes.iter().position(|&b| b == 0).map_or(bytes, |end| &bytes[..end])
}

/// The name, joined to the ustar prefix when there is one (GNU headers use
/// those bytes for other things and mark themselves with `ustar  `).
fn header_name(header: &[u8; BLOCK as usize]) -> Vec<u8> {
    let name = field(&header[..100]);
    if &header[257..263] == b"ustar\0" {
        let prefix = field(&header[345..500]);
        if !prefix.is_empty() {
            return [prefix, b"/", name].concat();
        }
    }
    name.to_vec()
}

fn header_size(header: &[u8; BLOCK as usize], at: u64) -> Result<u64, String> {
    number(&header[124..136]).ok_or_else(|| format!("bad size field in the header at byte {at}"))
}

/// An octal field, or GNU's base-256 form (first byte's top bit set).
fn number(bytes: &[u8]) -> Option<u64> {
    if bytes[0] & 0x80 != 0 {
        if bytes[0] & 0x40 != 0 {
            return None;
        }
        let mut n: u64 = u64::from(bytes[0] & 0x3f);
        for &b in &bytes[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(n);
    }
    let text = field(bytes);
    let digits: Vec<u8> = text.iter().copied().skip_while(|&b| b == b' ').take_while(|&b| b != b' ').collect();
    if digits.is_empty() {
        return Some(0);
    }
    digits.iter().try_fold(0u64, |n, &d| match d {
        b'0'..=b'7' => n.checked_mul(8)?.checked_add(u64::from(d - b'0')),
        _ => None,
    })
}

/// The header checksum: the sum of its bytes with the checksum field read
/// as spaces; old tars summed signed bytes, so both are accepted.
fn check_sum(header: &[u8; BLOCK as usize]) -> Result<(), &'static str> {
    let stored = number(&header[148..156]).ok_or("bad header checksum field")?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in header.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err("bad header checksum")
    }
}

/// PAX records: `<length> <key>=<value>\n`, where length counts the whole
/// record. Only the keys that change what an entry is matter here.
fn parse_pax(mut records: &[u8], pending: &mut Pending) -> Result<(), String> {
    while !records.is_empty() {
        let space = records.iter().position(|&b| b == b' ').ok_or("a record without a length")?;
        let len: usize = std::str::from_utf8(&records[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a record with a bad length")?;
        if len <= space + 1 || len > records.len() || records[len - 1] != b'\n' {
            return Err("a record with a bad length".into());
        }
        let record = &records[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or("a record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => pending.path = Some(value.to_vec()),
            b"linkpath" => pending.link = Some(value.to_vec()),
            b"size" => {
                let size = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).ok_or("a bad size")?;
                pending.size = Some(size);
            }
            _ => {}
        }
        records = &records[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(bytes: &[u8]) -> Result<Vec<(String, Kind, u64, String)>, String> {
        let mut reader = TarReader::new(Streamed(bytes));
        let mut out = Vec::new();
        while let Some(e) = reader.next_entry()? {
            let mut data = String::new();
            reader.data().read_to_string(&mut data).map_err(|e| e.to_string())?;
            out.push((String::from_utf8_lossy(&e.path).into_owned(), e.kind, e.size, data));
        }
        Ok(out)
    }

    fn builder_bytes(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    }

    #[test]
    fn lists_files_dirs_links_and_long_names() {
        let long = format!("mini/store/{}/{}", "a".repeat(40), "b".repeat(120));
        let bytes = builder_bytes(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, "mini/", io::empty()).unwrap();
            file(b, "mini/hello", b"hi");
            file(b, &long, b"long");
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "bin", "/mini/store/x/bin").unwrap();
        });
        let entries = list(&bytes).unwrap();
        assert_eq!(
            entries,
            vec![
                ("mini/".into(), Kind::Directory, 0, String::new()),
                ("mini/hello".into(), Kind::File, 2, "hi".into()),
                (long, Kind::File, 4, "long".into()),
                ("bin".into(), Kind::Symlink, 0, String::new()),
            ]
        );
        let mut reader = TarReader::new(Streamed(&bytes[..]));
        for _ in 0..3 {
            reader.next_entry().unwrap();
        }
        assert_eq!(reader.next_entry().unwrap().unwrap().link, b"/mini/store/x/bin");
    }

    #[test]
    fn applies_pax_path_and_size() {
        let records = |pairs: &[(&str, &str)]| {
            let mut out = Vec::new();
            for (k, v) in pairs {
                let body = format!(" {k}={v}\n");
                // The length counts its own digits.
                let len = (1..).map(|digits| body.len() + digits).find(|l| l.to_string().len() + body.len() == *l);
                let len = len.unwrap();
                out.extend(format!("{len}{body}").bytes());
            }
            out
        };
        let bytes = builder_bytes(|b| {
            let pax = records(&[("path", "a/very/pax/name"), ("mtime", "1")]);
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_size(pax.len() as u64);
            b.append_data(&mut h, "PaxHeaders/x", &pax[..]).unwrap();
            file(b, "short", b"data");
        });
        assert_eq!(list(&bytes).unwrap(), vec![("a/very/pax/name".into(), Kind::File, 4, "data".into())]);
    }

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(number(b"00000000012\0"), Some(10));
        assert_eq!(number(b"  12 \0\0\0\0\0\0\0"), Some(10));
        assert_eq!(number(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]), Some(258));
        assert_eq!(number(b"0000000009\0\0"), None);
        assert_eq!(number(&[0xff; 12]), None);
    }

    #[test]
    fn rejects_garbage_truncation_and_huge_headers() {
        assert!(list(&[0x42; 1024]).unwrap_err().contains("at byte 0: not a tar archive"));
        let mut zeros_with_bad_sum = [b'0'; 512];
        zeros_with_bad_sum[156] = b'0';
        assert!(list(&zeros_with_bad_sum).unwrap_err().starts_with("bad header checksum at byte 0"));
        assert_eq!(list(&[]).unwrap(), vec![]);
        let bytes = builder_bytes(|b| file(b, "f", &[7; 2000]));
        assert!(list(&bytes[..1000]).unwrap_err().contains("truncated"), "{:?}", list(&bytes[..1000]));
        assert!(list(&bytes[..700]).unwrap_err().contains("truncated"));
        assert!(list(&bytes[..100]).unwrap_err().contains("truncated inside the header"));
        // A GNU long name claiming a gigabyte is refused before reading it.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_path("././@LongLink").unwrap();
        h.set_size(1 << 30);
        h.set_cksum();
        assert!(list(h.as_bytes()).unwrap_err().contains("GNU long name of 1073741824 bytes"));
        // An extension header with nothing after it.
        let bytes = builder_bytes(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::GNULongName);
            h.set_size(5);
            b.append_data(&mut h, "././@LongLink", &b"name\0"[..]).unwrap();
        });
        assert!(list(&bytes).unwrap_err().contains("ends after an extension header"));
    }

    #[test]
    fn seeking_source_notices_truncation() {
        let bytes = builder_bytes(|b| file(b, "f", &[7; 2000]));
        let mut reader = TarReader::new(Seekable::new(io::Cursor::new(&bytes[..1200])).unwrap());
        assert!(reader.next_entry().unwrap().is_some());
        assert!(reader.next_entry().unwrap_err().contains("truncated"));
        let mut reader = TarReader::new(Seekable::new(io::Cursor::new(&bytes[..])).unwrap());
        assert_eq!(reader.next_entry().unwrap().map(|e| e.size), Some(2000));
        assert_eq!(reader.next_entry().unwrap(), None);
    }
}
