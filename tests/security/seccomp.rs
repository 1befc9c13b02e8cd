//! The seccomp filter: a builder that makes every denied system call gets
//! the documented error, while the same program run on the host (the
//! control) gets through, so each probe shows the filter at work.

use std::process::Command;

use crate::{attacker_flake, compile_attacker, report, text, users, Attempt};

/// Probes the filter answers, and with what.
const DENIED: &[(&str, &str)] = &[
    ("chmod-setuid", "EPERM"),
    ("chmod-setgid", "EPERM"),
    ("fchmod-setuid", "EPERM"),
    ("fchmodat-setuid", "EPERM"),
    ("open-creat-setuid", "EPERM"),
    ("mknod-setuid", "EPERM"),
    ("open-tmpfile-setuid", "EPERM"),
    ("io_uring_setup", "ENOSYS"),
    ("setxattr", "EOPNOTSUPP"),
    ("keyctl", "EPERM"),
    ("add_key", "EPERM"),
    ("request_key", "EPERM"),
    ("ptrace", "EPERM"),
    ("process_vm_readv", "EPERM"),
    ("perf_event_open", "EPERM"),
    ("userfaultfd", "EPERM"),
    ("personality-no-aslr", "EPERM"),
];

#[test]
fn builders_cannot_make_the_denied_system_calls() {
    for who in users() {
        let attempt = Attempt::new("seccomp", who);
        attacker_flake(&attempt, &[("syscalls", "syscalls", "")]);
        let out = attempt.build("syscalls");
        let sandboxed = report(&std::fs::read_to_string(attempt.physical(&out)).expect("read the report"));
        // The control: the same program, unconfined, in a scratch directory.
        let control_dir = attempt.path("control");
        let binary = compile_attacker(&control_dir);
        let control =
            Command::new(&binary).arg("syscalls").current_dir(&control_dir).output().expect("run the control");
        assert!(control.status.success(), "{}", text(&control.stderr));
        let control = report(&text(&control.stdout));
        for (probe, errno) in DENIED {
            assert_eq!(sandboxed.get(*probe).map(String::as_str), Some(*errno), "{probe} as {who:?}: {sandboxed:?}");
            assert_ne!(control.get(*probe), sandboxed.get(*probe), "{probe}: the control got the same answer");
        }
        // What builds need still works.
        for probe in ["chmod-plain", "personality-query", "socket-unix", "socketpair-unix"] {
            assert_eq!(sandboxed.get(probe).map(String::as_str), Some("ok"), "{probe} as {who:?}: {sandboxed:?}");
        }
        assert_ne!(sandboxed.get("x32-getpid").map(String::as_str), Some("ok"), "{sandboxed:?}");
    }
}

#[test]
fn fixed_output_builds_cannot_open_unix_sockets() {
    // Fixed-output builds share the host's network namespace, where two of
    // them could pass descriptors over an abstract unix socket.
    for who in users() {
        let attempt = Attempt::new("seccomp-fixed", who);
        // Any hash: the attacker's report is in the log before the check fails the build.
        let zero = "0000000000000000000000000000000000000000000000000000000000000000";
        attacker_flake(&attempt, &[("fixed", "syscalls", zero)]);
        let out = attempt.mini(&["build", ".#fixed", "--no-link", "-L"]);
        let log = text(&out.stderr);
        assert!(!out.status.success() && log.contains("hash mismatch"), "{log}");
        let logged =
            report(&log.lines().filter_map(|l| l.split_once("> ").map(|(_, r)| r)).collect::<Vec<_>>().join("\n"));
        assert_eq!(logged.get("socket-unix").map(String::as_str), Some("EPERM"), "as {who:?}: {log}");
        assert_eq!(logged.get("socketpair-unix").map(String::as_str), Some("ok"), "as {who:?}: {log}");
    }
}
