//! The Linux build sandbox: a builder runs in fresh user, mount, pid, ipc,
//! uts and (unless it is a fixed-output derivation) network namespaces,
//! inside a root made for this one build that holds only its input closure
//! (read-only, at `/mini/store`), the directory where it creates its
//! outputs, `/build`, a fresh `/tmp`, a minimal `/dev` (no terminal), its
//! own `/proc` (with `/proc/sys` and friends read-only and `/proc/kcore`
//! and friends masked) and a tiny `/etc`. It has no controlling terminal
//! (its own session), and runs under the seccomp filter of [`crate::seccomp`].
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
//! Who the builder is: inside, always the build user (uid 1000, gid 100, as
//! in Nix). On the host, never uid 0. Run unprivileged, mini makes the
//! namespaces as the caller, whose uid becomes the build user's. Run as
//! root, the child sets up the root as root and then becomes
//! [`ROOT_BUILD_ID`], a uid and gid nothing else uses, as Nix's builds
//! become `nixbld` users. Either way the builder ends up in a user
//! namespace of its own, nested below the one that owns its mounts, so it
//! can change none of them (not even unmount the read-only views).
//!
//! The builder is pid 1 of its pid namespace, so when it exits the kernel
//! kills everything it started; it is also killed when the thread that
//! started it dies (a killed `mini`). Nothing a builder leaves is trusted
//! afterwards: outputs are taken out of its root through directory
//! handles that refuse links ([`SandboxSpec::collect_outputs`]), and the
//! root is removed the same way.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mini_store::teardown::{entry_names, open_dir, open_dir_at, open_file_at};
use rustix::fs::{AtFlags, FileType};

use crate::build_root::{self, RootEntry};
use crate::error::{io_err, BuildError, Result};
use crate::mounts::locked_flags;
use crate::seccomp;

/// The build user inside the sandbox, as Nix names it.
pub const BUILD_UID: u32 = 1000;
pub const BUILD_GID: u32 = 100;

/// The host uid and gid a builder runs as when mini runs as root (so a
/// builder is never host uid 0): 0x6d690000, "mi", far above the ranges
/// distributions hand out to users and to `/etc/subuid`. Nothing on the
/// host should own files under it.
pub const ROOT_BUILD_ID: u32 = 0x6d69_0000;

/// The size of `/tmp` and `/dev/shm` when nothing says otherwise: builds
/// keep their large temporary files in `/build` (`TMPDIR`), on disk.
pub const DEFAULT_TMPFS_SIZE: u64 = 1 << 30;

/// Files of `/proc` a builder may read but never write, as runc's
/// `readonlyPaths` (a root builder could otherwise set host kernel
/// parameters such as `kernel.core_pattern`).
const READ_ONLY_PROC: &[&str] = &["sys", "sysrq-trigger", "irq", "bus"];
/// Files of `/proc` hidden behind `/dev/null`, as runc's `maskedPaths`.
const MASKED_PROC: &[&str] = &["kcore", "keys", "timer_list"];

/// The entries of [`READ_ONLY_PROC`] and [`MASKED_PROC`] this kernel has
/// (the sandbox's `/proc` is of the same kernel as the host's), looked up
/// once per process.
fn proc_protections() -> &'static (Vec<&'static str>, Vec<&'static str>) {
    static FOUND: std::sync::OnceLock<(Vec<&str>, Vec<&str>)> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        let host = |name: &str| Path::new("/proc").join(name);
        (
            READ_ONLY_PROC.iter().copied().filter(|n| host(n).exists()).collect(),
            MASKED_PROC.iter().copied().filter(|n| host(n).is_file()).collect(),
        )
    })
}

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
    /// An empty host directory, made for this build alone, to assemble the
    /// sandbox in; the new root is its `root/`.
    pub work_dir: PathBuf,
    /// The physical directory holding store paths (`<store root>/store`).
    pub store_dir: PathBuf,
    /// Base names of the input closure, bind-mounted read-only.
    pub inputs: Vec<String>,
    /// Share the host's network (fixed-output derivations only).
    pub network: bool,
    /// The size of `/tmp` and `/dev/shm`, in bytes.
    pub tmpfs_size: u64,
    /// The base name of the input whose userland is the sandbox's `/usr`,
    /// `/bin`, `/etc`… (the derivation's `buildRoot`; [`crate::build_root`]).
    pub build_root: Option<String>,
}

