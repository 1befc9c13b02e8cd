//! The host's apt, as mini uses it: to resolve a closure of packages into
//! a [`Lock`] (`mini debian lock`) and to download one pinned `.deb`
//! (`builtin:fetchdeb`). apt brings the sources, mirrors, proxies,
//! credentials and signed package lists the host is configured with; mini
//! names no archive itself.
//!
//! apt runs unprivileged and changes nothing of the host: it reads the
//! host's configuration and package lists, but sees an empty dpkg status
//! (so it resolves the whole closure, as for an empty root) and keeps its
//! cache and state in a private directory, with locking off. Its output is
//! untrusted: every name, version, architecture, file name and hash it
//! prints is checked before use, and what goes back to it as arguments is
//! checked first, so none can become an option.
//!
//! Which suite: packages come from the suite asked for (default: the
//! host's codename, `VERSION_CODENAME` in /etc/os-release) together with
//! its `-updates` and `-security` suites, which apt is told to prefer
//! (`APT::Default-Release`); so a lock for `bookworm` has bookworm's
//! security fixes, as the host's own apt would install.
//!
//! Run as root, apt downloads as the user `_apt`, which cannot write into
//! mini's private download directory (root's alone): apt says so in the
//! build log ("Download is performed unsandboxed as root") and downloads
//! as root, as it does for any `apt-get download` into a directory of
//! root's. The download is still checked against the hash of apt's signed
//! package lists by apt, and against the recipe's by the scheduler.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::apt_output::{
    codename, is_progress, listed, lock_of, parse_simulation, parse_sources, refused_package, Refusal,
};
use crate::deb822;
use crate::lock::Lock;
use crate::names;

/// How many of apt's last output lines an error quotes.
const TAIL_LINES: usize = 16;

/// Why apt could not resolve or download.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error(
        "cannot run {program}: {why}\n       mini resolves and downloads Debian packages with the host's apt: \
         run it on a Debian or Ubuntu host with apt installed"
    )]
    NotRunnable { program: String, why: String },
    #[error("{what} '{value}' is not valid: {rule}")]
    Invalid { what: &'static str, value: String, rule: &'static str },
    #[error(
        "apt knows no package '{name}':{quoted}\n       check the name (`apt-cache search {name}`), and run \
         `apt-get update` if the host's package lists are old"
    )]
    UnknownPackage { name: String, quoted: String },
    #[error(
        "apt has nothing to install as '{name}':{quoted}\n       it may be a virtual package: lock one of the \
         packages that provide it instead"
    )]
    NoCandidate { name: String, quoted: String },
    #[error(
        "'{name}' is a virtual package, which apt installs as a package that provides it\n       lock that \
         package instead (`apt-cache showpkg {name}` lists them under Reverse Provides)"
    )]
    Provided { name: String },
    #[error(
        "the suite '{suite}' is not in the host's apt sources, which have {configured}\n       add it to apt's \
         sources (/etc/apt/sources.list.d/) and run `apt-get update`, or lock for one of those with --suite"
    )]
    UnknownSuite { suite: String, configured: String },
    #[error(
        "the architecture '{architecture}' is not configured for the host's apt, which has {configured}\n       \
         add it with `dpkg --add-architecture {architecture}` and `apt-get update`, or lock for one of those \
         with --arch"
    )]
    UnknownArchitecture { architecture: String, configured: String },
    #[error(
        "cannot tell which release this host runs (no VERSION_CODENAME in /etc/os-release)\n       name one of \
         the suites of the host's apt sources with --suite: {configured}"
    )]
    NoCodename { configured: String },
    #[error("{program} failed ({status}) to {what}:{quoted}")]
    Failed { program: String, status: String, what: String, quoted: String },
    #[error("{program} printed what mini cannot use, {what}: {message}")]
    BadOutput { program: String, what: String, message: String },
    #[error("{what} '{}': {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
}

/// The host's apt programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apt {
    apt_get: Vec<OsString>,
    apt_cache: Vec<OsString>,
    apt_config: Vec<OsString>,
}

