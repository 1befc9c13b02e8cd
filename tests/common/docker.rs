//! A private Docker daemon for the tests that hand mini's images to real
//! Docker, the way a user does: `docker load < result`, then `docker run`.
//!
//! [`Dockerd::start`] runs Debian's `dockerd --iptables=false --bridge=none`
//! with everything it owns in one fresh directory (data root, exec root, pid
//! file, socket, log), and containers share the host's network (`docker run
//! --network host`), so there is nothing to set up. It shares nothing with a
//! Docker the host may run:
//! - Left alone, dockerd uses the system containerd whenever
//!   /run/containerd/containerd.sock exists, and manages a private one only
//!   otherwise. So the helper starts its own containerd (private root,
//!   state, sockets and config) and hands it over with `--containerd`.
//! - A private `--config-file` keeps /etc/docker/daemon.json out (its one
//!   setting, `deprecated-key-path`, keeps /etc/docker/key.json untouched),
//!   `--ip-forward=false` leaves the host's sysctl alone, and
//!   `--cgroup-parent` gives the containers cgroups of their own.
//!
//! Every `Dockerd` is independent: each test starts its own (a second or two)
//! rather than sharing one per test binary through a `OnceLock`. A static is
//! never dropped, so a shared daemon could only be stopped from an exit hook,
//! and tests running in parallel would see each other's images and
//! containers.
//!
//! Dropping a `Dockerd`, also while a failing test unwinds, removes its
//! containers, stops dockerd and then containerd (SIGTERM, SIGKILL after a
//! timeout), kills whatever still runs from its directory or in its cgroup
//! (shims, containers), unmounts everything under the directory, removes the
//! cgroups and deletes the directory. The daemons also get SIGTERM when the
//! thread that started them ends, so a test binary killed from outside does
//! not leave them running: drop a `Dockerd` on the thread that started it.
//! Two empty directories whose paths are built into the binaries stay:
//! /run/docker/plugins (dockerd's plugin lookup) and /run/containerd/s (the
//! shims' sockets).
//!
//! dockerd needs root. Without root, or without docker.io, `start` says why
//! and returns `None` (the test skips), except under `CI=true`, where it
//! fails the test with the fix.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::clients::{ci, have, root, which};
use super::{remove, text};

/// How long the daemons may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `docker` command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a daemon may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running private dockerd and its containerd; see the module docs.
pub struct Dockerd {
    /// Everything the daemons write: removed on drop.
    dir: PathBuf,
    /// The `docker` client.
    client: PathBuf,
    /// `unix://<dir>/docker.sock`.
    host: String,
    dockerd: Option<Child>,
    containerd: Option<Child>,
}