impl SandboxSpec {
    /// The new root, on the host.
    pub fn root(&self) -> PathBuf {
        self.work_dir.join("root")
    }

    /// Where an output with this base name is on the host once collected
    /// ([`SandboxSpec::collect_outputs`]); builtin builders write it there
    /// directly. Outside the root, so no builder can reach it.
    pub fn output_on_host(&self, base_name: &str) -> PathBuf {
        self.outputs_dir().join(base_name)
    }

    /// The directory outputs are collected in.
    pub fn outputs_dir(&self) -> PathBuf {
        self.work_dir.join("outputs")
    }

    /// `/build` on the host.
    pub fn build_dir_on_host(&self) -> PathBuf {
        self.root().join("build")
    }

    /// Takes the outputs named `base_names` out of the builder's
    /// `/mini/store` into [`SandboxSpec::outputs_dir`], once every process
    /// of the build is dead. The builder may have replaced any directory of
    /// its root by a link, so the way there is walked by handles that
    /// refuse links. With `fresh_copy` (fixed-output builds, which share
    /// the host's network and so might have passed a descriptor to their
    /// output to another process), each output is copied into new files
    /// instead of moved, so what is hashed afterwards is what nobody else
    /// can write. A missing output is left missing, for the caller to
    /// report.
    pub fn collect_outputs(&self, base_names: &[String], fresh_copy: bool) -> Result<()> {
        let replaced = |e: io::Error| {
            BuildError::Sandbox(format!(
                "the builder replaced its /mini/store (or /mini) by something other than a directory: {e}"
            ))
        };
        let work = open_dir(&self.work_dir).map_err(io_err("opening", &self.work_dir))?;
        let outputs =
            open_dir_at(work.as_fd(), OsStr::new("outputs")).map_err(io_err("opening", &self.outputs_dir()))?;
        let root = open_dir_at(work.as_fd(), OsStr::new("root")).map_err(replaced)?;
        let mini = open_dir_at(root.as_fd(), OsStr::new("mini")).map_err(replaced)?;
        let store = open_dir_at(mini.as_fd(), OsStr::new("store")).map_err(replaced)?;
        for base in base_names {
            let name = OsStr::new(base);
            match rustix::fs::statat(&store, name, AtFlags::SYMLINK_NOFOLLOW) {
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(io_err("reading", &self.output_on_host(base))(e.into())),
                Ok(_) => {}
            }
            let target = self.output_on_host(base);
            if fresh_copy {
                copy_fresh(store.as_fd(), name, &target, 0).map_err(io_err("copying the output to", &target))?;
            } else {
                rustix::fs::renameat(&store, name, &outputs, name).map_err(|e| io_err("moving", &target)(e.into()))?;
            }
        }
        Ok(())
    }
}

/// Copies the entry `name` of `parent` to the new path `to`, into new
/// files, never following a link (links are copied as links).
fn copy_fresh(parent: BorrowedFd<'_>, name: &OsStr, to: &Path, depth: usize) -> io::Result<()> {
    const MAX_DEPTH: usize = 512;
    let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let mode = stat.st_mode & 0o777;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory if depth < MAX_DEPTH => {
            let dir = open_dir_at(parent, name)?;
            fs::DirBuilder::new().mode(0o700).create(to)?;
            let mut names = entry_names(&dir)?;
            names.sort();
            for entry in names {
                copy_fresh(dir.as_fd(), &entry, &to.join(&entry), depth + 1)?;
            }
            fs::set_permissions(to, fs::Permissions::from_mode(mode | 0o700))
        }
        FileType::RegularFile => {
            let mut source = fs::File::from(open_file_at(parent, name)?);
            let mut copy = fs::File::options().write(true).create_new(true).mode(0o600).open(to)?;
            io::copy(&mut source, &mut copy)?;
            copy.set_permissions(fs::Permissions::from_mode(mode | 0o400))
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(parent, name, Vec::new())?;
            std::os::unix::fs::symlink(OsStr::from_bytes(target.as_bytes()), to)
        }
        FileType::Directory => Err(io::Error::other(format!("directories nested more than {MAX_DEPTH} deep"))),
        _ => Err(io::Error::other(format!(
            "'{}' is a device, fifo or socket, which a store path may not hold",
            name.to_string_lossy()
        ))),
    }
}

