//! A private BuildGrid for the remote-build tests: a REAPI server (`bgd`)
//! with its PostgreSQL scheduler database, both serving 127.0.0.1 on free
//! ports, everything they keep in one directory the test owns, and
//! [`Worker`]s (`mini worker`) that build for it.
//!
//! [`installed`] says whether BuildGrid (the venv `scripts/install-prerequisites`
//! makes) and PostgreSQL are here: under `CI=true` a missing piece fails the
//! test with the fix, elsewhere the test skips with a message.
//!
//! [`BuildGrid::start`] makes a fresh cluster (`DIR/pg`), its database and
//! schema (`bgd migrate apply`), the server config (`DIR/server.yml`, CAS on
//! disk in `DIR/cas`) and starts `bgd server start`, logging to `DIR/bgd.log`;
//! it returns once the server answers `bgd capabilities`. PostgreSQL refuses
//! to run as root, so as root the cluster belongs to and runs as `nobody`
//! (who must be able to enter the directory: a [`super::Scratch`] will do).
//! BuildGrid talks to it through psycopg2, named in the connection string:
//! SQLAlchemy 2.1 would otherwise pick psycopg 3, and BuildGrid's listener
//! for the scheduler's notifications is written for psycopg2 alone.
//!
//! Every daemon runs in a process group of its own, killed as a whole when
//! the [`BuildGrid`] or [`Worker`] is dropped (also while a failing test
//! unwinds); each also gets SIGKILL when the thread that started it ends, so
//! a test binary killed from outside leaves nothing running: drop them on
//! the thread that started them.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::clients::{ci, which};
use super::{free_port, text};

/// How long PostgreSQL and BuildGrid may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a daemon may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The bot session keepalive timeout [`BuildGrid::start`] configures: how
/// long the scheduler waits for a silent worker before it requeues its
/// work (seconds). Above BuildGrid's 3 s network timeout, or idle bots are
/// answered at once instead of long-polling.
pub const KEEPALIVE_SECONDS: u32 = 5;

/// The PostgreSQL role and database BuildGrid uses.
const PG_USER: &str = "mini";
const PG_DATABASE: &str = "buildgrid";

/// The venv's `bgd`, when BuildGrid and PostgreSQL are installed; `None`
/// (after saying what is missing) otherwise, so the test skips. Under
/// `CI=true` a missing piece fails the test with the fix.
pub fn installed() -> Option<PathBuf> {
    let bgd = venv().join("bin/bgd");
    let missing = if !bgd.is_file() {
        format!("BuildGrid ({} does not exist)", bgd.display())
    } else if postgres_bin().is_none() {
        "PostgreSQL (no initdb, postgres, pg_isready and createdb)".to_string()
    } else {
        return Some(bgd);
    };
    assert!(!ci(), "{missing} is required when CI=true: run scripts/install-prerequisites");
    eprintln!("skipping: {missing} is missing (scripts/install-prerequisites installs it)");
    None
}

/// Where `scripts/install-prerequisites` installs BuildGrid:
/// `$MINI_BUILDGRID_VENV`, else `~/.cache/mini/buildgrid-venv`.
pub fn venv() -> PathBuf {
    match std::env::var_os("MINI_BUILDGRID_VENV").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mini/buildgrid-venv"),
    }
}

/// The directory of the PostgreSQL server programs: Debian's newest
/// `/usr/lib/postgresql/VERSION/bin`, else wherever `initdb` is on PATH.
fn postgres_bin() -> Option<PathBuf> {
    let complete = |dir: &Path| ["initdb", "postgres", "pg_isready", "createdb"].iter().all(|p| dir.join(p).is_file());
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    let on_path = which("initdb").and_then(|initdb| Some(initdb.parent()?.to_path_buf()));
    versions.pop().map(|(_, bin)| bin).or(on_path.filter(|bin| complete(bin)))
}

/// A BuildGrid server and its PostgreSQL, serving 127.0.0.1; both stopped
/// on drop.
pub struct BuildGrid {
    dir: PathBuf,
    bgd: PathBuf,
    port: u16,
    server: Option<Child>,
    postgres: Postgres,
}

