//! Resource bounds: `/tmp` and `/dev/shm` are tmpfs of a fixed size
//! (`--tmpfs-size`, 1 GiB by default), not half of the host's memory, so a
//! builder cannot fill the host's RAM through them.

use crate::{flake_with, ok, users, Attempt};

#[test]
fn tmpfs_sizes_are_capped() {
    for who in users() {
        let attempt = Attempt::new("tmpfs", who);
        let fill = |dir: &str| {
            format!("if dd if=/dev/zero of={dir}/fill bs=1024 count=3072 2>/dev/null; then echo {dir} took 3M; else echo {dir} full; fi >> $out; ")
        };
        let script = format!("{}{}df -k /tmp /dev/shm | tail -n 2 >> $out", fill("/tmp"), fill("/dev/shm"));
        flake_with(&attempt.dir(), &[("fill", &script)], "");
        let out = ok(&attempt.mini(&["build", ".#fill", "--no-link", "--print-out-paths", "--tmpfs-size", "1M"]));
        let seen = std::fs::read_to_string(attempt.physical(&out)).unwrap();
        assert!(seen.contains("/tmp full") && seen.contains("/dev/shm full"), "as {who:?}:\n{seen}");
        // The default is 1 GiB, whatever the host's memory.
        let default = "df -k /tmp /dev/shm | tail -n 2 | while read fs size rest; do echo $size; done > $out";
        flake_with(&attempt.dir(), &[("sizes", default)], "");
        let out = attempt.build("sizes");
        let sizes = std::fs::read_to_string(attempt.physical(&out)).unwrap();
        assert_eq!(sizes, "1048576\n1048576\n", "as {who:?}");
        let bad = attempt.mini(&["build", ".#sizes", "--tmpfs-size", "12X"]);
        assert!(!bad.status.success() && crate::text(&bad.stderr).contains("unit must be K, M or G"));
    }
}
