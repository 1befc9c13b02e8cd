//! The Linux build sandbox: a builder runs in fresh user, mount, pid, ipc,
//! uts and (unless it is a fixed-output derivation) network namespaces,
//! inside a root that holds only its input closure (read-only, at
//! `/mini/store`), the directory where it creates its outputs, `/build`, a
//! fresh `/tmp`, a minimal `/dev`, its own `/proc` and a tiny `/etc`.
//!
//! How it is entered, and why this way: the builder process is created
//! with `clone(CLONE_VM | CLONE_VFORK | CLONE_NEW*)`, as `posix_spawn`
//! creates processes: no copy of the parent's memory, no second program to
//! load. The child shares the scheduler's memory (the cloning thread waits
//! until it execs), so it must not allocate or take a lock: everything it
//! does is planned beforehand ([`Plan`]) as a list of system calls on
//! prepared C strings, which it runs and then `execve`s the builder. If a
//! step fails, it reports the step and `errno` on a pipe and exits.
//!
//! The builder is pid 1 of its pid namespace, so when it exits the kernel
//! kills everything it started; it is also killed when the thread that
//! started it dies (a killed `mini`). The caller's uid and gid become the
//! build user's (1000 and 100, as in Nix) through the new user namespace:
//! unprivileged user namespaces are enough, and it works the same as root.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{io_err, BuildError, Result};
use crate::mounts::locked_flags;

/// The build user inside the sandbox, as Nix names it.
pub const BUILD_UID: u32 = 1000;
pub const BUILD_GID: u32 = 100;

/// Where, inside the sandbox, the store is.
pub const STORE_DIR: &str = "/mini/store";

/// Stack of the cloned child until it execs: it only makes system calls.
const CHILD_STACK: usize = 64 << 10;

/// Everything a build needs from the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Program to run, as seen inside the sandbox.
    pub builder: String,
    pub args: Vec<String>,
    /// The complete environment of the builder.
    pub env: Vec<(String, String)>,
    /// An empty host directory to assemble the sandbox in; the new root is
    /// its `root/`, so outputs appear at `root/mini/store/<base>`.
    pub work_dir: PathBuf,
    /// The physical directory holding store paths (`<store root>/store`).
    pub store_dir: PathBuf,
    /// Base names of the input closure, bind-mounted read-only.
    pub inputs: Vec<String>,
    /// Share the host's network (fixed-output derivations only).
    pub network: bool,
}

impl SandboxSpec {
    /// The new root, on the host.
    pub fn root(&self) -> PathBuf {
        self.work_dir.join("root")
    }

    /// Where an output with this base name is left on the host.
    pub fn output_on_host(&self, base_name: &str) -> PathBuf {
        self.root().join("mini/store").join(base_name)
    }

    /// `/build` on the host.
    pub fn build_dir_on_host(&self) -> PathBuf {
        self.root().join("build")
    }

    /// Empties what one build leaves in the work directory (`/build`, and
    /// input mount points and leftovers in the sandbox's store), keeping
    /// the rest of the skeleton for the next build.
    pub fn reset(&self) {
        mini_store::store::discard_tree(&self.build_dir_on_host());
        if let Ok(entries) = fs::read_dir(self.root().join("mini/store")) {
            for entry in entries.flatten() {
                mini_store::store::discard_tree(&entry.path());
            }
        }
    }
}

/// One system call the child makes, with everything it needs prepared.
#[derive(Debug)]
enum Step {
    WriteFile { path: CString, data: Vec<u8> },
    Mount { source: CString, target: CString, fstype: Option<CString>, flags: libc::c_ulong, data: Option<CString> },
    Mkdir { path: CString, mode: libc::mode_t },
    CreateFile { path: CString },
    Symlink { target: CString, link: CString },
    Chdir { path: CString },
    PivotRoot,
    DetachOldRoot,
    Hostname,
    LoopbackUp,
}