impl Dockerd {
    /// Starts a daemon and waits until `docker info` answers; `None` (after
    /// saying why) when this host cannot run one and CI does not require it.
    pub fn start() -> Option<Dockerd> {
        if !have(&["dockerd", "containerd", "containerd-shim-runc-v2", "runc", "docker"]) {
            return None;
        }
        if !root() {
            let why = "needs root: dockerd only runs as root (CI runs the tests as root)";
            assert!(!ci(), "this test {why}");
            eprintln!("skipped: this test {why}");
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Short: the sockets inside must fit in a sockaddr_un.
        let name = format!("mini-docker-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(&name);
        clean_up(&dir);
        for sub in ["containerd", "data", "exec", "client"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create the daemon's directories");
        }
        let mut d = Dockerd {
            host: format!("unix://{}", dir.join("docker.sock").display()),
            client: which("docker").expect("docker"),
            dir,
            dockerd: None,
            containerd: None,
        };
        // From here on a panic drops `d`, which stops whatever was started.
        let containerd_socket = d.dir.join("containerd/containerd.sock");
        std::fs::write(d.dir.join("containerd/config.toml"), containerd_config(&d.dir))
            .expect("write containerd config");
        let config = d.dir.join("containerd/config.toml").display().to_string();
        d.containerd = Some(spawn_daemon("containerd", &["--config", &config], &d.dir.join("containerd.log")));
        d.wait_until("containerd", "containerd.log", |_| containerd_socket.exists());

        let daemon_json = serde_json::json!({ "deprecated-key-path": d.dir.join("key.json") });
        std::fs::write(d.dir.join("daemon.json"), daemon_json.to_string()).expect("write daemon.json");
        let path = |rel: &str| d.dir.join(rel).display().to_string();
        let (data, exec, pidfile) = (path("data"), path("exec"), path("docker.pid"));
        let (containerd, config) = (path("containerd/containerd.sock"), path("daemon.json"));
        let cgroup_parent = format!("/{name}");
        let args = [
            "--iptables=false",
            "--ip-forward=false",
            "--bridge=none",
            "--data-root",
            &data,
            "--exec-root",
            &exec,
            "--pidfile",
            &pidfile,
            "-H",
            &d.host,
            "--containerd",
            &containerd,
            "--config-file",
            &config,
            "--cgroup-parent",
            &cgroup_parent,
        ];
        d.dockerd = Some(spawn_daemon("dockerd", &args, &d.dir.join("dockerd.log")));
        d.wait_until("dockerd", "dockerd.log", |d| {
            output_within(&mut d.command(&["info"]), Duration::from_secs(10)).is_some_and(|o| o.status.success())
        });
        Some(d)
    }

    /// The directory everything of this daemon lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `docker ARGS` against this daemon (fails the test if it takes more
    /// than [`COMMAND_TIMEOUT`]).
    pub fn docker(&self, args: &[&str]) -> Output {
        self.finish(&mut self.command(args), args)
    }

    /// The stdout of `docker ARGS`, which must succeed.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        self.succeeded(&self.docker(args), args)
    }

    /// The daemon's address as `DOCKER_HOST` takes it: `unix://<dir>/docker.sock`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `docker load < archive`; the reference of the image it loaded
    /// (`name:tag`, or `sha256:…` for an untagged image).
    pub fn load(&self, archive: &Path) -> String {
        let file = File::open(archive).unwrap_or_else(|e| panic!("open {}: {e}", archive.display()));
        self.load_from(file)
    }

    /// `docker load` reading `input` (a file, or another process's stdout
    /// for `… | docker load`); the reference of the image it loaded, as
    /// [`Dockerd::load`].
    pub fn load_from(&self, input: impl Into<Stdio>) -> String {
        let out = self.finish(self.command(&["load"]).stdin(input), &["load"]);
        let stdout = self.succeeded(&out, &["load"]);
        let loaded = stdout.lines().rev().find_map(|l| {
            l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image ID: ")).map(str::to_string)
        });
        loaded.unwrap_or_else(|| panic!("docker load named no image:\n{stdout}"))
    }

    /// `docker run --rm --network host OPTIONS IMAGE ARGS` (no ARGS: the
    /// image's own command), to completion.
    pub fn run(&self, options: &[&str], image: &str, args: &[&str]) -> Output {
        let all = [&["run", "--rm", "--network", "host"], options, &[image], args].concat();
        self.docker(&all)
    }

    /// `docker run --detach --network host OPTIONS IMAGE ARGS`; the
    /// container's id. The container runs until it exits or the daemon is
    /// dropped; `docker(&["logs", id])` shows what it printed.
    pub fn run_detached(&self, options: &[&str], image: &str, args: &[&str]) -> String {
        let all = [&["run", "--detach", "--network", "host"], options, &[image], args].concat();
        self.docker_ok(&all).trim().to_string()
    }

    /// A `docker` command for this daemon alone: none of the user's
    /// configuration, contexts or DOCKER_HOST.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.arg("--host").arg(&self.host).args(args).stdin(Stdio::null()).env("DOCKER_CONFIG", self.dir.join("client"));
        for var in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"] {
            cmd.env_remove(var);
        }
        cmd
    }

    fn finish(&self, cmd: &mut Command, args: &[&str]) -> Output {
        output_within(cmd, COMMAND_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "docker {} did not finish within {} s; dockerd's log ends:\n{}",
                args.join(" "),
                COMMAND_TIMEOUT.as_secs(),
                self.log("dockerd.log")
            )
        })
    }

    fn succeeded(&self, out: &Output, args: &[&str]) -> String {
        assert!(
            out.status.success(),
            "docker {} failed:\n{}{}\ndockerd's log ends:\n{}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr),
            self.log("dockerd.log")
        );
        text(&out.stdout)
    }

    /// Polls `ready` until it holds; fails the test with the daemon's log if
    /// the daemon exits first or time runs out.
    fn wait_until(&mut self, daemon: &str, log: &str, ready: impl Fn(&Dockerd) -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let is_ready = ready(self);
            if self.exited(daemon) {
                panic!("{daemon} exited while starting; its log ends:\n{}", self.log(log));
            }
            if is_ready {
                return;
            }
            if Instant::now() > deadline {
                panic!("{daemon} was not ready within {} s; its log ends:\n{}", START_TIMEOUT.as_secs(), self.log(log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exited(&mut self, daemon: &str) -> bool {
        let child = if daemon == "dockerd" { &mut self.dockerd } else { &mut self.containerd };
        child.as_mut().is_some_and(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// The last lines of a daemon's log.
    fn log(&self, name: &str) -> String {
        let log = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Nothing here may panic: a panic while a failed test unwinds aborts.
        if matches!(self.dockerd.as_mut().map(Child::try_wait), Some(Ok(None))) {
            let listed = output_within(&mut self.command(&["ps", "--all", "--quiet"]), Duration::from_secs(30));
            let ids = listed.map(|o| text(&o.stdout)).unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let args = [&["rm", "--force", "--volumes"], &ids[..]].concat();
                let _ = output_within(&mut self.command(&args), Duration::from_secs(60));
            }
        }
        stop(self.dockerd.take());
        stop(self.containerd.take());
        clean_up(&self.dir);
    }
}

/// containerd's configuration: every path it writes inside `dir`, and no CRI
/// plugin (Docker does not use it; it would set up Kubernetes networking).
fn containerd_config(dir: &Path) -> String {
    let d = dir.join("containerd").display().to_string();
    format!(
        "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n\
         [grpc]\n  address = \"{d}/containerd.sock\"\n\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\n\
         [plugins]\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"{d}/opt\"\n  \
         [plugins.\"io.containerd.runtime.v1.linux\"]\n    runtime_root = \"{d}/runc\"\n"
    )
}

/// Starts a daemon logging to `log`, which gets SIGTERM if this thread ends.
fn spawn_daemon(program: &str, args: &[&str], log: &Path) -> Child {
    let log = File::create(log).expect("create the daemon's log");
    let mut cmd = Command::new(which(program).expect("installed"));
    // dockerd finds containerd-shim, runc and docker-init on PATH.
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.args(args)
        .env("PATH", format!("{path}:/usr/local/sbin:/usr/sbin:/sbin"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| panic!("start {program}: {e}"))
}

/// SIGTERM, then SIGKILL if the daemon has not exited within [`STOP_TIMEOUT`].
fn stop(child: Option<Child>) {
    let Some(mut child) = child else { return };
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    // SAFETY: kill(2) on our own child, not yet reaped, so the pid is its.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What a dropped daemon that lived in `dir` left behind: its processes,
/// mounts, cgroups and the directory itself (empty when all is clean).
pub fn leftovers(dir: &Path) -> Vec<String> {
    let mut left: Vec<String> = processes_of(dir).iter().map(|pid| format!("process {pid}")).collect();
    left.extend(mounts_under(dir).iter().map(|m| format!("mount {}", m.display())));
    left.extend(cgroups(dir).iter().map(|c| format!("cgroup {}", c.display())));
    if dir.exists() {
        left.push(format!("directory {}", dir.display()));
    }
    left
}

/// The cgroup a daemon's containers run in, under each hierarchy's root:
/// the name of its directory.
fn cgroup_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Removes whatever a daemon that lived in `dir` may have left: processes,
/// cgroups, mounts, then the directory.
fn clean_up(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_of(dir);
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in left {
            // SAFETY: kill(2) has no memory effects; these pids were just read
            // from /proc and belong to this daemon.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for cgroup in cgroups(dir) {
        remove_cgroup_tree(&cgroup);
    }
    for _ in 0..10 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        // Innermost (last mounted) first.
        for mount in mounts.iter().rev() {
            if let Ok(c) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) {
                // SAFETY: a valid NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
    remove(dir);
}

/// Live processes whose command line names a file in `dir` (the daemons,
/// their shims) or that run in its cgroup (the containers).
fn processes_of(dir: &Path) -> Vec<libc::pid_t> {
    let in_dir = format!("{}/", dir.display());
    let in_cgroup = format!("/{}", cgroup_name(dir));
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<libc::pid_t>().ok()) else { continue };
        let proc = entry.path();
        let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
        if zombie || pid as u32 == std::process::id() {
            continue;
        }
        let cmdline = text(&std::fs::read(proc.join("cmdline")).unwrap_or_default()).replace('\0', " ");
        let cgroups = std::fs::read_to_string(proc.join("cgroup")).unwrap_or_default();
        let in_ours = cgroups.lines().any(|l| l.ends_with(&in_cgroup) || l.contains(&format!("{in_cgroup}/")));
        if cmdline.contains(&in_dir) || in_ours {
            found.push(pid);
        }
    }
    found
}

/// Mount points at or under `dir`, in the order they were mounted.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_point(field)))
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_point(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        match rest.get(at + 1..at + 4).and_then(|o| u8::from_str_radix(o, 8).ok()) {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out + rest
}

/// The daemon's cgroup in every hierarchy that has it (the v2 tree, v1
/// controllers; not through the symlinks that alias joined controllers).
fn cgroups(dir: &Path) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let hierarchies = std::fs::read_dir(root).into_iter().flatten().flatten();
    let hierarchies = hierarchies.filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path());
    let name = cgroup_name(dir);
    std::iter::once(root.to_path_buf()).chain(hierarchies).map(|h| h.join(&name)).filter(|c| c.is_dir()).collect()
}

/// Removes a cgroup and those below it, innermost first (only empty
/// cgroups can go).
fn remove_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Runs `cmd` to completion and collects its output, or kills it after
/// `limit` and returns `None` (also when it cannot start).
fn output_within(cmd: &mut Command, limit: Duration) -> Option<Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    Some(Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}