/// One system call the child makes, with everything it needs prepared.
#[derive(Debug)]
enum Step {
    /// Writes `/proc/self/uid_map`, `gid_map` or `setgroups`, which only
    /// their owner may open, and a process owns its /proc files only while
    /// its memory is marked dumpable. Children share mini's memory
    /// (CLONE_VM), and a root child's change of uid clears that mark for
    /// all of them: so the mark is set again right before the open, which
    /// is tried again should another child have cleared it in between.
    /// Once the file is open, the write no longer depends on the mark.
    WriteIdMap {
        path: CString,
        data: Vec<u8>,
    },
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    Mkdir {
        path: CString,
        mode: libc::mode_t,
    },
    CreateFile {
        path: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    Chdir {
        path: CString,
    },
    PivotRoot,
    DetachOldRoot,
    Hostname,
    LoopbackUp,
    /// Root only: drop to the unprivileged host ids the builder runs as.
    BecomeUser {
        uid: libc::uid_t,
        gid: libc::gid_t,
    },
    /// A user namespace of the builder's own, below the one owning its mounts.
    NewUserNamespace,
    /// A session of its own: no controlling terminal to type into.
    NewSession,
    /// Killed when the thread that started it dies (set again after every
    /// change of credentials, which clears it).
    DieWithParent,
    Seccomp,
}

impl Step {
    /// What the step was, for an error message.
    fn describe(&self) -> String {
        let show = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Step::WriteIdMap { path, .. } => format!("writing {}", show(path)),
            Step::Mount { source, target, .. } => format!("mounting {} on {}", show(source), show(target)),
            Step::Mkdir { path, .. } => format!("creating {}", show(path)),
            Step::CreateFile { path } => format!("creating {}", show(path)),
            Step::Symlink { link, .. } => format!("creating {}", show(link)),
            Step::Chdir { path } => format!("entering {}", show(path)),
            Step::PivotRoot => "changing the root directory".into(),
            Step::DetachOldRoot => "unmounting the old root".into(),
            Step::Hostname => "setting the hostname".into(),
            Step::LoopbackUp => "bringing up lo".into(),
            Step::BecomeUser { uid, .. } => format!("becoming the build user (host uid {uid})"),
            Step::NewUserNamespace => "creating the builder's user namespace".into(),
            Step::NewSession => "starting a new session".into(),
            Step::DieWithParent => "asking to die with mini".into(),
            Step::Seccomp => "installing the seccomp filter".into(),
        }
    }

    /// Runs the step. Called in the cloned child: no allocation.
    fn run(&self, seccomp_programs: &[libc::sock_fprog]) -> bool {
        // SAFETY: every pointer is a valid C string (or null where the
        // call allows it) owned by the plan, which outlives the child.
        unsafe {
            match self {
                Step::WriteIdMap { path, data } => {
                    let mut fd = -1;
                    for _ in 0..1000 {
                        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
                        fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW);
                        if fd >= 0 || *libc::__errno_location() != libc::EACCES {
                            break;
                        }
                        libc::sched_yield();
                    }
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
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                        0o644,
                    );
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
                Step::BecomeUser { uid, gid } => {
                    // Raw system calls, not libc's wrappers: those change
                    // the ids of every thread of the process they think
                    // they are in (mini's, whose memory this child shares)
                    // and wait for each thread to answer, which never comes.
                    let (uid, gid) = (*uid as libc::c_long, *gid as libc::c_long);
                    libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
                        && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
                        && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
                        && libc::syscall(libc::SYS_getuid) == uid
                }
                Step::NewUserNamespace => libc::unshare(libc::CLONE_NEWUSER) == 0,
                Step::NewSession => libc::setsid() >= 0,
                Step::DieWithParent => {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == 0
                }
                Step::Seccomp => seccomp::install(seccomp_programs),
            }
        }
    }
}

fn cstring(s: impl AsRef<OsStr>) -> Result<CString> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| BuildError::Sandbox(format!("'{}' contains a NUL byte", s.as_ref().to_string_lossy())))
}

/// Whether mini runs as root, so builders must become [`ROOT_BUILD_ID`].
pub fn running_as_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Everything the child does, prepared by the parent.
struct Plan {
    steps: Vec<Step>,
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    seccomp: Vec<libc::sock_fprog>,
}

