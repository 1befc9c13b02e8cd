//! A binary cache's narinfo declares the archive's `FileSize` (compressed)
//! and `NarSize` (unpacked). Before the fix the whole download was
//! unpacked first and the sizes compared after: a 156 KB xz bomb grew the
//! store to 1 GB before it was refused. Now reading stops one byte past
//! the declared size. The attempts run `mini` with a file size limit
//! (`RLIMIT_FSIZE`) far below the bomb and far above the declared size,
//! so unpacking more than declared kills `mini` with `SIGXFSZ`, and the
//! refusal has to come first; the store must not grow either way.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use mini_cache::key::SecretKey;
use mini_cache::narinfo::{self, NarInfo};
use mini_store::nar::{self, Node};
use mini_store::store_path::StorePath;

use crate::{ok, text, users, Attempt, Who};

/// The largest file `mini` may write in these attempts.
const FILE_LIMIT: u64 = 8 << 20;

/// Writes a flake whose `x` only a substitute can give (its builder
/// fails); `x`'s output path.
pub fn unbuildable(a: &Attempt) -> String {
    a.flake(&[("x", "echo MARKER-built; exit 1")], "");
    let shown = ok(&a.mini(&["derivation", "show", ".#x"]));
    let json: serde_json::Value = serde_json::from_str(&shown).expect("derivation show prints JSON");
    let drv = json.as_object().and_then(|o| o.values().next()).expect("one derivation");
    drv["outputs"]["out"]["path"].as_str().expect("an output path").to_string()
}

/// Makes `dir` a binary cache offering `path` as the archive `nar`,
/// stored with `compression` (`xz` or `none`), under a narinfo that `lie`
/// may change before it is signed by a fresh key; the public key.
pub fn cache_offering(dir: &Path, path: &str, nar: &[u8], compression: &str, lie: impl FnOnce(&mut NarInfo)) -> String {
    let file = if compression == "xz" {
        let mut encoder = xz2::write::XzEncoder::new(Vec::new(), 1);
        encoder.write_all(nar).expect("compress the archive");
        encoder.finish().expect("compress the archive")
    } else {
        nar.to_vec()
    };
    let url = format!("nar/{}.nar{}", blake3::hash(&file).to_hex(), if compression == "xz" { ".xz" } else { "" });
    std::fs::create_dir_all(dir.join("nar")).expect("create the cache");
    std::fs::write(dir.join("nix-cache-info"), narinfo::cache_info()).expect("write nix-cache-info");
    std::fs::write(dir.join(&url), &file).expect("write the archive");
    let store_path = StorePath::parse(path).expect("a store path");
    let mut info = NarInfo {
        url,
        compression: compression.into(),
        file_hash: *blake3::hash(&file).as_bytes(),
        file_size: file.len() as u64,
        nar_hash: *blake3::hash(nar).as_bytes(),
        nar_size: nar.len() as u64,
        references: Default::default(),
        deriver: None,
        sigs: Vec::new(),
        store_path: store_path.clone(),
    };
    lie(&mut info);
    let key = SecretKey::generate("attack-cache-1").expect("generate a key");
    info.sigs.push(key.sign(&info.fingerprint()));
    std::fs::write(dir.join(narinfo::file_name(&store_path)), info.render()).expect("write the narinfo");
    key.public().render()
}

/// `mini build .#x` substituting from the cache at `dir` only, trusting `key`.
pub fn substitute(a: &Attempt, dir: &Path, key: &str, file_limit: Option<u64>) -> Output {
    let url = format!("file://{}", dir.display());
    let args = ["build", ".#x", "--no-link", "--substituters", &url, "--trusted-public-keys", key];
    let Some(limit) = file_limit else { return a.mini(&args) };
    // As Attempt::mini, under `prlimit`, which keeps the limit across setpriv.
    if a.who == Who::Nobody {
        let status = Command::new("chown").args(["-R", "65534:65534"]).arg(&a.scratch.0).status();
        assert!(status.is_ok_and(|s| s.success()), "chown the scratch directory to nobody");
    }
    let mut command = Command::new("prlimit");
    command.arg(format!("--fsize={limit}")).arg("--");
    if a.who == Who::Nobody {
        command.args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
    }
    command
        .arg(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(a.store())
        .args(args)
        .current_dir(a.dir())
        .env("HOME", &a.scratch.0)
        .output()
        .expect("run mini under prlimit (util-linux)")
}

/// Bytes in regular files below `dir`, without following links.
fn bytes_below(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// The archive of one file of `len` zero bytes.
fn zeros(len: usize) -> Vec<u8> {
    let mut nar = Vec::new();
    nar::encode(&Node::Regular { executable: false, contents: vec![0; len] }, &mut nar).expect("encode");
    nar
}

/// Substitutes `x` from a cache whose narinfo `lie`s about `nar`; checks
/// the refusal says `expected`, names the narinfo, and left nothing.
fn attempt(name: &str, nar: &[u8], compression: &str, lie: impl Fn(&mut NarInfo), expected: &str) {
    for who in users() {
        let a = Attempt::new(name, who);
        let path = unbuildable(&a);
        let cache = a.path("cache");
        let key = cache_offering(&cache, &path, nar, compression, &lie);
        let before = bytes_below(&a.store());
        let out = substitute(&a, &cache, &key, Some(FILE_LIMIT));
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{who:?}: mini did not fail cleanly (killed for writing past {FILE_LIMIT} bytes?):\n{stderr}"
        );
        let hash_part = path.trim_start_matches("/mini/store/").split('-').next().unwrap_or_default();
        let narinfo_url = format!("file://{}/{hash_part}.narinfo", cache.display());
        assert!(stderr.contains(expected) && stderr.contains(&narinfo_url), "{who:?}: {stderr}");
        assert!(std::fs::symlink_metadata(a.physical(&path)).is_err(), "{who:?}: {path} was kept");
        let grown = bytes_below(&a.store()).saturating_sub(before);
        assert!(grown < 1 << 20, "{who:?}: the store grew by {grown} bytes");
        let staging: Vec<_> =
            std::fs::read_dir(a.store().join("tmp")).map(|d| d.flatten().collect()).unwrap_or_default();
        assert!(staging.is_empty(), "{who:?}: staging left behind: {staging:?}");
    }
}

#[test]
fn an_archive_larger_than_its_nar_size_is_refused_while_unpacking() {
    // 64 MiB of zeros: about 10 KB of xz, declared as 4 KiB unpacked.
    attempt(
        "cache-bomb-nar",
        &zeros(64 << 20),
        "xz",
        |info| info.nar_size = 4096,
        "is larger than the NarSize of 4096 bytes that",
    );
}

#[test]
fn a_file_larger_than_its_file_size_is_refused_while_downloading() {
    // 32 MiB stored uncompressed, declared as a 1 KiB download.
    attempt(
        "cache-bomb-file",
        &zeros(32 << 20),
        "none",
        |info| info.file_size = 1024,
        "is larger than the FileSize of 1024 bytes that",
    );
}