impl Step {
    /// What the step was, for an error message.
    fn describe(&self) -> String {
        let show = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Step::WriteFile { path, .. } => format!("writing {}", show(path)),
            Step::Mount { source, target, .. } => format!("mounting {} on {}", show(source), show(target)),
            Step::Mkdir { path, .. } => format!("creating {}", show(path)),
            Step::CreateFile { path } => format!("creating {}", show(path)),
            Step::Symlink { link, .. } => format!("creating {}", show(link)),
            Step::Chdir { path } => format!("entering {}", show(path)),
            Step::PivotRoot => "changing the root directory".into(),
            Step::DetachOldRoot => "unmounting the old root".into(),
            Step::Hostname => "setting the hostname".into(),
            Step::LoopbackUp => "bringing up lo".into(),
        }
    }

    /// Runs the step. Called in the cloned child: no allocation.
    fn run(&self) -> bool {
        // SAFETY: every pointer is a valid C string (or null where the
        // call allows it) owned by the plan, which outlives the child.
        unsafe {
            match self {
                Step::WriteFile { path, data } => {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd < 0 {
                        return false;
                    }
                    let ok = libc::write(fd, data.as_ptr().cast(), data.len()) == data.len() as isize;
                    libc::close(fd);
                    ok
                }
                Step::Mount { source, target, fstype, flags, data } => {
                    let fstype = fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr());
                    let data = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast());
                    libc::mount(source.as_ptr(), target.as_ptr(), fstype, *flags, data) == 0
                }
                Step::Mkdir { path, mode } => libc::mkdir(path.as_ptr(), *mode) == 0,
                Step::CreateFile { path } => {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC, 0o644);
                    fd >= 0 && libc::close(fd) == 0
                }
                Step::Symlink { target, link } => libc::symlink(target.as_ptr(), link.as_ptr()) == 0,
                Step::Chdir { path } => libc::chdir(path.as_ptr()) == 0,
                Step::PivotRoot => {
                    let dot = c".".as_ptr();
                    libc::syscall(libc::SYS_pivot_root, dot, dot) == 0
                }
                Step::DetachOldRoot => libc::umount2(c".".as_ptr(), libc::MNT_DETACH) == 0,
                Step::Hostname => {
                    let (host, domain) = (b"localhost", b"(none)");
                    libc::sethostname(host.as_ptr().cast(), host.len()) == 0
                        && libc::setdomainname(domain.as_ptr().cast(), domain.len()) == 0
                }
                Step::LoopbackUp => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
                    if fd < 0 {
                        return false;
                    }
                    let mut req: libc::ifreq = std::mem::zeroed();
                    req.ifr_name[0] = b'l' as libc::c_char;
                    req.ifr_name[1] = b'o' as libc::c_char;
                    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
                    let ok = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) == 0;
                    libc::close(fd);
                    ok
                }
            }
        }
    }
}

fn cstring(s: impl AsRef<OsStr>) -> Result<CString> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| BuildError::Sandbox(format!("'{}' contains a NUL byte", s.as_ref().to_string_lossy())))
}