impl BuildGrid {
    /// Starts PostgreSQL and BuildGrid with everything in `dir`, the bot
    /// session keepalive timeout [`KEEPALIVE_SECONDS`]; returns once
    /// BuildGrid answers. Panics when [`installed`] is `None`.
    pub fn start(dir: &Path) -> BuildGrid {
        BuildGrid::start_with_keepalive(dir, KEEPALIVE_SECONDS)
    }

    /// [`BuildGrid::start`] with a bot session keepalive timeout of
    /// `seconds`.
    pub fn start_with_keepalive(dir: &Path, seconds: u32) -> BuildGrid {
        let bgd = venv().join("bin/bgd");
        assert!(bgd.is_file(), "BuildGrid is not installed: run scripts/install-prerequisites");
        std::fs::create_dir_all(dir).expect("create the BuildGrid directory");
        let postgres = Postgres::start(dir);
        let connection = format!("postgresql+psycopg2://{PG_USER}@127.0.0.1:{}/{PG_DATABASE}", postgres.port);
        let migrate = Command::new(&bgd).args(["migrate", "apply", &connection]).output().expect("run bgd migrate");
        assert!(migrate.status.success(), "bgd migrate apply failed:\n{}", both(&migrate));
        let port = free_port();
        let cas = dir.join("cas");
        std::fs::create_dir_all(&cas).expect("create the CAS directory");
        std::fs::write(dir.join("server.yml"), server_config(port, &connection, &cas, seconds))
            .expect("write server.yml");
        let mut grid = BuildGrid { dir: dir.to_path_buf(), bgd, port, server: None, postgres };
        grid.start_server();
        grid
    }

    /// `grpc://127.0.0.1:PORT`, what `mini build --remote` and `mini worker
    /// --server` take.
    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server keeps its CAS blobs (one file per blob).
    pub fn cas_dir(&self) -> PathBuf {
        self.dir.join("cas")
    }

