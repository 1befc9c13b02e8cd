use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

use mini_store::testing::{Rng, Scratch};

use super::testing::{ar, control, deb, tar, Entry};
use super::*;

const ALL: [Compression; 4] = [Compression::None, Compression::Gzip, Compression::Xz, Compression::Zstd];

fn write(s: &Scratch, name: &str, bytes: &[u8]) -> PathBuf {
    let path = s.0.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// The paths of the entries of a tar stream.
fn entry_paths(stream: impl Read) -> Vec<String> {
    let mut archive = tar::Archive::new(stream);
    archive.entries().unwrap().map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned()).collect()
}

fn sample_data() -> Vec<Entry> {
    vec![
        Entry::Dir("./"),
        Entry::Dir("./usr/"),
        Entry::Dir("./usr/bin/"),
        Entry::File("./usr/bin/hello", 0o755, b"#!/bin/sh\necho hello\n"),
    ]
}

#[test]
fn every_compression_reads_back() {
    let s = Scratch::new("deb-compressions");
    for compression in ALL {
        let bytes =
            deb(&control("hello", "1:2.0~rc1-3", "amd64"), Some(b"abc  usr/bin/hello\n"), &sample_data(), compression);
        let deb = Deb::open(&write(&s, "hello.deb", &bytes)).unwrap();
        let control = deb.control().unwrap();
        assert_eq!(control.paragraph.get("Package"), Some("hello"));
        assert_eq!(control.paragraph.get("Version"), Some("1:2.0~rc1-3"));
        assert_eq!(control.md5sums.as_deref(), Some(&b"abc  usr/bin/hello\n"[..]));
        assert_eq!(control.other_files, ["postinst"]);
        assert_eq!(deb.data_member(), format!("data.tar{}", testing::suffix(compression)));
        assert_eq!(
            entry_paths(deb.data().unwrap()),
            ["./", "./usr/", "./usr/bin/", "./usr/bin/hello"],
            "{compression:?}"
        );
    }
}

#[test]
fn packages_built_by_dpkg_deb_read_back() {
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "dpkg-deb is missing, and CI=true requires it");
        eprintln!("dpkg-deb is not installed: skipping");
        return;
    }
    let s = Scratch::new("deb-dpkg-deb");
    let root = s.0.join("root");
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("DEBIAN/control"), control("made-by-dpkg", "1.0-1", "all")).unwrap();
    fs::write(root.join("usr/bin/tool"), "tool\n").unwrap();
    for z in ["xz", "gzip", "none", "zstd"] {
        let out = s.0.join(format!("made-{z}.deb"));
        let status = Command::new("dpkg-deb")
            .args(["--root-owner-group", &format!("-Z{z}"), "--build"])
            .arg(&root)
            .arg(&out)
            .output()
            .unwrap();
        if z == "zstd" && !status.status.success() {
            // Older dpkg-deb cannot write zstd.
            continue;
        }
        assert!(status.status.success(), "{z}: {}", String::from_utf8_lossy(&status.stderr));
        let deb = Deb::open(&out).unwrap();
        assert_eq!(deb.control().unwrap().paragraph.get("Package"), Some("made-by-dpkg"));
        assert_eq!(entry_paths(deb.data().unwrap()), ["./", "./usr/", "./usr/bin/", "./usr/bin/tool"], "{z}");
    }
}

fn open_error(s: &Scratch, bytes: &[u8]) -> String {
    Deb::open(&write(s, "bad.deb", bytes)).unwrap_err().to_string()
}

#[test]
fn malformed_archives_are_refused_with_what_is_wrong() {
    let s = Scratch::new("deb-malformed");
    let control_tar = tar(&[Entry::File("./control", 0o644, b"Package: a\n")]);
    let data_tar = tar(&sample_data());
    assert!(open_error(&s, b"").contains("does not start with the ar magic"));
    assert!(open_error(&s, b"PK\x03\x04 zip file").contains("does not start with the ar magic"));
    assert!(open_error(&s, b"!<arch>\n").contains("not 'debian-binary'"));
    type Members<'a> = Vec<(&'a str, &'a [u8])>;
    let cases: Vec<(Members, &str)> = vec![
        (vec![("debian-binary", b"3.0\n"), ("control.tar", &control_tar), ("data.tar", &data_tar)], "'3.0' is not 2.x"),
        (vec![("debian-binary", b"2.0"), ("control.tar", &control_tar), ("data.tar", &data_tar)], "is not 2.x"),
        (vec![("control.tar", &control_tar), ("data.tar", &data_tar)], "the first member is 'control.tar'"),
        (vec![("debian-binary", b"2.0\n"), ("control.tar", &control_tar)], "no data.tar member"),
        (vec![("debian-binary", b"2.0\n"), ("data.tar", &data_tar)], "no control.tar member"),
        (
            vec![("debian-binary", b"2.0\n"), ("control.tar", &control_tar), ("data.tar.bz2", b"BZh9")],
            "member 'data.tar.bz2' is compressed with bzip2",
        ),
        (
            vec![("debian-binary", b"2.0\n"), ("control.tar.lzma", b"]\0\0"), ("data.tar", &data_tar)],
            "member 'control.tar.lzma' is compressed with lzma",
        ),
        (
            vec![("debian-binary", b"2.0\n"), ("control.tar", &control_tar), ("data.tar.rar", b"")],
            "unexpected member 'data.tar.rar'",
        ),
        (vec![("debian-binary", b"2.0\n"), ("evil", b""), ("data.tar", &data_tar)], "unexpected member 'evil'"),
        (
            vec![
                ("debian-binary", b"2.0\n"),
                ("control.tar", &control_tar),
                ("data.tar", &data_tar),
                ("data.tar", &data_tar),
            ],
            "the member 'data.tar' appears twice",
        ),
    ];
    for (members, expected) in cases {
        let err = open_error(&s, &ar(&members));
        assert!(err.contains(expected), "expected '{expected}' in: {err}");
    }
    // Members dpkg ignores (named with a leading '_') and debian-binary 2.x minors are accepted.
    let fine = ar(&[
        ("debian-binary", b"2.1\n"),
        ("_gpgorigin", b"sig"),
        ("control.tar", &control_tar),
        ("data.tar", &data_tar),
    ]);
    Deb::open(&write(&s, "fine.deb", &fine)).unwrap();
}

