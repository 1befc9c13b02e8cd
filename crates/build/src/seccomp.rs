//! The system-call filter every builder runs under, as Nix and container
//! runtimes install one: namespaces decide what a builder can see, this
//! decides which kernel interfaces it may use at all. It denies what no
//! build needs and what has been used to reach outside a sandbox:
//!
//! - `ioctl` `TIOCSTI` and `TIOCLINUX` (typing into a terminal);
//! - making setuid or setgid files (`chmod`, `fchmod`, `fchmodat`,
//!   `fchmodat2`, `mknod`, `mknodat`, and `open`/`openat`/`creat` creating
//!   with those bits, named or `O_TMPFILE`); `openat2`, whose mode the
//!   filter cannot see, is reported as missing (`ENOSYS`) so callers fall
//!   back to `openat`;
//! - `io_uring` (`ENOSYS`): its operations (opening, sockets, xattrs)
//!   would go around every rule here;
//! - setting extended attributes (`ENOTSUP`, which tools like `cp -a`
//!   already expect from some filesystems);
//! - the kernel keyring (`keyctl`, `add_key`, `request_key`);
//! - tracing and reading other processes (`ptrace`, `process_vm_readv`,
//!   `process_vm_writev`, `pidfd_getfd`);
//! - `perf_event_open`, `bpf`, `userfaultfd`, `kexec_load`,
//!   `kexec_file_load`;
//! - `personality` except the harmless values (query, `PER_LINUX`,
//!   `PER_LINUX32`, `UNAME26`);
//! - x32 system calls (numbers with bit 30 set, which would otherwise slip
//!   past every rule above); i386 system calls kill the process, as the
//!   filter only speaks x86-64.
//!
//! Fixed-output builds share the host's network namespace, where abstract
//! unix sockets would let two builds (or a host daemon) pass descriptors
//! and reach files outside their roots, so they may not create unix
//! sockets either (`socketpair` stays allowed: both ends stay inside).
//!
//! Filters are compiled once per process, in the parent, because the
//! sandbox's child may not allocate; it only hands them to the kernel.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
    SeccompFilter, SeccompRule, TargetArch,
};

/// The programs, in the order they are installed; the kernel applies the
/// strictest answer of all of them.
pub struct Filters {
    /// What every builder runs under.
    pub programs: Vec<BpfProgram>,
    /// What fixed-output builders run under besides.
    pub fixed_output: BpfProgram,
}

/// The filters, compiled once per process.
pub fn filters() -> Result<&'static Filters, String> {
    static FILTERS: OnceLock<Result<Filters, String>> = OnceLock::new();
    FILTERS.get_or_init(compile).as_ref().map_err(Clone::clone)
}

fn compile() -> Result<Filters, String> {
    let eperm = program(denied()?, libc::EPERM)?;
    let xattrs = [libc::SYS_setxattr, libc::SYS_lsetxattr, libc::SYS_fsetxattr, SYS_SETXATTRAT];
    let enotsup = program(unconditional(&xattrs), libc::ENOTSUP)?;
    let missing = [libc::SYS_openat2, libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_io_uring_register];
    let enosys = program(unconditional(&missing), libc::ENOSYS)?;
    let unix_sockets = [(libc::SYS_socket, vec![rule(vec![cond(0, Len::Dword, Op::Eq, libc::AF_UNIX as u64)?])?])];
    let fixed_output = program(unix_sockets.into_iter().collect(), libc::EPERM)?;
    Ok(Filters { programs: vec![x32_guard(), eperm, enotsup, enosys], fixed_output })
}

/// Puts the calling thread (a build worker) under the builders' filter, once:
/// every sandbox it starts inherits it, so the kernel compiles the filter
/// once per worker instead of once per build. Nothing the worker itself
/// does (building, hashing, registering, fetching) needs what it denies.
pub fn confine_worker() -> Result<(), String> {
    // SAFETY: PR_GET_SECCOMP takes no pointer.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } == libc::SECCOMP_MODE_FILTER as i32 {
        // A worker started by a worker (a nested build) inherited it.
        return Ok(());
    }
    let filters = filters()?;
    if install(&fprogs(&filters.programs)) {
        Ok(())
    } else {
        Err(format!("installing the seccomp filter: {}", std::io::Error::last_os_error()))
    }
}

/// `setxattrat` (Linux 6.13), not yet in every libc crate.
const SYS_SETXATTRAT: i64 = 463;
/// The bit of `O_TMPFILE` that is not `O_DIRECTORY` (`__O_TMPFILE`).
const O_TMPFILE_BIT: u64 = (libc::O_TMPFILE & !libc::O_DIRECTORY) as u64;
/// `fchmodat2` (Linux 6.6).
const SYS_FCHMODAT2: i64 = 452;