    /// What the server has logged so far, over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bgd.log")).unwrap_or_default()
    }

    /// Runs `bgd ARGS…` (a client command) against the server; its output.
    pub fn bgd(&self, args: &[&str]) -> Output {
        Command::new(&self.bgd).args(args).stdin(Stdio::null()).output().expect("run bgd")
    }

    /// `bgd capabilities` against the server, its stdout; panics unless it
    /// succeeded.
    pub fn capabilities(&self) -> String {
        let out = self.bgd(&["capabilities", "--remote", &format!("http://127.0.0.1:{}", self.port)]);
        assert!(out.status.success(), "bgd capabilities failed:\n{}", both(&out));
        text(&out.stdout)
    }

    /// Starts the server (on the same port as before, if it ran before) and
    /// waits until it answers; the server must not be running.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "the BuildGrid server is running already");
        let log = OpenOptions::new().create(true).append(true).open(self.dir.join("bgd.log")).expect("open bgd.log");
        let mut cmd = Command::new(&self.bgd);
        cmd.args(["server", "start", "-v"]).arg(self.dir.join("server.yml"));
        self.server = Some(spawn_group(&mut cmd, log, "bgd server start"));
        self.wait_until_serving();
    }

    /// Stops the server: SIGTERM to its process group, SIGKILL after
    /// [`STOP_TIMEOUT`]. PostgreSQL keeps running.
    pub fn stop_server(&mut self) {
        stop(self.server.take(), libc::SIGTERM);
    }

    /// [`BuildGrid::stop_server`], then [`BuildGrid::start_server`].
    pub fn restart_server(&mut self) {
        self.stop_server();
        self.start_server();
    }

    /// The processes of the server's and PostgreSQL's process groups that
    /// still run.
    pub fn pids(&self) -> Vec<libc::pid_t> {
        let mut pids = group_members(self.postgres.child.as_ref());
        pids.extend(group_members(self.server.as_ref()));
        pids
    }

    /// Polls the port, then `bgd capabilities`, until the server answers;
    /// panics with the log's tail if it exits or [`START_TIMEOUT`] passes.
    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let server = self.server.as_mut().expect("started");
            if let Ok(Some(status)) = server.try_wait() {
                panic!("bgd server exited ({status}):\n{}", tail(&self.log()));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let out = self.bgd(&["capabilities", "--remote", &format!("http://127.0.0.1:{}", self.port)]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "bgd server did not answer on port {} within {START_TIMEOUT:?}:\n{}",
                self.port,
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// The server config: one insecure channel on 127.0.0.1:`port`, no
/// authorization, the PostgreSQL scheduler polling often (tests wait on it),
/// CAS on disk in `cas`, and an action cache in memory.
fn server_config(port: u16, connection: &str, cas: &Path, keepalive: u32) -> String {
    format!(
        r#"# BuildGrid serves this many RPCs at once (its default, 5 per core, is
# soon taken by open Execute streams and the workers' long polls).
thread-pool-size: 64
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
connections:
  - !sql-connection &sql
    connection-string: {connection}
    pool-size: 5
    max-overflow: 10
storages:
  - !disk-storage &cas
    path: {cas}
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    # The scheduler stores each successful result through this cache, so
    # it must accept updates; keep clients from writing it with the
    # server's authorization in production (ARCHITECTURE.md).
    allow-updates: true
    cache-failed-actions: false
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *cas
    action-cache: *ac
    bot-session-keepalive-timeout: {keepalive}
    session-expiry-timer-interval: 1
    poll-interval: 0.05
    bot-poll-interval: 0.05
    # Assign queued jobs every 20 ms (the default is every second).
    assigners:
      - !priority-age-assigner
        count: 1
        interval: 0.02
        priority-assignment-percentage: 100
    property-set: !dynamic-property-set
      match-property-keys: [network]
instances:
  - name: ''
    services:
      - !execution
        scheduler: *scheduler
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"#,
        cas = cas.display()
    )
}

/// A private PostgreSQL cluster serving 127.0.0.1:`port` with trust
/// authentication for the role [`PG_USER`], its postmaster our child (not
/// pg_ctl's daemon), so it dies with the test; stopped on drop.
struct Postgres {
    child: Option<Child>,
    port: u16,
    /// A short socket directory of our own under /tmp, removed on drop.
    short_socket_dir: Option<PathBuf>,
}

/// The longest socket path (sun_path less its NUL) PostgreSQL may use.
const SOCKET_PATH_MAX: usize = 107;

impl Postgres {
    /// Makes a cluster in `DIR/pg/data`, starts it logging to
    /// `DIR/postgres.log` and creates the database [`PG_DATABASE`]. As root,
    /// the cluster belongs to and runs as `nobody`.
    fn start(dir: &Path) -> Postgres {
        let bin = postgres_bin().expect("PostgreSQL is not installed: run scripts/install-prerequisites");
        let owner = unprivileged_owner();
        let pg = dir.join("pg");
        let data = pg.join("data");
        let port = free_port();
        let mut socket_dir = pg.join("socket");
        let mut short_socket_dir = None;
        if socket_dir.as_os_str().len() + format!("/.s.PGSQL.{port}.lock").len() > SOCKET_PATH_MAX {
            let short = std::env::temp_dir().join(format!("mini-pg-{}-{port}", std::process::id()));
            socket_dir = short.clone();
            short_socket_dir = Some(short);
        }
        for d in [&pg, &data, &socket_dir] {
            std::fs::create_dir_all(d).expect("create a PostgreSQL directory");
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("give a PostgreSQL directory to nobody");
            }
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-U", PG_USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        let out = as_owner(&mut initdb, owner, &pg).output().expect("run initdb");
        assert!(out.status.success(), "initdb failed:\n{}", both(&out));

        let log = File::create(dir.join("postgres.log")).expect("create postgres.log");
        let mut postgres = Command::new(bin.join("postgres"));
        postgres.arg("-D").arg(&data).arg("-k").arg(&socket_dir).args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ]);
        as_owner(&mut postgres, owner, &pg);
        let child = spawn_group(&mut postgres, log, "postgres");
        let mut server = Postgres { child: Some(child), port, short_socket_dir };

        let deadline = Instant::now() + START_TIMEOUT;
        let port = port.to_string();
        let ready = || Command::new(bin.join("pg_isready")).args(["-q", "-h", "127.0.0.1", "-p", &port]).status();
        while !ready().is_ok_and(|s| s.success()) {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            if let Some(Ok(Some(status))) = server.child.as_mut().map(Child::try_wait) {
                panic!("postgres exited ({status}):\n{}", tail(&log));
            }
            assert!(Instant::now() < deadline, "postgres did not start within {START_TIMEOUT:?}:\n{}", tail(&log));
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = Command::new(bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", PG_USER, PG_DATABASE])
            .output()
            .expect("run createdb");
        assert!(out.status.success(), "createdb failed:\n{}", both(&out));
        server
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT is PostgreSQL's immediate shutdown (`pg_ctl stop -m
        // immediate`): nothing to keep, so nothing to flush.
        stop(self.child.take(), libc::SIGQUIT);
        if let Some(dir) = &self.short_socket_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// As root, `nobody`'s uid and gid (PostgreSQL refuses to run as root);
/// `None` otherwise.
fn unprivileged_owner() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions; getpwnam gets a NUL-terminated
    // name and its result is read before any other passwd call.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let entry = libc::getpwnam(c"nobody".as_ptr());
        assert!(!entry.is_null(), "running as root, PostgreSQL needs a user nobody to run as");
        Some(((*entry).pw_uid, (*entry).pw_gid))
    }
}

/// `cmd`, set to run as `owner` (if any) in `dir`.
fn as_owner<'a>(cmd: &'a mut Command, owner: Option<(u32, u32)>, dir: &Path) -> &'a mut Command {
    cmd.current_dir(dir);
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Spawns `cmd` as the leader of a new process group, its stdout and stderr
/// to `log`, set to get SIGKILL when this thread ends.
fn spawn_group(cmd: &mut Command, log: File, what: &str) -> Child {
    cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("clone a log file")).stderr(log).process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child. It
    // runs after the uid change, which would clear it.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"))
}

