//! A builder is never host uid 0 and cannot change host kernel settings:
//! `/proc/sys`, `/proc/sysrq-trigger` and friends are read-only, and
//! `/proc/kcore`, `/proc/keys` and `/proc/timer_list` are masked. Probes
//! only open files for appending and write nothing, so a failure of the
//! protection changes nothing on the host either.

use std::os::unix::fs::MetadataExt;

use crate::{flake_with, users, Attempt, Who};

/// The host uid and gid builders run as when mini runs as root.
const ROOT_BUILD_ID: u32 = 0x6d69_0000;

#[test]
fn builders_cannot_write_host_kernel_settings() {
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("read core_pattern");
    for who in users() {
        let attempt = Attempt::new("host-proc", who);
        let probe = |file: &str| {
            format!(
                "if (true >> {file}) 2>/dev/null; then echo {file} writable; else echo {file} refused; fi >> $out; "
            )
        };
        let mut script: String =
            ["/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches"].map(probe).concat();
        for masked in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
            script.push_str(&format!("echo {masked} $(cat {masked} 2>/dev/null | wc -c) >> $out; "));
        }
        flake_with(&attempt.dir(), &[("proc", &script)], "");
        let out = attempt.build("proc");
        let seen = std::fs::read_to_string(attempt.physical(&out)).unwrap();
        assert!(!seen.contains("writable"), "as {who:?}:\n{seen}");
        assert_eq!(seen.matches("refused").count(), 3, "{seen}");
        for masked in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
            assert!(seen.contains(&format!("{masked} 0\n")), "{masked} is not masked as {who:?}:\n{seen}");
        }
        assert_eq!(std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(), core_pattern);
    }
}

#[test]
fn builders_never_run_as_host_root() {
    for who in users() {
        let attempt = Attempt::new("host-uid", who);
        flake_with(&attempt.dir(), &[("fail", "id -u > /build/made-by-builder; exit 1")], "");
        let out = attempt.mini(&["build", ".#fail", "--no-link", "--keep-failed"]);
        assert!(!out.status.success());
        // The kept build directory holds what the builder made, owned by
        // whoever it really was on the host.
        let failed = attempt.store().join("failed");
        let kept = std::fs::read_dir(&failed).expect("a kept build").next().expect("one").expect("entry").path();
        let made = kept.join("build/made-by-builder");
        assert_eq!(std::fs::read_to_string(&made).unwrap(), "1000\n", "the build user inside");
        let owner = std::fs::symlink_metadata(&made).unwrap().uid();
        let expected = match (who, crate::caller_is_root()) {
            (Who::Caller, true) => ROOT_BUILD_ID,
            (Who::Nobody, _) => 65534,
            (Who::Caller, false) => std::fs::metadata("/proc/self").unwrap().uid(),
        };
        assert_ne!(owner, 0, "a builder ran as host root");
        assert_eq!(owner, expected, "as {who:?}");
    }
}
