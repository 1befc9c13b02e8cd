//! A binary-cache archive that tries to write through a link it holds: a
//! symlink to a victim directory and then an entry of the same name with
//! a file below it, a name with a `/` below a symlink, or a symlink to a
//! victim file and then a file of the same name. Substitution must refuse
//! each (naming the problem) and leave the victim untouched.
//!
//! The archive parser already refused these before issue 13 (names are
//! single components, sorted and unique), so these attempts pass on the
//! code before the fix too; they guard the restore that now writes every
//! entry through `TreeWriter`'s directory handles.

use crate::cache_bomb::{cache_offering, substitute, unbuildable};
use crate::{listing, text, users};

/// An archive's length-prefixed, zero-padded tokens.
fn tokens(tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for token in tokens {
        out.extend_from_slice(&(token.len() as u64).to_le_bytes());
        out.extend_from_slice(token);
        out.resize(out.len().next_multiple_of(8), 0);
    }
    out
}

/// A directory archive of `entries` (name, the node's tokens), in the order given.
fn directory(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let mut out = tokens(&[b"nix-archive-1", b"(", b"type", b"directory"]);
    for (name, node) in entries {
        out.extend(tokens(&[b"entry", b"(", b"name", name, b"node"]));
        out.extend_from_slice(node);
        out.extend(tokens(&[b")"]));
    }
    out.extend(tokens(&[b")"]));
    out
}

fn symlink(target: &[u8]) -> Vec<u8> {
    tokens(&[b"(", b"type", b"symlink", b"target", target, b")"])
}

fn file(contents: &[u8]) -> Vec<u8> {
    tokens(&[b"(", b"type", b"regular", b"contents", contents, b")"])
}

fn dir_holding(name: &[u8], node: Vec<u8>) -> Vec<u8> {
    let mut out = tokens(&[b"(", b"type", b"directory", b"entry", b"(", b"name", name, b"node"]);
    out.extend(node);
    out.extend(tokens(&[b")", b")"]));
    out
}

#[test]
fn archives_cannot_write_through_their_own_links() {
    for who in users() {
        let a = crate::Attempt::new("cache-links", who);
        let victim = a.victim();
        let path = unbuildable(&a);
        let to_dir = victim.as_os_str().as_encoded_bytes();
        let to_file = victim.join("keep.txt");
        let to_file = to_file.as_os_str().as_encoded_bytes();
        let attacks = [
            (
                "a link, then a directory of its name",
                directory(&[(b"a", symlink(to_dir)), (b"a", dir_holding(b"pwn", file(b"pwned")))]),
            ),
            ("a link, then a name below it", directory(&[(b"a", symlink(to_dir)), (b"a/pwn", file(b"pwned"))])),
            (
                "a link to a file, then a file of its name",
                directory(&[(b"z", symlink(to_file)), (b"z", file(b"pwned"))]),
            ),
            (
                "a link, then entries out of order",
                directory(&[(b"b", symlink(to_dir)), (b"a", file(b"")), (b"b", dir_holding(b"pwn", file(b"pwned")))]),
            ),
        ];
        for (i, (attack, nar)) in attacks.iter().enumerate() {
            let cache = a.path(&format!("cache{i}"));
            let key = cache_offering(&cache, &path, nar, "xz", |_| {});
            let out = substitute(&a, &cache, &key, None);
            let stderr = text(&out.stderr);
            assert!(!out.status.success(), "{who:?}, {attack}: substituted");
            assert!(
                stderr.contains("cannot unpack")
                    && ["duplicate", "not sorted", "invalid entry name"].iter().any(|why| stderr.contains(why)),
                "{who:?}, {attack}: the refusal does not say what is wrong:\n{stderr}"
            );
            assert_eq!(listing(&victim), ["keep.txt"], "{who:?}, {attack}: a file appeared in the victim");
            let kept = std::fs::read_to_string(victim.join("keep.txt")).expect("read the victim file");
            assert_eq!(kept, "keep me\n", "{who:?}, {attack}: the victim file was overwritten");
            assert!(std::fs::symlink_metadata(a.physical(&path)).is_err(), "{who:?}, {attack}: {path} was kept");
        }
    }
}