/// Sends `signal` to the process group `child` leads, then SIGKILL to the
/// group if the leader has not exited within [`STOP_TIMEOUT`]; reaps it.
/// The group is killed in any case, so no helper the leader left survives.
fn stop(child: Option<Child>, signal: libc::c_int) {
    let Some(mut child) = child else { return };
    let group = child.id() as libc::pid_t;
    // SAFETY: kill(2) has no memory effects; the group's leader is our
    // child, not yet reaped, so the group id is still its.
    unsafe { libc::kill(-group, signal) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above; once the leader is reaped the id could only be
    // reused by a new group leader, which takes far more than these moments.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let _ = child.wait();
}

/// The live (not zombie) processes whose process group `leader` leads.
fn group_members(leader: Option<&Child>) -> Vec<libc::pid_t> {
    let Some(leader) = leader else { return Vec::new() };
    let group = leader.id() as libc::pid_t;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid pgrp …; comm may hold spaces and parens.
            let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = fields.next()?;
            let pgrp: libc::pid_t = fields.nth(1)?.parse().ok()?;
            (pgrp == group && state != "Z").then_some(pid)
        })
        .collect()
}

/// The last lines of a log, for a panic message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A finished command's stdout and stderr, for a panic message.
fn both(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// A `mini worker` building for a server, in a process group of its own
/// (its builds with it); killed on drop.
pub struct Worker {
    child: Option<Child>,
    log: PathBuf,
}

impl Worker {
    /// Starts `mini --store STORE worker --server URL -j JOBS`, its stdout
    /// and stderr to `log`.
    pub fn spawn(store: &Path, url: &str, jobs: usize, log: &Path) -> Worker {
        let file = File::create(log).expect("create the worker's log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mini"));
        cmd.arg("--store").arg(store).args(["worker", "--server", url, "-j", &jobs.to_string()]);
        Worker { child: Some(spawn_group(&mut cmd, file, "mini worker")), log: log.to_path_buf() }
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the worker and everything in its process group at once
    /// (SIGKILL), as when its machine dies; reaps it.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: kill(2) has no memory effects; the group's leader is our
        // child, not yet reaped.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        let _ = child.wait();
    }

    /// How the worker ended, if it has (`None` while it runs or once killed).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// What the worker has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}