impl Apt {
    /// `apt-get`, `apt-cache` and `apt-config` from `PATH`.
    pub fn host() -> Apt {
        Apt::new(vec!["apt-get".into()], vec!["apt-cache".into()], vec!["apt-config".into()])
    }

    /// The apt run as these commands (each a program, then its first arguments).
    pub fn new(apt_get: Vec<OsString>, apt_cache: Vec<OsString>, apt_config: Vec<OsString>) -> Apt {
        Apt { apt_get, apt_cache, apt_config }
    }
}

/// One of apt's programs, ready to run with the private options.
struct Program<'a> {
    command: &'a [OsString],
}

impl Program<'_> {
    /// The program's name: the last word of its command (`sh /x/apt-get` in tests is apt-get).
    fn name(&self) -> String {
        let last = self.command.last().map(Path::new);
        last.and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn command(&self) -> Command {
        let mut command = Command::new(self.command.first().map_or(OsString::from("false"), |p| p.clone()));
        command.args(self.command.iter().skip(1)).stdin(Stdio::null());
        // apt's messages are matched in English, and its output parsed.
        command.env("LC_ALL", "C").env_remove("LANGUAGE");
        command
    }

    /// Runs it with `args`: its stdout, or why it failed (`what` it was to do).
    fn output(&self, args: &[String], what: &str) -> Result<String, AptError> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|e| AptError::NotRunnable { program: self.name(), why: e.to_string() })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(self.failed(out.status, what, &stderr.lines().map(str::to_string).collect::<Vec<_>>()));
        }
        String::from_utf8(out.stdout).map_err(|_| self.bad_output(what, "it is not UTF-8"))
    }

    fn failed(&self, status: ExitStatus, what: &str, lines: &[String]) -> AptError {
        let start = lines.len().saturating_sub(TAIL_LINES);
        AptError::Failed {
            program: self.name(),
            status: status.to_string(),
            what: what.into(),
            quoted: quote(&lines[start..]),
        }
    }

    fn bad_output(&self, what: &str, message: impl Into<String>) -> AptError {
        AptError::BadOutput { program: self.name(), what: what.into(), message: message.into() }
    }
}

/// `lines` as an error quotes them, one per line.
fn quote(lines: &[String]) -> String {
    lines.iter().filter(|l| !l.trim().is_empty()).map(|l| format!("\n  > {}", l.trim_end())).collect()
}

/// A private directory for apt's cache, state and an empty dpkg status,
/// removed when dropped.
struct Private {
    dir: PathBuf,
}

impl Private {
    /// A new one below `parent`, or below the temporary directory.
    fn create(parent: Option<&Path>) -> Result<Private, AptError> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        loop {
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = parent.join(format!("mini-apt-{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let private = Private { dir };
                    for sub in ["cache", "state"] {
                        let path = private.dir.join(sub);
                        fs::create_dir(&path).map_err(|source| AptError::Io { what: "cannot create", path, source })?;
                    }
                    let status = private.status();
                    fs::write(&status, b"").map_err(|source| AptError::Io {
                        what: "cannot create",
                        path: status,
                        source,
                    })?;
                    return Ok(private);
                }
                // Someone else's (another mini, or planted): never reused.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(AptError::Io { what: "cannot create", path: dir, source }),
            }
        }
    }

    fn status(&self) -> PathBuf {
        self.dir.join("status")
    }

    /// The options that make apt use the host's configuration and lists
    /// (`lists`), with this directory's state, cache and empty status.
    fn options(&self, lists: &Path) -> Vec<String> {
        let dir = self.dir.display();
        let mut options = Vec::new();
        for (key, value) in [
            ("Debug::NoLocking", "1".to_string()),
            ("Dir::State", format!("{dir}/state")),
            ("Dir::State::Lists", lists.display().to_string()),
            ("Dir::State::status", self.status().display().to_string()),
            ("Dir::Cache", format!("{dir}/cache")),
            ("Dir::Cache::pkgcache", String::new()),
            ("Dir::Cache::srcpkgcache", String::new()),
            ("APT::Install-Recommends", "0".to_string()),
            ("APT::Install-Suggests", "0".to_string()),
        ] {
            options.push("-o".into());
            options.push(format!("{key}={value}"));
        }
        options
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        mini_store::store::discard_tree(&self.dir);
    }
}

