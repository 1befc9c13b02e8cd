use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use mini_store::testing::Scratch;

use super::*;
use crate::deb::testing::{control, deb, deb_with_data_tar, Entry};
use crate::deb::Compression;

/// Writes a `.deb` of `name` with `data` (and `extra` control fields) and the input naming it.
fn package(s: &Scratch, name: &str, depends: &[&str], extra: &str, data: &[Entry]) -> RootInput {
    let version = "1.0-1";
    let text = format!("{}{extra}", control(name, version, "amd64"));
    let path = s.0.join(format!("{name}.deb"));
    let md5sums = format!("d41d8cd98f00b204e9800998ecf8427e  usr/share/doc/{name}/copyright\n");
    fs::write(&path, deb(&text, Some(md5sums.as_bytes()), data, Compression::Xz)).unwrap();
    RootInput {
        name: name.into(),
        version: version.into(),
        architecture: "amd64".into(),
        path,
        depends: depends.iter().map(|d| d.to_string()).collect(),
    }
}

/// A small closure: a shell, a C library, a compiler and a package overriding one of its files.
fn closure(s: &Scratch) -> Vec<RootInput> {
    use Entry::*;
    vec![
        package(
            s,
            "zz-override",
            &["tools"],
            "",
            &[Dir("./"), Dir("./usr/"), Dir("./usr/bin/"), File("./usr/bin/gcc-12", 0o755, b"new gcc\n")],
        ),
        package(
            s,
            "tools",
            &["libc6"],
            "",
            &[
                Dir("./"),
                Dir("./usr/"),
                Dir("./usr/bin/"),
                File("./usr/bin/gcc-12", 0o4755, b"gcc\n"),
                Link("./usr/bin/gcc", "gcc-12"),
                Hard("./usr/bin/x86_64-linux-gnu-gcc-12", "./usr/bin/gcc-12"),
                Dir("./lib32/"),
                File("./lib32/crt1.o", 0o644, b"crt"),
            ],
        ),
        package(
            s,
            "libc6",
            &["dash"],
            "Multi-Arch: same\n",
            &[
                Dir("./"),
                Dir("./lib/"),
                Dir("./lib/x86_64-linux-gnu/"),
                File("./lib/x86_64-linux-gnu/libc.so.6", 0o755, b"libc"),
                Dir("./lib64/"),
                Link("./lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                Dir("./usr/"),
                Dir("./usr/share/"),
                Dir("./usr/share/doc/"),
                Dir("./usr/share/doc/libc6/"),
                File("./usr/share/doc/libc6/copyright", 0o644, b""),
            ],
        ),
        package(s, "dash", &[], "", &[Dir("./"), Dir("./bin/"), File("./bin/dash", 0o755, b"dash"), Dir("./usr/")]),
    ]
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_closure_unpacks_usr_merged_in_dependency_order() {
    let s = Scratch::new("root-basic");
    let out = s.0.join("root");
    let mut log = Vec::new();
    let assembled = assemble(&closure(&s), &out, &mut log).unwrap();
    let log = String::from_utf8(log).unwrap();
    assert_eq!(assembled.order, ["dash", "libc6", "tools", "zz-override"]);
    assert_eq!(assembled.replaced, 1);
    assert_eq!(assembled.alternatives, ["usr/bin/sh -> dash", "usr/bin/cc -> gcc"]);
    for top in USR_MERGED.iter().chain(&["lib32"]) {
        assert_eq!(fs::read_link(out.join(top)).unwrap(), Path::new(&format!("usr/{top}")), "{top}");
        assert!(fs::symlink_metadata(out.join("usr").join(top)).unwrap().is_dir());
    }
    assert!(!out.join("libx32").exists(), "lib32 and libx32 are made only when a package ships them");
    assert_eq!(fs::read(out.join("usr/bin/dash")).unwrap(), b"dash");
    assert_eq!(mode(&out.join("usr/bin/dash")), 0o755);
    assert_eq!(fs::read(out.join("usr/lib/x86_64-linux-gnu/libc.so.6")).unwrap(), b"libc");
    assert_eq!(fs::read(out.join("usr/lib32/crt1.o")).unwrap(), b"crt");
    assert_eq!(mode(&out.join("usr/lib32/crt1.o")), 0o644);
    // The later package's file wins; the hard link is a copy of the original, setuid dropped.
    assert_eq!(fs::read(out.join("usr/bin/gcc-12")).unwrap(), b"new gcc\n");
    assert_eq!(fs::read(out.join("usr/bin/x86_64-linux-gnu-gcc-12")).unwrap(), b"gcc\n");
    assert_eq!(mode(&out.join("usr/bin/x86_64-linux-gnu-gcc-12")), 0o755);
    assert!(log.contains("zz-override replaces /usr/bin/gcc-12 from tools"), "{log}");
    assert!(log.contains("not run: postinst"), "{log}");
    assert!(log.contains("alternative: usr/bin/cc -> gcc"), "{log}");
    assert_eq!(fs::read_link(out.join("usr/bin/cc")).unwrap(), Path::new("gcc"));
    assert_eq!(fs::read_link(out.join("usr/bin/sh")).unwrap(), Path::new("dash"));
    assert!(fs::symlink_metadata(out.join("usr/bin/awk")).is_err(), "no target, no link");

    let dpkg = out.join("var/lib/dpkg");
    let status = fs::read_to_string(dpkg.join("status")).unwrap();
    assert!(status.starts_with("Package: dash\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"));
    assert!(status.contains("Multi-Arch: same\n\nPackage: tools\n"), "{status}");
    assert!(status.ends_with(" It is made by hand.\n"), "{status}");
    assert_eq!(status.matches("\n\n").count(), 3);
    assert_eq!(fs::read(dpkg.join("available")).unwrap(), b"");
    assert_eq!(
        fs::read_to_string(dpkg.join("info/libc6:amd64.list")).unwrap(),
        "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libc.so.6\n/lib64\n/lib64/ld-linux-x86-64.so.2\n\
         /usr\n/usr/share\n/usr/share/doc\n/usr/share/doc/libc6\n/usr/share/doc/libc6/copyright\n"
    );
    assert_eq!(fs::read_to_string(dpkg.join("info/dash.list")).unwrap(), "/.\n/bin\n/bin/dash\n/usr\n");
    assert!(fs::read_to_string(dpkg.join("info/tools.md5sums")).unwrap().contains("usr/share/doc/tools/copyright"));
    // The replaced file is the later package's alone, as dpkg -S would say.
    let tools = fs::read_to_string(dpkg.join("info/tools.list")).unwrap();
    let over = fs::read_to_string(dpkg.join("info/zz-override.list")).unwrap();
    assert!(!tools.contains("/usr/bin/gcc-12\n") && over.contains("/usr/bin/gcc-12\n"), "{tools}\n{over}");
    assert!(dpkg.join("info/libc6:amd64.md5sums").exists());
}

#[test]
fn dpkg_query_lists_every_package() {
    if Command::new("dpkg-query").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "dpkg-query is missing, and CI=true requires it");
        eprintln!("dpkg-query is not installed: skipping");
        return;
    }
    let s = Scratch::new("root-dpkg-query");
    let out = s.0.join("root");
    assemble(&closure(&s), &out, &mut Vec::new()).unwrap();
    let admin = out.join("var/lib/dpkg");
    let query = Command::new("dpkg-query").arg(format!("--admindir={}", admin.display())).arg("-W").output().unwrap();
    assert!(query.status.success(), "{}", String::from_utf8_lossy(&query.stderr));
    assert_eq!(
        String::from_utf8(query.stdout).unwrap(),
        "dash\t1.0-1\nlibc6:amd64\t1.0-1\ntools\t1.0-1\nzz-override\t1.0-1\n"
    );
    let files = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args(["-L", "libc6"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&files.stdout);
    assert!(listed.contains("/lib/x86_64-linux-gnu/libc.so.6\n"), "{listed}{}", String::from_utf8_lossy(&files.stderr));
}

#[test]
fn the_same_inputs_make_the_same_bytes() {
    let s = Scratch::new("root-determinism");
    let inputs = closure(&s);
    let mut reversed = inputs.clone();
    reversed.reverse();
    let dump = |inputs: &[RootInput], name: &str| {
        let out = s.0.join(name);
        assemble(inputs, &out, &mut Vec::new()).unwrap();
        let mut nar = Vec::new();
        mini_store::nar::dump_path(&out, &mut nar).unwrap();
        nar
    };
    let first = dump(&inputs, "one");
    assert_eq!(first, dump(&inputs, "two"));
    assert_eq!(first, dump(&reversed, "three"), "the order the inputs are given in does not matter");
}

#[test]
fn a_deb_that_is_not_the_package_claimed_is_refused_before_writing() {
    let s = Scratch::new("root-mismatch");
    let mut inputs = closure(&s);
    inputs[0].version = "2.0-1".into();
    let out = s.0.join("root");
    let err = assemble(&inputs, &out, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("its Version is '1.0-1', but '2.0-1' was expected"), "{err}");
    assert!(!out.exists());
    let mut inputs = closure(&s);
    inputs[1].name = "Bad_Name".into();
    assert!(assemble(&inputs, &out, &mut Vec::new()).unwrap_err().to_string().contains("invalid package name"));
    let mut inputs = closure(&s);
    inputs[0].depends.push("nowhere".into());
    let err = assemble(&inputs, &out, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("'zz-override' depends on 'nowhere'"), "{err}");
    let mut inputs = closure(&s);
    inputs.push(inputs[0].clone());
    assert!(matches!(assemble(&inputs, &out, &mut Vec::new()), Err(RootError::DuplicatePackage(_))));
    let status = package(&s, "status", &[], "Status: purge ok not-installed\n", &[Entry::Dir("./")]);
    assert!(matches!(assemble(&[status], &out, &mut Vec::new()), Err(RootError::StatusInControl { .. })));
    assert!(!out.exists());
    fs::create_dir(&out).unwrap();
    assert!(matches!(assemble(&closure(&s), &out, &mut Vec::new()), Err(RootError::Output { .. })));
}

#[test]
fn hostile_or_unsupported_entries_are_refused_and_nothing_is_left() {
    use Entry::*;
    let s = Scratch::new("root-hostile");
    let victim = s.0.join("victim");
    fs::create_dir(&victim).unwrap();
    let victim_path: &'static str = Box::leak(victim.display().to_string().into_boxed_str());
    let cases: Vec<(Vec<Entry>, &str)> = vec![
        (vec![Dir("./"), Fifo("./run/pipe")], "cannot unpack './run/pipe': it is a fifo"),
        (vec![File("./../escape", 0o644, b"x")], "has a '.' or '..' component"),
        (vec![File("/etc/passwd", 0o644, b"x")], "is absolute"),
        (
            vec![Link("./usr/l", victim_path), File("./usr/l/pwn", 0o644, b"x")],
            "below 'usr/l', which is a symbolic link",
        ),
        (
            vec![Link("./usr/l", victim_path), Dir("./usr/l/")],
            "would be a directory, but it is already a symbolic link",
        ),
        (vec![File("./a", 0o644, b""), File("./a", 0o644, b"")], "the same archive holds 'a' twice"),
        (vec![Hard("./h", "./usr/bin/dash")], "is not a regular file the same archive wrote earlier"),
        (vec![Link("./bin", "/elsewhere")], "'usr/bin' would be a symbolic link, but it is already a directory"),
        (vec![File("./usr/bin/dash/x", 0o644, b"")], "below 'usr/bin/dash', which is a regular file"),
    ];
    for (data, expected) in cases {
        let evil = package(&s, "evil", &["dash"], "", &data);
        let dash = package(&s, "dash", &[], "", &[Dir("./"), Dir("./bin/"), File("./bin/dash", 0o755, b"dash")]);
        let out = s.0.join("root");
        let err = assemble(&[evil, dash], &out, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("package 'evil'") && err.contains(expected), "expected '{expected}' in: {err}");
        assert!(!out.exists(), "{expected}: the half-made root is removed");
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
    }
}

#[test]
fn a_package_may_not_ship_the_dpkg_database() {
    use Entry::*;
    let s = Scratch::new("root-database");
    let evil = package(&s, "evil", &[], "", &[File("./var/lib/dpkg/status", 0o644, b"Package: fake\n")]);
    let err = assemble(&[evil], &s.0.join("root"), &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("is part of the dpkg database"), "{err}");
}

#[test]
fn a_package_unpacking_to_far_more_than_its_installed_size_is_refused() {
    use Entry::*;
    let s = Scratch::new("root-bomb");
    // Installed-Size: 1 KiB allows 64 MiB and 2 KiB; this file is 65 MiB.
    let big: &'static [u8] = Vec::leak(vec![0u8; 65 << 20]);
    let bomb = package(&s, "bomb", &[], "Installed-Size: 1\n", &[Dir("./"), File("./usr/zeros", 0o644, big)]);
    let out = s.0.join("root");
    let err = assemble(&[bomb], &out, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("package 'bomb'") && err.contains("Installed-Size"), "{err}");
    assert!(!out.exists());
}

#[test]
fn packages_shipping_the_usr_merge_links_themselves_unpack() {
    // As trixie's base-files and libc6 do (DEP17).
    use Entry::*;
    let s = Scratch::new("root-dep17");
    let base = package(
        &s,
        "base-files",
        &[],
        "",
        &[Dir("./"), Link("./bin", "usr/bin"), Link("./lib64", "usr/lib64"), Link("./lib32", "usr/lib32")],
    );
    let dash =
        package(&s, "dash", &["base-files"], "", &[Dir("./"), Dir("./bin/"), File("./bin/dash", 0o755, b"dash")]);
    let out = s.0.join("root");
    assemble(&[base, dash], &out, &mut Vec::new()).unwrap();
    assert_eq!(fs::read_link(out.join("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(fs::read_link(out.join("lib32")).unwrap(), Path::new("usr/lib32"));
    assert_eq!(fs::read(out.join("usr/bin/dash")).unwrap(), b"dash");
    let list = fs::read_to_string(out.join("var/lib/dpkg/info/base-files.list")).unwrap();
    assert!(list.contains("/bin\n") && list.contains("/lib64\n"), "{list}");
}

#[test]
fn names_versions_and_architectures_are_checked_by_the_rules_of_names() {
    check_package_name("libstdc++6").unwrap();
    check_version("1:2.36-9+deb12u4").unwrap();
    check_architecture("all").unwrap();
    for (result, rule) in [
        (check_package_name("--opt"), crate::names::PACKAGE_RULE),
        (check_version("1.0 "), crate::names::VERSION_RULE),
        (check_architecture("../x"), crate::names::ARCHITECTURE_RULE),
    ] {
        assert!(result.unwrap_err().to_string().contains(rule));
    }
}

/// An input for `name` whose `data.tar` is `data_tar`.
fn package_with_data_tar(s: &Scratch, name: &str, data_tar: &[u8]) -> RootInput {
    let path = s.0.join(format!("{name}.deb"));
    fs::write(&path, deb_with_data_tar(&control(name, "1", "amd64"), data_tar)).unwrap();
    RootInput { name: name.into(), version: "1".into(), architecture: "amd64".into(), path, depends: vec![] }
}

fn header(kind: tar::EntryType, path: &str, size: usize) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_path(path).unwrap();
    header.set_entry_type(kind);
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_cksum();
    header
}

#[test]
fn long_names_and_pax_paths_are_read_and_huge_name_records_refused() {
    let s = Scratch::new("root-long-names");
    let long = format!("./usr/share/{}/file", "d".repeat(150));
    let mut builder = tar::Builder::new(Vec::new());
    let mut file = header(tar::EntryType::Regular, "placeholder", 4);
    builder.append_data(&mut file, &long, &b"long"[..]).unwrap();
    let record = "30 path=./usr/share/pax-named\n";
    assert_eq!(record.len(), 30);
    builder.append(&header(tar::EntryType::XHeader, "PaxHeader", record.len()), record.as_bytes()).unwrap();
    builder.append(&header(tar::EntryType::Regular, "short", 3), &b"pax"[..]).unwrap();
    let target = "t".repeat(120);
    let mut link = header(tar::EntryType::Symlink, "placeholder", 0);
    builder.append_link(&mut link, "./usr/share/link", &target).unwrap();
    let input = package_with_data_tar(&s, "long", &builder.into_inner().unwrap());
    let out = s.0.join("root");
    assemble(&[input], &out, &mut Vec::new()).unwrap();
    assert_eq!(fs::read(out.join(&long[2..])).unwrap(), b"long");
    assert_eq!(fs::read(out.join("usr/share/pax-named")).unwrap(), b"pax");
    assert_eq!(fs::read_link(out.join("usr/share/link")).unwrap(), Path::new(&target));
    let list = fs::read_to_string(out.join("var/lib/dpkg/info/long.list")).unwrap();
    assert!(list.contains(&format!("{}\n/usr/share/pax-named\n/usr/share/link\n", &long[1..])), "{list}");

    let mut bomb = tar::Builder::new(Vec::new());
    let size = (tar_names::MAX_RECORD + 1) as usize;
    bomb.append(&header(tar::EntryType::GNULongName, "././@LongLink", size), &vec![b'a'; size][..]).unwrap();
    bomb.append(&header(tar::EntryType::Regular, "x", 0), &b""[..]).unwrap();
    let input = package_with_data_tar(&s, "bomb", &bomb.into_inner().unwrap());
    let err = assemble(&[input], &s.0.join("bomb-root"), &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("more than the 1048576 accepted"), "{err}");
}
