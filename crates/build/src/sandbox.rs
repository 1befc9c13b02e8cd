//! The Linux build sandbox: a builder runs in fresh user, mount, pid, ipc,
//! uts and (unless it is a fixed-output derivation) network namespaces,
//! inside a root that holds only its input closure (read-only, at
//! `/mini/store`), the directory where it creates its outputs, `/build`, a
//! fresh `/tmp`, a minimal `/dev`, its own `/proc` and a tiny `/etc`.
//!
//! Setting namespaces up needs a single-threaded process, and the scheduler
//! is not one, so the sandbox is entered by a small helper: the `mini`
//! binary itself, re-executed with the hidden first argument
//! [`HELPER_ARG`] and a spec file. The helper unshares, maps the caller's
//! uid to the build user (uid 1000, gid 100, as in Nix), and forks the
//! builder as pid 1 of the new pid namespace. When that process exits, the
//! kernel kills everything else in the namespace: nothing a build starts
//! outlives it. The helper dies with its parent (and the builder with the
//! helper), so killing `mini` or timing a build out leaves nothing behind.
//!
//! Unprivileged user namespaces are enough; it works the same as root.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{io_err, BuildError, Result};

/// First argument that turns the `mini` binary into the sandbox helper.
pub const HELPER_ARG: &str = "__mini-sandbox";

/// The build user inside the sandbox, as Nix names it.
pub const BUILD_UID: u32 = 1000;
pub const BUILD_GID: u32 = 100;

/// Exit status of the helper when it could not set the sandbox up; the
/// reason is in the work directory's [`SETUP_ERROR_FILE`].
pub const SETUP_FAILED: i32 = 125;
pub const SETUP_ERROR_FILE: &str = "setup-error";

/// Everything the helper needs to set up one build.
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

/// Where, inside the sandbox, the store is.
pub const STORE_DIR: &str = "/mini/store";

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

    fn to_json(&self) -> String {
        serde_json::json!({
            "builder": self.builder,
            "args": self.args,
            "env": self.env.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>(),
            "workDir": self.work_dir.to_string_lossy(),
            "storeDir": self.store_dir.to_string_lossy(),
            "inputs": self.inputs,
            "network": self.network,
        })
        .to_string()
    }

    fn from_json(text: &str) -> std::result::Result<SandboxSpec, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let string = |name: &str| v[name].as_str().map(str::to_string).ok_or(format!("'{name}' missing"));
        let strings = |value: &serde_json::Value| -> std::result::Result<Vec<String>, String> {
            value
                .as_array()
                .ok_or("not a list")?
                .iter()
                .map(|s| s.as_str().map(str::to_string).ok_or_else(|| "not a string".to_string()))
                .collect()
        };
        let env = v["env"]
            .as_array()
            .ok_or("'env' missing")?
            .iter()
            .map(|pair| strings(pair).and_then(|p| p.try_into().map_err(|_| "bad env pair".to_string())))
            .map(|pair| pair.map(|[k, val]: [String; 2]| (k, val)))
            .collect::<std::result::Result<_, _>>()?;
        Ok(SandboxSpec {
            builder: string("builder")?,
            args: strings(&v["args"])?,
            env,
            work_dir: PathBuf::from(string("workDir")?),
            store_dir: PathBuf::from(string("storeDir")?),
            inputs: strings(&v["inputs"])?,
            network: v["network"].as_bool().unwrap_or(false),
        })
    }

    /// Writes the spec where the helper will read it, and lays out the
    /// directories the build leaves its results in.
    pub fn prepare(&self) -> Result<PathBuf> {
        let root = self.root();
        for dir in [root.join("mini/store"), self.build_dir_on_host()] {
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        }
        // The builder creates its outputs here; nothing else it leaves here
        // is kept.
        let store = root.join("mini/store");
        fs::set_permissions(&store, fs::Permissions::from_mode(0o1775)).map_err(io_err("preparing", &store))?;
        let spec_path = self.work_dir.join("spec.json");
        fs::write(&spec_path, self.to_json()).map_err(io_err("writing", &spec_path))?;
        Ok(spec_path)
    }

    /// Why the helper could not set the sandbox up, if it said.
    pub fn setup_error(&self) -> Option<String> {
        fs::read_to_string(self.work_dir.join(SETUP_ERROR_FILE)).ok().filter(|e| !e.is_empty())
    }
}

/// The command that runs a prepared spec: this executable as the helper.
pub fn helper_command(spec_path: &Path) -> Result<std::process::Command> {
    let exe = std::env::current_exe().map_err(io_err("finding", Path::new("/proc/self/exe")))?;
    let mut command = std::process::Command::new(exe);
    command.arg(HELPER_ARG).arg(spec_path).env_clear();
    // SAFETY: prctl is async-signal-safe; it makes the helper die with the
    // thread that started it, so a killed `mini` leaves no build running.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command)
}