#[test]
fn absurd_or_truncated_sizes_are_refused_before_reading() {
    let s = Scratch::new("deb-sizes");
    let mut bytes = ar(&[("debian-binary", b"2.0\n")]);
    bytes.extend_from_slice(
        format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", "data.tar", 0, 0, 0, 100644, 9_999_999_999u64).as_bytes(),
    );
    assert!(open_error(&s, &bytes).contains("member 'data.tar' ends before its declared size"));
    let mut header = format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", "data.tar", 0, 0, 0, 100644, "12x").into_bytes();
    let mut bytes = ar(&[("debian-binary", b"2.0\n")]);
    bytes.append(&mut header);
    assert!(open_error(&s, &bytes).contains("the size is not a decimal number"));
    let huge = vec![0u8; (MAX_CONTROL_MEMBER + 2) as usize];
    let bytes = ar(&[("debian-binary", b"2.0\n"), ("control.tar", &huge), ("data.tar", b"")]);
    assert!(open_error(&s, &bytes).contains("more than the 67108864 accepted"));
}

#[test]
fn control_tar_without_a_control_file_or_with_a_bad_one_is_refused() {
    let s = Scratch::new("deb-control");
    let data_tar = tar(&sample_data());
    for (control_tar, expected) in [
        (tar(&[Entry::File("./md5sums", 0o644, b"")]), "control.tar has no 'control' file"),
        (tar(&[Entry::File("./control", 0o644, b"Package a\n")]), "its control file: line 1 is neither"),
        (b"not a tar at all, but long enough to be read as a header".repeat(20), "cannot read member 'control.tar'"),
    ] {
        let bytes = ar(&[("debian-binary", b"2.0\n"), ("control.tar", &control_tar), ("data.tar", &data_tar)]);
        let err = Deb::open(&write(&s, "c.deb", &bytes)).unwrap().control().unwrap_err().to_string();
        assert!(err.contains(expected), "expected '{expected}' in: {err}");
    }
}

/// Reads everything a `.deb` offers; errors are expected, panics are not.
fn read_everything(path: &std::path::Path) -> Result<(), String> {
    let deb = Deb::open(path).map_err(|e| e.to_string())?;
    let control = deb.control().map_err(|e| e.to_string());
    let mut data = deb.data().map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(&mut data);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| e.to_string())?;
    }
    control.map(|_| ())
}

#[test]
fn truncated_and_corrupted_packages_never_panic() {
    let s = Scratch::new("deb-fuzz");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for compression in ALL {
        let good = deb(&control("fuzz", "1", "amd64"), Some(b"x  usr/bin/hello\n"), &sample_data(), compression);
        let path = write(&s, "fuzz.deb", &good);
        read_everything(&path).unwrap();
        let mut refused = 0;
        for cut in (0..good.len()).step_by(7) {
            let path = write(&s, "fuzz.deb", &good[..cut]);
            refused += usize::from(read_everything(&path).is_err());
        }
        assert!(refused > good.len() / 7 / 2, "{compression:?}: most truncations are noticed ({refused})");
        for _ in 0..300 {
            let mut bad = good.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bad.len() as u64) as usize;
                bad[at] = rng.below(256) as u8;
            }
            let path = write(&s, "fuzz.deb", &bad);
            let _ = read_everything(&path);
        }
    }
}

#[test]
fn a_control_tar_that_decompresses_too_far_is_refused() {
    let s = Scratch::new("deb-bomb");
    // A long file after `control` keeps tar reading past the limit.
    let mut bomb = tar(&[Entry::File("./control", 0o644, b"Package: a\n")]);
    bomb.truncate(bomb.len() - 1024);
    let mut header = tar::Header::new_gnu();
    header.set_path("padding").unwrap();
    header.set_size(MAX_CONTROL_TAR);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    bomb.extend_from_slice(header.as_bytes());
    bomb.resize(bomb.len() + MAX_CONTROL_TAR as usize + 1024, 0);
    let member = testing::compress(&bomb, Compression::Zstd);
    drop(bomb);
    let bytes = ar(&[("debian-binary", b"2.0\n"), ("control.tar.zst", &member), ("data.tar", &tar(&sample_data()))]);
    let err = Deb::open(&write(&s, "bomb.deb", &bytes)).unwrap().control().unwrap_err().to_string();
    assert!(err.contains("decompresses to more than 268435456 bytes"), "{err}");
}

#[test]
fn a_data_member_larger_than_the_read_buffer_reads_back_in_full() {
    let s = Scratch::new("deb-stream");
    let big: &'static [u8] = Box::leak(vec![7u8; 5 << 20].into_boxed_slice());
    let data = [Entry::Dir("./"), Entry::File("./big", 0o644, big)];
    let bytes = deb(&control("big", "1", "all"), None, &data, Compression::Xz);
    assert!(bytes.len() < 100 << 10);
    let deb = Deb::open(&write(&s, "big.deb", &bytes)).unwrap();
    let mut total = 0u64;
    let mut stream = deb.data().unwrap();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert!(total > 5 << 20);
}