/// Everything the child does, prepared by the parent.
struct Plan {
    steps: Vec<Step>,
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Plan {
    fn new(spec: &SandboxSpec) -> Result<Plan> {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let root = spec.root();
        let at = |rel: &str| cstring(root.join(rel));
        let mut steps = vec![
            Step::WriteFile { path: cstring("/proc/self/setgroups")?, data: b"deny".to_vec() },
            Step::WriteFile { path: cstring("/proc/self/uid_map")?, data: format!("{BUILD_UID} {uid} 1").into_bytes() },
            Step::WriteFile { path: cstring("/proc/self/gid_map")?, data: format!("{BUILD_GID} {gid} 1").into_bytes() },
            Step::Mount {
                source: cstring("none")?,
                target: cstring("/")?,
                fstype: None,
                flags: libc::MS_REC | libc::MS_PRIVATE,
                data: None,
            },
            // pivot_root needs the new root to be a mount point.
            bind_step(&root, &root)?,
        ];
        for base in &spec.inputs {
            let source = spec.store_dir.join(base);
            let target = root.join("mini/store").join(base);
            if fs::symlink_metadata(&source).map_err(io_err("reading the input", &source))?.file_type().is_symlink() {
                // A symlink cannot be a mount point; the parent made a copy.
                continue;
            }
            steps.push(bind_step(&source, &target)?);
            let locked = locked_flags(&source).map_err(BuildError::Sandbox)?;
            steps.push(Step::Mount {
                source: cstring("")?,
                target: cstring(&target)?,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
                data: None,
            });
        }
        steps.push(tmpfs_step(&root.join("tmp"), libc::MS_NOSUID | libc::MS_NODEV, "mode=1777")?);
        steps.push(tmpfs_step(&root.join("dev"), libc::MS_NOSUID | libc::MS_NOEXEC, "mode=0755")?);
        for name in ["null", "zero", "full", "random", "urandom", "tty"] {
            let target = root.join("dev").join(name);
            steps.push(Step::CreateFile { path: cstring(&target)? });
            steps.push(bind_step(&Path::new("/dev").join(name), &target)?);
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            steps.push(Step::Symlink { target: cstring(target)?, link: at(&format!("dev/{name}"))? });
        }
        steps.push(Step::Mkdir { path: at("dev/shm")?, mode: 0o1777 });
        steps.push(tmpfs_step(&root.join("dev/shm"), libc::MS_NOSUID | libc::MS_NODEV, "mode=1777")?);
        steps.push(Step::Mount {
            source: cstring("proc")?,
            target: at("proc")?,
            fstype: Some(cstring("proc")?),
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data: None,
        });
        steps.push(Step::Hostname);
        if !spec.network {
            steps.push(Step::LoopbackUp);
        }
        steps.push(Step::Chdir { path: cstring(&root)? });
        steps.push(Step::PivotRoot);
        steps.push(Step::DetachOldRoot);
        steps.push(Step::Chdir { path: cstring("/build")? });
        let program = cstring(&spec.builder)?;
        let mut argv = vec![program.clone()];
        for a in &spec.args {
            argv.push(cstring(a)?);
        }
        let envp = spec.env.iter().map(|(k, v)| cstring(format!("{k}={v}"))).collect::<Result<_>>()?;
        Ok(Plan { steps, program, argv, envp })
    }
}

fn bind_step(source: &Path, target: &Path) -> Result<Step> {
    Ok(Step::Mount {
        source: cstring(source)?,
        target: cstring(target)?,
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REC,
        data: None,
    })
}

fn tmpfs_step(target: &Path, flags: libc::c_ulong, options: &str) -> Result<Step> {
    Ok(Step::Mount {
        source: cstring("tmpfs")?,
        target: cstring(target)?,
        fstype: Some(cstring("tmpfs")?),
        flags,
        data: Some(cstring(options)?),
    })
}

/// Lays out the files of the new root that need no namespace: mount
/// points, `/etc`, `/build`.
fn prepare_root(spec: &SandboxSpec) -> Result<()> {
    let root = spec.root();
    let store = root.join("mini/store");
    for dir in
        [&store, &spec.build_dir_on_host(), &root.join("tmp"), &root.join("dev"), &root.join("proc"), &root.join("etc")]
    {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    for base in &spec.inputs {
        let source = spec.store_dir.join(base);
        let target = store.join(base);
        let meta = fs::symlink_metadata(&source).map_err(io_err("reading the input", &source))?;
        if meta.file_type().is_symlink() {
            let link = fs::read_link(&source).map_err(io_err("reading the input", &source))?;
            std::os::unix::fs::symlink(link, &target).map_err(io_err("creating", &target))?;
        } else if meta.is_dir() {
            fs::create_dir(&target).map_err(io_err("creating", &target))?;
        } else {
            fs::write(&target, b"").map_err(io_err("creating", &target))?;
        }
    }
    // A reused skeleton has these already; they never change.
    let write = |name: &str, text: String| {
        let path = root.join("etc").join(name);
        if path.exists() {
            return Ok(());
        }
        fs::write(&path, text).map_err(io_err("writing", &path))
    };
    write(
        "passwd",
        format!(
            "root:x:0:0:Build user:/build:/noshell\n\
             mini:x:{BUILD_UID}:{BUILD_GID}:Build user:/build:/noshell\n\
             nobody:x:65534:65534:Nobody:/:/noshell\n"
        ),
    )?;
    write("group", format!("root:x:0:\nmini:!:{BUILD_GID}:\nnogroup:x:65534:\n"))?;
    write("hosts", "127.0.0.1 localhost\n::1 localhost\n".into())?;
    if spec.network {
        // A fixed-output build may fetch, so it needs to resolve names.
        if let Ok(text) = fs::read_to_string("/etc/resolv.conf") {
            write("resolv.conf", text)?;
        }
    }
    // The store directory of the sandbox is where the builder creates its
    // outputs (anything else it leaves there is dropped).
    fs::set_permissions(&store, fs::Permissions::from_mode(0o1775)).map_err(io_err("preparing", &store))?;
    let build = spec.build_dir_on_host();
    fs::set_permissions(&build, fs::Permissions::from_mode(0o700)).map_err(io_err("preparing", &build))
}

/// A running builder.
pub struct SandboxChild {
    pid: libc::pid_t,
    /// Where the child reports a failed setup step; closed by its `execve`.
    errors: OwnedFd,
    plan: Plan,
}

/// What the child writes when a step fails: the step's index (or
/// `usize::MAX` for the exec) and `errno`.
type Failure = [u8; 12];

struct ChildArgs<'a> {
    plan: &'a Plan,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    output: libc::c_int,
    stdin: libc::c_int,
    errors: libc::c_int,
}

/// The cloned child: runs the plan and execs the builder. No allocation.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the `ChildArgs` the parent keeps alive (it is
    // suspended until this process execs or exits).
    let args = unsafe { &*(arg as *const ChildArgs) };
    let report = |index: usize| -> ! {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let mut failure: Failure = [0; 12];
        failure[..8].copy_from_slice(&(index as u64).to_le_bytes());
        failure[8..].copy_from_slice(&errno.to_le_bytes());
        // SAFETY: plain system calls on descriptors this process owns.
        unsafe {
            libc::write(args.errors, failure.as_ptr().cast(), failure.len());
            libc::_exit(127)
        }
    };
    // SAFETY: plain system calls; the descriptors belong to this process.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0
            || libc::dup2(args.stdin, 0) < 0
            || libc::dup2(args.output, 1) < 0
            || libc::dup2(args.output, 2) < 0
        {
            report(usize::MAX - 1);
        }
    }
    for (index, step) in args.plan.steps.iter().enumerate() {
        if !step.run() {
            report(index);
        }
    }
    // SAFETY: NULL-terminated arrays of C strings owned by the plan.
    unsafe { libc::execve(args.plan.program.as_ptr(), args.argv.as_ptr(), args.envp.as_ptr()) };
    report(usize::MAX)
}