/// The helper's main: called by `mini` when its first argument is
/// [`HELPER_ARG`], before anything else runs (the process must still be
/// single-threaded). Never returns.
pub fn helper_main(spec_path: &OsStr) -> ! {
    let spec_path = PathBuf::from(spec_path);
    let spec = match fs::read_to_string(&spec_path).map_err(|e| e.to_string()).and_then(|t| SandboxSpec::from_json(&t))
    {
        Ok(spec) => spec,
        Err(e) => fail(&spec_path.with_file_name(SETUP_ERROR_FILE), &format!("reading the sandbox spec: {e}")),
    };
    let error_file = spec.work_dir.join(SETUP_ERROR_FILE);
    if let Err(e) = enter_namespaces(&spec) {
        fail(&error_file, &e);
    }
    // SAFETY: the helper is single-threaded, so the child may run anything.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail(&error_file, &format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // Opened before the root changes, so a failure to exec can still be
        // reported; close-on-exec, so a builder never sees it.
        let report = fs::File::create(&error_file);
        let e = run_builder(&spec);
        if let Ok(mut file) = report {
            let _ = file.write_all(e.as_bytes());
        }
        let _ = writeln!(io::stderr(), "mini sandbox: {e}");
        std::process::exit(SETUP_FAILED)
    }
    std::process::exit(wait_for(pid))
}

fn fail(error_file: &Path, message: &str) -> ! {
    let _ = fs::write(error_file, message);
    let _ = writeln!(io::stderr(), "mini sandbox: {message}");
    std::process::exit(SETUP_FAILED)
}

/// Waits for the builder and turns its end into an exit status: its own
/// code, or 128 + the signal that killed it.
fn wait_for(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: plain syscall on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return SETUP_FAILED;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

pub(crate) fn errno(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

pub(crate) fn cstring(s: impl AsRef<OsStr>) -> std::result::Result<CString, String> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| format!("'{}' contains a NUL byte", s.as_ref().to_string_lossy()))
}

/// Unshares every namespace and maps the caller to the build user.
fn enter_namespaces(spec: &SandboxSpec) -> std::result::Result<(), String> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut flags =
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if !spec.network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: the helper is single-threaded, as CLONE_NEWUSER requires.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(format!(
            "{} (builds need unprivileged user namespaces: check /proc/sys/user/max_user_namespaces \
             and kernel.unprivileged_userns_clone)",
            errno("unshare")
        ));
    }
    let write = |file: &str, text: String| fs::write(file, text).map_err(|e| format!("writing {file}: {e}"));
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("{BUILD_UID} {uid} 1"))?;
    write("/proc/self/gid_map", format!("{BUILD_GID} {gid} 1"))?;
    Ok(())
}

/// In the forked child, pid 1 of the new namespace: builds the root,
/// enters it and execs the builder. Returns only on failure.
fn run_builder(spec: &SandboxSpec) -> String {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    match assemble_root(spec).and_then(|()| exec_builder(spec)) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

pub(crate) fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> std::result::Result<(), String> {
    let (src, tgt, fs_type, data_c) = (cstring(source)?, cstring(target)?, cstring(fstype)?, cstring(data)?);
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            if fstype.is_empty() { std::ptr::null() } else { fs_type.as_ptr() },
            flags,
            if data.is_empty() { std::ptr::null() } else { data_c.as_ptr().cast() },
        )
    };
    if r != 0 {
        return Err(errno(&format!("mounting {} on {}", source.display(), target.display())));
    }
    Ok(())
}

/// Bind-mounts `source` at `target`, read-only if asked. A remount inside a
/// user namespace must keep the flags the original mount was locked with.
pub(crate) fn bind(source: &Path, target: &Path, read_only: bool) -> std::result::Result<(), String> {
    mount(source, target, "", libc::MS_BIND | libc::MS_REC, "")?;
    if read_only {
        let locked = locked_flags(target)?;
        mount(Path::new(""), target, "", libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked, "")?;
    }
    Ok(())
}

fn locked_flags(path: &Path) -> std::result::Result<libc::c_ulong, String> {
    let c = cstring(path)?;
    // SAFETY: statvfs fills the zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(errno(&format!("statvfs {}", path.display())));
    }
    let mut flags = 0;
    for (vfs, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & vfs != 0 {
            flags |= ms;
        }
    }
    Ok(flags)
}