/// What the host's apt configuration says.
struct HostConfig {
    /// Its package lists directory.
    lists: PathBuf,
    /// Its native architecture.
    architecture: String,
}

/// Reads `Dir::State::lists` and `APT::Architecture` from `apt-config`.
fn host_config(apt: &Apt) -> Result<HostConfig, AptError> {
    let config = Program { command: &apt.apt_config };
    let args = ["shell", "LISTS", "Dir::State::lists/d", "ARCH", "APT::Architecture"].map(String::from);
    let out = config.output(&args, "read apt's configuration")?;
    let mut values = BTreeMap::new();
    for line in out.lines() {
        let (name, quoted) = line.split_once('=').ok_or_else(|| config.bad_output("as its configuration", line))?;
        // Values are single-quoted; one holding a quote is not one mini can use.
        let value = quoted
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .filter(|v| !v.contains('\''))
            .ok_or_else(|| config.bad_output("as its configuration", line))?;
        values.insert(name.to_string(), value.to_string());
    }
    let lists = values.remove("LISTS").filter(|l| l.starts_with('/'));
    let lists = lists.ok_or_else(|| config.bad_output("as its configuration", "no absolute Dir::State::lists"))?;
    let architecture = values.remove("ARCH").filter(|a| names::is_architecture(a));
    let architecture = architecture.ok_or_else(|| config.bad_output("as its configuration", "no APT::Architecture"))?;
    Ok(HostConfig { lists: PathBuf::from(lists), architecture })
}