/// Starts the builder of `spec` in a new sandbox, its stdout and stderr
/// going to `output`.
pub fn spawn(spec: &SandboxSpec, output: &OwnedFd) -> Result<SandboxChild> {
    prepare_root(spec)?;
    let plan = Plan::new(spec)?;
    let argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = plan.envp.iter().map(|e| e.as_ptr()).chain([std::ptr::null()]).collect();
    let stdin = fs::File::open("/dev/null").map_err(io_err("opening", Path::new("/dev/null")))?;
    let (errors_read, errors_write) = pipe()?;
    let args = ChildArgs {
        plan: &plan,
        argv: &argv,
        envp: &envp,
        output: output.as_raw_fd(),
        stdin: stdin.as_raw_fd(),
        errors: errors_write.as_raw_fd(),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    let mut flags = libc::CLONE_VM
        | libc::CLONE_VFORK
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::SIGCHLD;
    if !spec.network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: the stack is ours and outlives the child's use of it (with
    // CLONE_VFORK this thread waits until the child execs or exits); the
    // child function only makes system calls on data `args` keeps alive.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK) as *mut libc::c_void;
        libc::clone(child_main, top, flags, &args as *const ChildArgs as *mut libc::c_void)
    };
    if pid < 0 {
        let e = io::Error::last_os_error();
        return Err(BuildError::Sandbox(format!(
            "creating the namespaces: {e} (builds need unprivileged user namespaces: check \
             /proc/sys/user/max_user_namespaces and kernel.unprivileged_userns_clone)"
        )));
    }
    drop(errors_write);
    Ok(SandboxChild { pid, errors: errors_read, plan })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(BuildError::Sandbox(format!("creating a pipe: {}", io::Error::last_os_error())));
    }
    // SAFETY: both descriptors were just created and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl SandboxChild {
    /// Kills the builder, and with it everything in its namespace.
    pub fn kill(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }

    /// Why the sandbox could not be set up, if it could not.
    pub fn setup_error(&self) -> Option<String> {
        let mut failure: Failure = [0; 12];
        let mut file = fs::File::from(self.errors.try_clone().ok()?);
        file.read_exact(&mut failure).ok()?;
        let index = u64::from_le_bytes(failure[..8].try_into().ok()?) as usize;
        let errno = i32::from_le_bytes(failure[8..].try_into().ok()?);
        let what = match index {
            usize::MAX => format!("executing the builder '{}'", self.plan.program.to_string_lossy()),
            i if i == usize::MAX - 1 => "redirecting the builder's output".to_string(),
            i => self.plan.steps.get(i).map_or_else(|| "setting up".to_string(), Step::describe),
        };
        Some(format!("{what}: {}", io::Error::from_raw_os_error(errno)))
    }

    /// Waits for the builder; its exit code, or 128 + the killing signal.
    pub fn wait(&self) -> Result<i32> {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(BuildError::Sandbox(format!("waiting for the builder: {e}")));
            }
        }
        Ok(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) })
    }
}