fn create_dir(path: &Path, mode: u32) -> std::result::Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn write_file(path: &Path, text: &str) -> std::result::Result<(), String> {
    fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The files of the new root; see the module comment for what is there.
fn assemble_root(spec: &SandboxSpec) -> std::result::Result<(), String> {
    let root = spec.root();
    mount(Path::new("none"), Path::new("/"), "", libc::MS_REC | libc::MS_PRIVATE, "")?;
    // pivot_root needs the new root to be a mount point.
    bind(&root, &root, false)?;

    let store = root.join("mini/store");
    for base in &spec.inputs {
        let source = spec.store_dir.join(base);
        let target = store.join(base);
        let meta = fs::symlink_metadata(&source).map_err(|e| format!("input {base}: {e}"))?;
        if meta.file_type().is_symlink() {
            // A symlink cannot be a mount point; an identical one is as good.
            let link = fs::read_link(&source).map_err(|e| format!("input {base}: {e}"))?;
            std::os::unix::fs::symlink(link, &target).map_err(|e| format!("input {base}: {e}"))?;
            continue;
        }
        if meta.is_dir() { fs::create_dir(&target) } else { fs::write(&target, b"") }
            .map_err(|e| format!("mount point for {base}: {e}"))?;
        bind(&source, &target, true)?;
    }

    let tmp = root.join("tmp");
    create_dir(&tmp, 0o1777)?;
    mount(Path::new("tmpfs"), &tmp, "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=1777")?;

    let dev = root.join("dev");
    create_dir(&dev, 0o755)?;
    mount(Path::new("tmpfs"), &dev, "tmpfs", libc::MS_NOSUID | libc::MS_NOEXEC, "mode=0755")?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        write_file(&target, "")?;
        bind(&Path::new("/dev").join(name), &target, false)?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name)).map_err(|e| format!("/dev/{name}: {e}"))?;
    }
    let shm = dev.join("shm");
    create_dir(&shm, 0o1777)?;
    mount(Path::new("tmpfs"), &shm, "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=1777")?;

    let proc_dir = root.join("proc");
    create_dir(&proc_dir, 0o555)?;
    mount(Path::new("proc"), &proc_dir, "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, "")?;

    let etc = root.join("etc");
    create_dir(&etc, 0o755)?;
    write_file(
        &etc.join("passwd"),
        &format!(
            "root:x:0:0:Build user:/build:/noshell\n\
             mini:x:{BUILD_UID}:{BUILD_GID}:Build user:/build:/noshell\n\
             nobody:x:65534:65534:Nobody:/:/noshell\n"
        ),
    )?;
    write_file(&etc.join("group"), &format!("root:x:0:\nmini:!:{BUILD_GID}:\nnogroup:x:65534:\n"))?;
    write_file(&etc.join("hosts"), "127.0.0.1 localhost\n::1 localhost\n")?;
    if spec.network {
        // A fixed-output build may fetch, so it needs to resolve names.
        if let Ok(text) = fs::read_to_string("/etc/resolv.conf") {
            write_file(&etc.join("resolv.conf"), &text)?;
        }
    }
    fs::set_permissions(spec.build_dir_on_host(), fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod /build: {e}"))?;

    set_hostname()?;
    if !spec.network {
        loopback_up()?;
    }
    enter_root(&root)?;
    std::env::set_current_dir("/build").map_err(|e| format!("chdir /build: {e}"))
}

fn set_hostname() -> std::result::Result<(), String> {
    let name = b"localhost";
    // SAFETY: valid pointer and length.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(errno("sethostname"));
    }
    let domain = b"(none)";
    // SAFETY: valid pointer and length.
    if unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) } != 0 {
        return Err(errno("setdomainname"));
    }
    Ok(())
}

/// A new network namespace has only `lo`, and it is down.
fn loopback_up() -> std::result::Result<(), String> {
    // SAFETY: a socket used only for the ioctl, closed below; the request
    // struct is zeroed and names the interface.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(errno("socket"));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
        let r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        libc::close(fd);
        if r != 0 {
            return Err(errno("bringing up lo"));
        }
    }
    Ok(())
}

/// Makes `root` the root directory and drops the old one.
pub(crate) fn enter_root(root: &Path) -> std::result::Result<(), String> {
    let dot = cstring(".")?;
    std::env::set_current_dir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    // SAFETY: pivot_root(".", ".") stacks the old root on the new one, which
    // the detached unmount then removes; both paths are valid C strings.
    unsafe {
        if libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) != 0 {
            return Err(errno("pivot_root"));
        }
        if libc::umount2(dot.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(errno("unmounting the old root"));
        }
    }
    Ok(())
}

fn exec_builder(spec: &SandboxSpec) -> std::result::Result<std::convert::Infallible, String> {
    let program = cstring(&spec.builder)?;
    let mut argv = vec![program.clone()];
    for a in &spec.args {
        argv.push(cstring(a)?);
    }
    let envp: Vec<CString> =
        spec.env.iter().map(|(k, v)| cstring(format!("{k}={v}"))).collect::<std::result::Result<_, _>>()?;
    let argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).chain([std::ptr::null()]).collect();
    // SAFETY: argv and envp are NULL-terminated arrays of valid C strings
    // that outlive the call.
    unsafe { libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    Err(errno(&format!("executing the builder '{}'", spec.builder)))
}

impl From<String> for BuildError {
    fn from(message: String) -> BuildError {
        BuildError::Sandbox(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_json() {
        let spec = SandboxSpec {
            builder: "/mini/store/x-busybox/bin/sh".into(),
            args: vec!["-c".into(), "echo \"hi\" > $out".into()],
            env: vec![("out".into(), "/mini/store/y-out".into()), ("PATH".into(), "/path-not-set".into())],
            work_dir: "/tmp/w".into(),
            store_dir: "/s/store".into(),
            inputs: vec!["x-busybox".into()],
            network: false,
        };
        assert_eq!(SandboxSpec::from_json(&spec.to_json()).unwrap(), spec);
    }
}
