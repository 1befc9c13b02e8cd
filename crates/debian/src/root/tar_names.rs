//! The names of a `data.tar`'s entries, with GNU long names and pax
//! `path`/`linkpath` records read here rather than by the tar crate: it
//! reads such a record whole into memory however large the header says it
//! is, and a few bytes of xz can say gigabytes. Here a record larger than
//! [`MAX_RECORD`] is refused before it is read. The archive is read in the
//! tar crate's raw mode, which hands these records over as entries.

use std::io::Read;

/// The largest long-name or pax record accepted; a path is at most a few KiB.
pub const MAX_RECORD: u64 = 1 << 20;

/// The path and link target records give the next entry.
#[derive(Debug, Default)]
pub struct EntryNames {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

impl EntryNames {
    /// Reads `entry` if it is a record for the next entry (GNU long name
    /// or link, pax local or global header); whether it was.
    pub fn absorb<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<bool, String> {
        let kind = entry.header().entry_type();
        if !(kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions())
        {
            return Ok(false);
        }
        let size = entry.size();
        if size > MAX_RECORD {
            return Err(format!("a long-name or pax record of {size} bytes, more than the {MAX_RECORD} accepted"));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes).map_err(|e| format!("cannot read a long-name or pax record: {e}"))?;
        if kind.is_gnu_longname() {
            self.path = Some(until_nul(bytes));
        } else if kind.is_gnu_longlink() {
            self.link = Some(until_nul(bytes));
        } else if kind.is_pax_local_extensions() {
            for (key, value) in pax_records(&bytes)? {
                match key {
                    b"path" => self.path = Some(value.to_vec()),
                    b"linkpath" => self.link = Some(value.to_vec()),
                    // In raw mode the tar crate reads the header's size, so another one would lose the stream.
                    b"size" => return Err("a pax record gives the size, which mini does not read".into()),
                    _ => {}
                }
            }
        }
        Ok(true)
    }

    /// The path and link target of `entry`, from the records before it or its header.
    pub fn take<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> (Vec<u8>, Option<Vec<u8>>) {
        let header = entry.header();
        let path = self.path.take().unwrap_or_else(|| header.path_bytes().into_owned());
        let link = self.link.take().or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        (path, link)
    }
}

fn until_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    bytes
}

/// One `key=value` record of a pax header.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// The `<length> <key>=<value>\n` records of a pax header.
fn pax_records(mut bytes: &[u8]) -> Result<Vec<PaxRecord<'_>>, String> {
    let bad = || "a malformed pax record".to_string();
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let space = bytes.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let length: usize = std::str::from_utf8(&bytes[..space]).ok().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        if length <= space + 1 || length > bytes.len() || bytes[length - 1] != b'\n' {
            return Err(bad());
        }
        let record = &bytes[space + 1..length - 1];
        let equals = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        records.push((&record[..equals], &record[equals + 1..]));
        bytes = &bytes[length..];
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_are_read_by_their_lengths() {
        let good = b"32 path=./usr/share/a long name\n16 linkpath=x=y\n";
        let records = pax_records(good).unwrap();
        assert_eq!(records, [(&b"path"[..], &b"./usr/share/a long name"[..]), (b"linkpath", b"x=y")]);
        for bad in [&b"5 a=b\n"[..], b"x path=a\n", b"99 path=a\n", b"9 pathab\n", b"2 \n"] {
            assert!(pax_records(bad).is_err(), "{}", bad.escape_ascii());
        }
        assert!(pax_records(b"").unwrap().is_empty());
    }
}