/// Resolves the closure of `packages` with the host's apt, for `suite`
/// (default: the host's codename) and `architecture` (default: the
/// host's), as installed into an empty root without recommends.
pub fn resolve(
    apt: &Apt,
    suite: Option<&str>,
    architecture: Option<&str>,
    packages: &[String],
) -> Result<Lock, AptError> {
    for package in packages {
        if !names::is_package(package) {
            return Err(AptError::Invalid {
                what: "the package name",
                value: package.clone(),
                rule: names::PACKAGE_RULE,
            });
        }
    }
    if packages.is_empty() {
        return Err(AptError::Invalid {
            what: "the package list",
            value: String::new(),
            rule: "name at least one package",
        });
    }
    if let Some(suite) = suite.filter(|s| !names::is_suite(s)) {
        return Err(AptError::Invalid { what: "the suite", value: suite.into(), rule: names::SUITE_RULE });
    }
    if let Some(arch) = architecture.filter(|a| !names::is_architecture(a)) {
        return Err(AptError::Invalid { what: "the architecture", value: arch.into(), rule: names::ARCHITECTURE_RULE });
    }
    let host = host_config(apt)?;
    let private = Private::create(None)?;
    let options = private.options(&host.lists);
    let apt_get = Program { command: &apt.apt_get };
    let mut args = vec!["indextargets".to_string()];
    args.extend(options.iter().cloned());
    args.extend(["--format", "$(IDENTIFIER) $(CODENAME) $(SUITE) $(ARCHITECTURE)"].map(String::from));
    let sources = parse_sources(&apt_get.output(&args, "list the host's package lists")?);

    let suite = match suite {
        Some(suite) => suite.to_string(),
        None => fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| codename(&text))
            .ok_or_else(|| AptError::NoCodename { configured: listed(&sources.suites) })?,
    };
    if !sources.suites.contains(&suite) {
        return Err(AptError::UnknownSuite { suite, configured: listed(&sources.suites) });
    }
    let architecture = architecture.unwrap_or(&host.architecture).to_string();
    if !sources.architectures.contains(&architecture) {
        return Err(AptError::UnknownArchitecture { architecture, configured: listed(&sources.architectures) });
    }

    let mut args = vec!["install".to_string(), "-s".into(), "-q".into()];
    args.extend(options.iter().cloned());
    let escaped = suite.replace('.', "\\.").replace('+', "\\+");
    args.extend([
        "-o".into(),
        format!("APT::Architecture={architecture}"),
        "-o".into(),
        format!("APT::Default-Release=/^{escaped}(-updates|-security)?$/"),
    ]);
    args.extend(packages.iter().cloned());
    let out = apt_get
        .command()
        .args(&args)
        .output()
        .map_err(|e| AptError::NotRunnable { program: apt_get.name(), why: e.to_string() })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // What apt explains (a virtual package's providers, unmet dependencies) and its errors.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let said: Vec<String> =
            stdout.lines().chain(stderr.lines()).filter(|l| !is_progress(l)).map(String::from).collect();
        let quoted = quote(&said[said.len().saturating_sub(TAIL_LINES)..]);
        return Err(match refused_package(&stderr) {
            Some((name, Refusal::Unknown)) => AptError::UnknownPackage { name, quoted },
            Some((name, Refusal::NoCandidate)) => AptError::NoCandidate { name, quoted },
            None => apt_get.failed(out.status, &format!("resolve {}", packages.join(" ")), &said),
        });
    }
    let simulation = String::from_utf8_lossy(&out.stdout);
    let installs = parse_simulation(&simulation).map_err(|m| apt_get.bad_output("resolving", m))?;
    if installs.is_empty() {
        return Err(apt_get.bad_output("resolving", "no package to install"));
    }
    // A virtual package with one provider is installed as that provider,
    // and a lock's request must name packages it holds.
    if let Some(name) = packages.iter().find(|p| !installs.iter().any(|(name, _, _)| name == *p)) {
        return Err(AptError::Provided { name: name.clone() });
    }

    let apt_cache = Program { command: &apt.apt_cache };
    let mut args = vec!["show".to_string(), "-q".into()];
    args.extend(options.iter().cloned());
    args.extend(installs.iter().map(|(name, version, arch)| format!("{name}:{arch}={version}")));
    let records = apt_cache.output(&args, "show the resolved packages")?;
    let paragraphs =
        deb822::parse_all(&records).map_err(|e| apt_cache.bad_output("as package records", e.to_string()))?;
    let lock = lock_of(suite, architecture, packages, &installs, &paragraphs)
        .map_err(|m| apt_cache.bad_output("as package records", m))?;
    Ok(lock)
}

