//! The `.narinfo` format: one `Key: value` line per field, as Nix writes
//! them, and the fingerprint a signature covers. mini's archive hashes are
//! BLAKE3, so `NarHash` and `FileHash` read `blake3:<hex>`.

use std::collections::BTreeSet;
use std::fmt::Write;

use mini_store::encoding::{nar_hash_text, parse_nar_hash};
use mini_store::store_path::StorePath;
use mini_store::STORE_DIR;

use crate::{CacheError, Result};

/// What a cache says about one store path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub store_path: StorePath,
    /// The compressed archive, relative to the cache's root.
    pub url: String,
    pub compression: String,
    /// BLAKE3 of the compressed file.
    pub file_hash: [u8; 32],
    pub file_size: u64,
    /// BLAKE3 of the archive.
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
    pub references: BTreeSet<StorePath>,
    pub deriver: Option<StorePath>,
    pub sigs: Vec<String>,
}

/// The narinfo's file name for `path`: `<hashpart>.narinfo`.
pub fn file_name(path: &StorePath) -> String {
    format!("{}.narinfo", path.hash_part())
}

impl NarInfo {
    /// What a signature signs: `1;<path>;<nar hash>;<nar size>;<references>`,
    /// the references as full paths, sorted, comma-separated.
    pub fn fingerprint(&self) -> String {
        let references: Vec<String> = self.references.iter().map(StorePath::to_string).collect();
        format!("1;{};{};{};{}", self.store_path, nar_hash_text(&self.nar_hash), self.nar_size, references.join(","))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let references: Vec<String> = self.references.iter().map(StorePath::base_name).collect();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "StorePath: {}", self.store_path);
        let _ = writeln!(out, "URL: {}", self.url);
        let _ = writeln!(out, "Compression: {}", self.compression);
        let _ = writeln!(out, "FileHash: {}", nar_hash_text(&self.file_hash));
        let _ = writeln!(out, "FileSize: {}", self.file_size);
        let _ = writeln!(out, "NarHash: {}", nar_hash_text(&self.nar_hash));
        let _ = writeln!(out, "NarSize: {}", self.nar_size);
        let _ = writeln!(out, "References: {}", references.join(" "));
        if let Some(deriver) = &self.deriver {
            let _ = writeln!(out, "Deriver: {}", deriver.base_name());
        }
        for sig in &self.sigs {
            let _ = writeln!(out, "Sig: {sig}");
        }
        out
    }

    /// Parses a narinfo; `name` says which in errors.
    pub fn parse(name: &str, text: &str) -> Result<NarInfo> {
        let bad = |message: String| CacheError::NarInfo { name: name.into(), message };
        let mut fields: Vec<(&str, &str)> = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (key, value) =
                line.split_once(": ").ok_or_else(|| bad(format!("line '{line}' is not 'Key: value'")))?;
            fields.push((key, value.trim()));
        }
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let need = |key: &str| get(key).ok_or_else(|| bad(format!("it has no {key}")));
        let number = |key: &str| need(key)?.parse::<u64>().map_err(|_| bad(format!("its {key} is not a number")));
        let hash = |key: &str| parse_nar_hash(need(key)?).ok_or_else(|| bad(format!("its {key} is not blake3:<hex>")));
        let store_path = StorePath::parse(need("StorePath")?).map_err(|e| bad(e.to_string()))?;
        let base = |b: &str| StorePath::parse_base_name(b).map_err(|e| bad(format!("reference '{b}': {e}")));
        let references = get("References").unwrap_or("").split_whitespace().map(base).collect::<Result<_>>()?;
        let deriver = get("Deriver").filter(|d| !d.is_empty() && *d != "unknown-deriver").map(base).transpose()?;
        Ok(NarInfo {
            store_path,
            url: need("URL")?.to_string(),
            compression: get("Compression").unwrap_or("bzip2").to_string(),
            file_hash: hash("FileHash")?,
            file_size: number("FileSize")?,
            nar_hash: hash("NarHash")?,
            nar_size: number("NarSize")?,
            references,
            deriver,
            sigs: fields.iter().filter(|(k, _)| *k == "Sig").map(|(_, v)| v.to_string()).collect(),
        })
    }
}

/// The `nix-cache-info` a cache starts with.
pub fn cache_info() -> String {
    format!("StoreDir: {STORE_DIR}\nWantMassQuery: 1\nPriority: 40\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NarInfo {
        let p = |s: &str| StorePath::parse(s).unwrap();
        NarInfo {
            store_path: p("/mini/store/00000000000000000000000000000000-hello"),
            url: "nar/ab.nar.xz".into(),
            compression: "xz".into(),
            file_hash: [1; 32],
            file_size: 12,
            nar_hash: [2; 32],
            nar_size: 96,
            references: BTreeSet::from([
                p("/mini/store/11111111111111111111111111111111-lib"),
                p("/mini/store/00000000000000000000000000000000-hello"),
            ]),
            deriver: Some(p("/mini/store/22222222222222222222222222222222-hello.drv")),
            sigs: vec!["k:c2ln".into()],
        }
    }

    #[test]
    fn renders_exactly_and_parses_back() {
        let info = sample();
        let two = "0202020202020202020202020202020202020202020202020202020202020202";
        let text = info.render();
        assert_eq!(
            text,
            format!(
                "StorePath: /mini/store/00000000000000000000000000000000-hello\nURL: nar/ab.nar.xz\nCompression: xz\n\
                 FileHash: blake3:{}\nFileSize: 12\nNarHash: blake3:{two}\nNarSize: 96\n\
                 References: 00000000000000000000000000000000-hello 11111111111111111111111111111111-lib\n\
                 Deriver: 22222222222222222222222222222222-hello.drv\nSig: k:c2ln\n",
                "01".repeat(32)
            )
        );
        assert_eq!(NarInfo::parse("x", &text).unwrap(), info);
        assert_eq!(
            info.fingerprint(),
            format!(
                "1;/mini/store/00000000000000000000000000000000-hello;blake3:{two};96;\
                 /mini/store/00000000000000000000000000000000-hello,/mini/store/11111111111111111111111111111111-lib"
            )
        );
    }

    #[test]
    fn malformed_narinfos_say_what_is_wrong() {
        let text = sample().render().replace("NarSize: 96", "NarSize: many");
        let e = NarInfo::parse("abc.narinfo", &text).unwrap_err().to_string();
        assert!(e.contains("abc.narinfo") && e.contains("NarSize"), "{e}");
    }
}