/// The rules answered with `EPERM`.
fn denied() -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let mut rules = unconditional(&[
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_perf_event_open,
        libc::SYS_bpf,
        libc::SYS_userfaultfd,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
    ]);
    // The request is an unsigned int: compare the low 32 bits only, so
    // high bits set in the register do not slip past.
    rules.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![cond(1, Len::Dword, Op::Eq, libc::TIOCSTI)?])?,
            rule(vec![cond(1, Len::Dword, Op::Eq, libc::TIOCLINUX)?])?,
        ],
    );
    for (call, mode_arg) in
        [(libc::SYS_chmod, 1), (libc::SYS_fchmod, 1), (libc::SYS_fchmodat, 2), (SYS_FCHMODAT2, 2), (libc::SYS_creat, 1)]
    {
        rules.insert(call, setid_bits(mode_arg, None)?);
    }
    // A new file, named (O_CREAT) or not yet (O_TMPFILE, linked later).
    let creating = |arg| cond(arg, Len::Dword, Op::MaskedEq(libc::O_CREAT as u64), libc::O_CREAT as u64);
    let unnamed = |arg| cond(arg, Len::Dword, Op::MaskedEq(O_TMPFILE_BIT), O_TMPFILE_BIT);
    for (call, flags_arg, mode_arg) in [(libc::SYS_open, 1, 2), (libc::SYS_openat, 2, 3)] {
        let mut both = setid_bits(mode_arg, Some(creating(flags_arg)?))?;
        both.extend(setid_bits(mode_arg, Some(unnamed(flags_arg)?))?);
        rules.insert(call, both);
    }
    rules.insert(libc::SYS_mknod, setid_bits(1, None)?);
    rules.insert(libc::SYS_mknodat, setid_bits(2, None)?);
    // PER_LINUX, PER_LINUX32, UNAME26, both, and the query.
    let harmless: [u64; 5] = [0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];
    let others = harmless.iter().map(|&value| cond(0, Len::Dword, Op::Ne, value)).collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_personality, vec![rule(others)?]);
    Ok(rules)
}

/// Rules matching a mode argument with the setuid or the setgid bit (and
/// `also`, when given).
fn setid_bits(mode_arg: u8, also: Option<Cond>) -> Result<Vec<SeccompRule>, String> {
    [libc::S_ISUID, libc::S_ISGID]
        .into_iter()
        .map(|bit| {
            let mut conditions = vec![cond(mode_arg, Len::Dword, Op::MaskedEq(bit as u64), bit as u64)?];
            conditions.extend(also.clone());
            rule(conditions)
        })
        .collect()
}

fn unconditional(calls: &[i64]) -> BTreeMap<i64, Vec<SeccompRule>> {
    calls.iter().map(|&call| (call, Vec::new())).collect()
}

fn cond(arg: u8, len: Len, op: Op, value: impl Into<u64>) -> Result<Cond, String> {
    Cond::new(arg, len, op, value.into()).map_err(|e| format!("a seccomp condition: {e}"))
}

fn rule(conditions: Vec<Cond>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| format!("a seccomp rule: {e}"))
}

/// A program answering every matching call with `errno`, allowing the rest.
fn program(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, String> {
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), TargetArch::x86_64)
            .map_err(|e| format!("the seccomp filter: {e}"))?;
    filter.try_into().map_err(|e: seccompiler::BackendError| format!("compiling the seccomp filter: {e}"))
}

/// Refuses x32 system calls (`ENOSYS`): they carry the x86-64 architecture
/// tag but numbers of their own, which no rule above would match.
fn x32_guard() -> BpfProgram {
    const X32_BIT: u32 = 0x4000_0000;
    const LD_W_ABS: u16 = 0x20;
    const JGE_K: u16 = 0x05 | 0x30;
    const RET_K: u16 = 0x06;
    let nr_offset = 0; // offsetof(struct seccomp_data, nr)
    vec![
        sock_filter { code: LD_W_ABS, jt: 0, jf: 0, k: nr_offset },
        sock_filter { code: JGE_K, jt: 0, jf: 1, k: X32_BIT },
        sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32 },
        sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
    ]
}

/// Installs `programs` on the calling thread, with `PR_SET_NO_NEW_PRIVS`.
/// Also called in the sandbox's child just before `execve`: no allocation,
/// only system calls on prepared data. False if the kernel refused.
pub(crate) fn install(programs: &[libc::sock_fprog]) -> bool {
    // SAFETY: plain system calls; every sock_fprog points at a program
    // kept alive for the whole process (the static `filters`).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return false;
        }
        programs.iter().all(|prog| {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, prog as *const libc::sock_fprog) == 0
        })
    }
}

/// The kernel's view of `programs`, for [`install`].
pub(crate) fn fprogs(programs: &'static [BpfProgram]) -> Vec<libc::sock_fprog> {
    programs
        .iter()
        .map(|p| libc::sock_fprog { len: p.len() as u16, filter: p.as_ptr() as *mut libc::sock_filter })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_to_small_programs() {
        let filters = filters().unwrap();
        assert_eq!(filters.programs.len(), 4);
        assert!(filters.programs.iter().chain([&filters.fixed_output]).all(|p| !p.is_empty() && p.len() < 4096));
    }

    #[test]
    fn a_confined_thread_gets_the_filter_once_and_its_answers() {
        std::thread::spawn(|| {
            confine_worker().unwrap();
            confine_worker().unwrap();
            // SAFETY: keyctl with harmless arguments; the filter answers first.
            let r = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3i64, 0) };
            assert_eq!((r, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EPERM)));
        })
        .join()
        .unwrap();
    }
}