/// Downloads `package` `version` (`architecture`) with the host's apt
/// into a new directory `dir`, apt's output going to `log`; the one
/// regular file apt brought.
pub fn download(
    apt: &Apt,
    package: &str,
    version: &str,
    architecture: &str,
    dir: &Path,
    log: &mut dyn Write,
) -> Result<PathBuf, AptError> {
    let checks = [
        ("the package name", package, names::is_package(package), names::PACKAGE_RULE),
        ("the version", version, names::is_version(version), names::VERSION_RULE),
        ("the architecture", architecture, names::is_architecture(architecture), names::ARCHITECTURE_RULE),
    ];
    if let Some((what, value, _, rule)) = checks.into_iter().find(|c| !c.2) {
        return Err(AptError::Invalid { what, value: value.into(), rule });
    }
    let host = host_config(apt)?;
    fs::DirBuilder::new().mode(0o700).create(dir).map_err(|source| AptError::Io {
        what: "cannot create",
        path: dir.to_path_buf(),
        source,
    })?;
    let private = Private::create(Some(dir))?;
    let files = dir.join("files");
    fs::create_dir(&files).map_err(|source| AptError::Io { what: "cannot create", path: files.clone(), source })?;
    let wanted = format!("{package}:{architecture}={version}");
    let apt_get = Program { command: &apt.apt_get };
    let mut command = apt_get.command();
    command.arg("download").arg("-q").args(private.options(&host.lists)).arg(&wanted).current_dir(&files);
    let _ = writeln!(log, "downloading {wanted} with the host's apt");
    let (status, tail) = mini_build::builtin_builders::run_logged(command, log, TAIL_LINES)
        .map_err(|e| AptError::NotRunnable { program: apt_get.name(), why: e.to_string() })?;
    if !status.success() {
        return Err(apt_get.failed(status, &format!("download {wanted}"), &tail));
    }
    let mut found = Vec::new();
    for entry in
        fs::read_dir(&files).map_err(|source| AptError::Io { what: "cannot read", path: files.clone(), source })?
    {
        let entry = entry.map_err(|source| AptError::Io { what: "cannot read", path: files.clone(), source })?;
        found.push(entry.file_name());
    }
    found.sort();
    let bad = |message: String| apt_get.bad_output(&format!("downloading {wanted}"), message);
    match found.as_slice() {
        [one] => {
            let path = files.join(one);
            // apt writes a plain file; anything else is neither followed nor taken.
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(path),
                _ => Err(bad(format!("it left '{}', which is not a regular file", one.to_string_lossy()))),
            }
        }
        _ => {
            let names: Vec<String> = found.iter().map(|f| format!("'{}'", f.to_string_lossy())).collect();
            let names = if names.is_empty() { "none".to_string() } else { names.join(", ") };
            Err(bad(format!("it left {} files, not one: {names}", found.len())))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Whether the host has apt; without it the tests that need it are
    /// skipped, except under CI, where they must run.
    pub(crate) fn have_apt() -> bool {
        let found = Command::new("apt-get").arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(found || std::env::var("CI").as_deref() != Ok("true"), "apt-get is required under CI");
        if !found {
            eprintln!("skipped: no apt-get on this host");
        }
        found
    }

    #[test]
    fn the_hosts_apt_resolves_a_closure_and_refuses_what_it_does_not_have() {
        if !have_apt() {
            return;
        }
        let apt = Apt::host();
        let lock = resolve(&apt, None, None, &["make".to_string()]).unwrap();
        let make = lock.packages.iter().find(|p| p.name == "make").expect("make is in its closure");
        assert!(make.depends.contains(&"libc6".to_string()), "{make:?}");
        assert!(lock.packages.iter().any(|p| p.name == "libc6"));
        assert_eq!(resolve(&apt, None, None, &["make".to_string()]).unwrap(), lock, "the same lists, the same lock");
        Lock::parse(&lock.to_json(), "debian.lock").unwrap();

        let err = resolve(&apt, None, None, &["no-such-package-here".to_string()]).unwrap_err().to_string();
        assert!(err.contains("apt knows no package 'no-such-package-here'"), "{err}");
        assert!(
            err.contains("apt-cache search no-such-package-here") && err.contains("> E: Unable to locate"),
            "{err}"
        );
        let err = resolve(&apt, None, Some("zz80"), &["make".to_string()]).unwrap_err().to_string();
        assert!(
            err.contains("the architecture 'zz80' is not configured") && err.contains("dpkg --add-architecture zz80"),
            "{err}"
        );
        let err = resolve(&apt, Some("no-such-suite"), None, &["make".to_string()]).unwrap_err().to_string();
        assert!(err.contains("the suite 'no-such-suite' is not in the host's apt sources"), "{err}");
        // A virtual package: with one provider apt installs that, with several it refuses.
        let err = resolve(&apt, None, None, &["libc-dev".to_string()]).unwrap_err().to_string();
        assert!(err.contains("'libc-dev' is a virtual package") && err.contains("apt-cache showpkg libc-dev"), "{err}");
        let err = resolve(&apt, None, None, &["awk".to_string()]).unwrap_err().to_string();
        assert!(
            err.contains("apt has nothing to install as 'awk'") && err.contains("> Package awk is a virtual"),
            "{err}"
        );
        let err = resolve(&apt, None, None, &["-s".to_string()]).unwrap_err().to_string();
        assert!(err.contains("the package name '-s' is not valid"), "{err}");
    }
}