/// The steps mapping the build user and group, inside a user namespace just
/// made, to `uid` and `gid` of the namespace above.
fn id_map_steps(uid: u32, gid: u32) -> Result<[Step; 3]> {
    Ok([
        Step::WriteIdMap { path: cstring("/proc/self/setgroups")?, data: b"deny".to_vec() },
        Step::WriteIdMap { path: cstring("/proc/self/uid_map")?, data: format!("{BUILD_UID} {uid} 1").into_bytes() },
        Step::WriteIdMap { path: cstring("/proc/self/gid_map")?, data: format!("{BUILD_GID} {gid} 1").into_bytes() },
    ])
}

impl Plan {
    fn new(spec: &SandboxSpec, from_root: &[RootEntry]) -> Result<Plan> {
        let as_root = running_as_root();
        let root = spec.root();
        let at = |rel: &str| cstring(root.join(rel));
        let mut steps = Vec::new();
        if !as_root {
            // SAFETY: getuid/getgid cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            // The namespace that owns the mounts: the caller is the build
            // user here already.
            steps.extend(id_map_steps(uid, gid)?);
        }
        steps.push(Step::Mount {
            source: cstring("none")?,
            target: cstring("/")?,
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        });
        // pivot_root needs the new root to be a mount point.
        steps.push(bind_step(&root, &root)?);
        for base in &spec.inputs {
            let source = spec.store_dir.join(base);
            let target = root.join("mini/store").join(base);
            if fs::symlink_metadata(&source).map_err(io_err("reading the input", &source))?.file_type().is_symlink() {
                // A symlink cannot be a mount point; the parent made a copy.
                continue;
            }
            steps.extend(read_only_bind_steps(&source, &target)?);
        }
        for entry in from_root {
            if let RootEntry::Bind { source, at, .. } = entry {
                steps.extend(read_only_bind_steps(source, &root.join(at))?);
            }
        }
        let tmpfs = |mode: &str| format!("mode={mode},size={}", spec.tmpfs_size);
        steps.push(tmpfs_step(&root.join("tmp"), libc::MS_NOSUID | libc::MS_NODEV, &tmpfs("1777"))?);
        steps.push(tmpfs_step(&root.join("dev"), libc::MS_NOSUID | libc::MS_NOEXEC, "mode=0755,size=65536")?);
        for name in ["null", "zero", "full", "random", "urandom"] {
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
        steps.push(tmpfs_step(&root.join("dev/shm"), libc::MS_NOSUID | libc::MS_NODEV, &tmpfs("1777"))?);
        let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        steps.push(Step::Mount {
            source: cstring("proc")?,
            target: at("proc")?,
            fstype: Some(cstring("proc")?),
            flags: proc_flags,
            data: None,
        });
        let (read_only, masked) = proc_protections();
        for name in read_only {
            let target = root.join("proc").join(name);
            steps.push(bind_step(&target, &target)?);
            steps.push(read_only_step(&target, proc_flags)?);
        }
        for name in masked {
            steps.push(bind_step(&root.join("dev/null"), &root.join("proc").join(name))?);
        }
        steps.push(Step::Hostname);
        if !spec.network {
            steps.push(Step::LoopbackUp);
        }
        steps.push(Step::Chdir { path: cstring(&root)? });
        steps.push(Step::PivotRoot);
        steps.push(Step::DetachOldRoot);
        steps.push(Step::Chdir { path: cstring("/build")? });
        // The builder's own user namespace: the namespace above owns every
        // mount, so the builder can change none of them.
        let (outer_uid, outer_gid) = if as_root {
            steps.push(Step::BecomeUser { uid: ROOT_BUILD_ID, gid: ROOT_BUILD_ID });
            // Changing uid cleared the death signal: set it again at once.
            steps.push(Step::DieWithParent);
            (ROOT_BUILD_ID, ROOT_BUILD_ID)
        } else {
            (BUILD_UID, BUILD_GID)
        };
        steps.push(Step::NewUserNamespace);
        steps.extend(id_map_steps(outer_uid, outer_gid)?);
        steps.push(Step::NewSession);
        steps.push(Step::DieWithParent);
        // The thread starting builders runs under the builders' filter
        // already, and they inherit it; fixed-output builds add their own.
        seccomp::confine_worker().map_err(BuildError::Sandbox)?;
        let filters = seccomp::filters().map_err(BuildError::Sandbox)?;
        if spec.network {
            steps.push(Step::Seccomp);
        }
        let program = cstring(&spec.builder)?;
        let mut argv = vec![program.clone()];
        for a in &spec.args {
            argv.push(cstring(a)?);
        }
        let envp = spec.env.iter().map(|(k, v)| cstring(format!("{k}={v}"))).collect::<Result<_>>()?;
        let seccomp = seccomp::fprogs(std::slice::from_ref(&filters.fixed_output));
        Ok(Plan { steps, program, argv, envp, seccomp })
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

/// Binds `source` at `target`, then makes that view read-only.
fn read_only_bind_steps(source: &Path, target: &Path) -> Result<[Step; 2]> {
    let locked = locked_flags(source).map_err(BuildError::Sandbox)?;
    Ok([bind_step(source, target)?, read_only_step(target, locked)?])
}

/// Makes the bind mount at `target` read-only, keeping the `locked` flags
/// the kernel will not let a remount drop.
fn read_only_step(target: &Path, locked: libc::c_ulong) -> Result<Step> {
    Ok(Step::Mount {
        source: cstring("")?,
        target: cstring(target)?,
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
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
/// points, `/etc`, `/build`, and the directory outputs are collected in.
/// The work directory is new and no builder has run in it yet, so these
/// paths are all this process's own.
fn prepare_root(spec: &SandboxSpec) -> Result<()> {
    let root = spec.root();
    let store = root.join("mini/store");
    for dir in [
        &store,
        &spec.build_dir_on_host(),
        &root.join("tmp"),
        &root.join("dev"),
        &root.join("proc"),
        &root.join("etc"),
        &spec.outputs_dir(),
    ] {
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
    let write = |name: &str, text: String| {
        let path = root.join("etc").join(name);
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
        // A fixed-output build may fetch, so it needs to resolve names and,
        // for HTTPS, the CAs the host trusts (at the path most TLS clients
        // read by default). Its output is checked against its hash, so
        // neither makes the result depend on the host.
        if let Ok(text) = fs::read_to_string("/etc/resolv.conf") {
            write("resolv.conf", text)?;
        }
        if let Some(bundle) = HOST_CA_BUNDLES.iter().find_map(|path| fs::read_to_string(path).ok()) {
            let certs = root.join("etc/ssl/certs");
            fs::create_dir_all(&certs).map_err(io_err("creating", &certs))?;
            write("ssl/certs/ca-certificates.crt", bundle)?;
        }
    }
    // The store directory of the sandbox is where the builder creates its
    // outputs (anything else it leaves there is dropped).
    fs::set_permissions(&store, fs::Permissions::from_mode(0o1775)).map_err(io_err("preparing", &store))?;
    let build = spec.build_dir_on_host();
    fs::set_permissions(&build, fs::Permissions::from_mode(0o700)).map_err(io_err("preparing", &build))?;
    fs::set_permissions(spec.outputs_dir(), fs::Permissions::from_mode(0o700))
        .map_err(io_err("preparing", &spec.outputs_dir()))?;
    if running_as_root() {
        // The only places the (unprivileged) builder may write.
        for dir in [&store, &build] {
            std::os::unix::fs::lchown(dir, Some(ROOT_BUILD_ID), Some(ROOT_BUILD_ID))
                .map_err(io_err("handing to the build user", dir))?;
        }
    }
    Ok(())
}

/// The names of `/etc` [`prepare_root`] writes for `spec`, which a build
/// root's own do not replace.
fn minis_etc(spec: &SandboxSpec) -> Vec<&'static str> {
    let mut names = vec!["passwd", "group", "hosts"];
    if spec.network {
        names.extend(["resolv.conf", "ssl"]);
    }
    names
}

/// Where hosts keep the bundle of CAs they trust (Debian's, then Fedora's).
const HOST_CA_BUNDLES: &[&str] = &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

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
        if !step.run(&args.plan.seccomp) {
            report(index);
        }
    }
    // SAFETY: plain system calls on this process's own descriptors and
    // signal dispositions.
    unsafe {
        // Nothing mini inherited (a directory descriptor would lead out of
        // the root) reaches the builder: every descriptor above 2 closes
        // on exec (the error pipe too, which must stay open until then).
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
            report(usize::MAX - 2);
        }
        // Rust ignores SIGPIPE; a builder gets the default, as under Nix
        // (so `yes | head` ends `yes`).
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        if libc::syscall(libc::SYS_rt_sigaction, libc::SIGPIPE, &default, std::ptr::null::<libc::sigaction>(), 8) != 0 {
            report(usize::MAX - 2);
        }
    }
    // SAFETY: NULL-terminated arrays of C strings owned by the plan.
    unsafe { libc::execve(args.plan.program.as_ptr(), args.argv.as_ptr(), args.envp.as_ptr()) };
    report(usize::MAX)
}

/// Starts the builder of `spec` in a new sandbox, its stdout and stderr
/// going to `output`.
pub fn spawn(spec: &SandboxSpec, output: &OwnedFd) -> Result<SandboxChild> {
    let from_root = match &spec.build_root {
        Some(base) => build_root::layout(&spec.store_dir, base, &minis_etc(spec))?,
        None => Vec::new(),
    };
    prepare_root(spec)?;
    build_root::prepare(&spec.root(), &from_root)?;
    let plan = Plan::new(spec, &from_root)?;
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
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::SIGCHLD;
    if !spec.network {
        flags |= libc::CLONE_NEWNET;
    }
    if !running_as_root() {
        // Unprivileged, the namespaces need a user namespace to own them;
        // as root, the child sets up as root and makes one later.
        flags |= libc::CLONE_NEWUSER;
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
            i if i == usize::MAX - 2 => "preparing the builder's descriptors and signals".to_string(),
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt};

    use super::*;
    use crate::testing::Scratch;

    fn spec(work_dir: &Path) -> SandboxSpec {
        SandboxSpec {
            builder: "/bin/true".into(),
            args: Vec::new(),
            env: Vec::new(),
            work_dir: work_dir.to_path_buf(),
            store_dir: work_dir.join("unused"),
            inputs: Vec::new(),
            network: false,
            tmpfs_size: DEFAULT_TMPFS_SIZE,
            build_root: None,
        }
    }

    #[test]
    fn outputs_are_moved_out_or_copied_into_new_files_never_through_links() {
        let s = Scratch::new("collect");
        let work = s.0.join("work");
        let spec = spec(&work);
        prepare_root(&spec).unwrap();
        let store = spec.root().join("mini/store");
        let victim = s.0.join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("secret"), "host").unwrap();
        fs::create_dir(store.join("out")).unwrap();
        fs::write(store.join("out/file"), "data").unwrap();
        symlink(&victim, store.join("out/to-victim")).unwrap();
        symlink(victim.join("secret"), store.join("linked")).unwrap();
        fs::write(store.join("fixed"), "fixed").unwrap();
        let fixed_inode = fs::metadata(store.join("fixed")).unwrap().ino();
        spec.collect_outputs(&["out".into(), "linked".into(), "missing".into()], false).unwrap();
        spec.collect_outputs(&["fixed".into()], true).unwrap();
        assert_eq!(fs::read_to_string(spec.output_on_host("out").join("file")).unwrap(), "data");
        assert!(fs::symlink_metadata(spec.output_on_host("out").join("to-victim")).unwrap().file_type().is_symlink());
        assert!(fs::symlink_metadata(spec.output_on_host("linked")).unwrap().file_type().is_symlink());
        assert!(fs::symlink_metadata(spec.output_on_host("missing")).is_err());
        let copied = fs::metadata(spec.output_on_host("fixed")).unwrap();
        assert_ne!(copied.ino(), fixed_inode, "a fixed output must be copied into a new inode");
        assert_eq!(fs::read_to_string(spec.output_on_host("fixed")).unwrap(), "fixed");
        assert_eq!(fs::read_to_string(victim.join("secret")).unwrap(), "host");
    }

    #[test]
    fn a_store_directory_replaced_by_a_link_is_refused() {
        let s = Scratch::new("collect-link");
        let work = s.0.join("work");
        let spec = spec(&work);
        prepare_root(&spec).unwrap();
        let victim = s.0.join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("out"), "host file").unwrap();
        let mini = spec.root().join("mini");
        fs::rename(mini.join("store"), mini.join("old")).unwrap();
        symlink(&victim, mini.join("store")).unwrap();
        let err = spec.collect_outputs(&["out".into()], false).unwrap_err();
        assert!(err.to_string().contains("replaced its /mini/store"), "{err}");
        assert_eq!(fs::read_to_string(victim.join("out")).unwrap(), "host file");
        assert!(fs::symlink_metadata(spec.output_on_host("out")).is_err());
    }
}
