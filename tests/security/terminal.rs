//! Terminal injection: a builder must not reach the user's terminal. mini
//! runs here under a pseudo-terminal that is its controlling terminal (as
//! in an interactive shell); the builder finds no `/dev/tty`, is the leader
//! of a session of its own, and cannot push input with `TIOCSTI` (nor use
//! `TIOCLINUX`) on any descriptor it holds.

use std::process::Command;

use crate::{attacker_flake, report, text, users, Attempt, Who};

#[test]
fn a_builder_cannot_reach_the_terminal_mini_runs_in() {
    // `script` (util-linux) runs mini under a terminal.
    if !crate::common::clients::have(&["script"]) {
        return;
    }
    for who in users() {
        let attempt = Attempt::new("terminal", who);
        attacker_flake(&attempt, &[("terminal", "terminal", "")]);
        // `script` gives the command a new pseudo-terminal as its
        // controlling terminal; the build then runs as Attempt::mini would.
        let mini = env!("CARGO_BIN_EXE_mini");
        let store = attempt.store();
        let command = format!("{mini} --store {} build .#terminal --no-link --print-out-paths", store.display());
        let command = match who {
            Who::Caller => command,
            Who::Nobody => {
                let _ = attempt.mini(&["--version"]); // hands the scratch directory to nobody
                format!("setpriv --reuid=65534 --regid=65534 --clear-groups {command}")
            }
        };
        let run = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(attempt.dir())
            .env("HOME", &attempt.scratch.0)
            .output()
            .expect("run script");
        let shown = text(&run.stdout);
        assert!(run.status.success(), "{shown}{}", text(&run.stderr));
        // On a terminal mini draws progress too: the path follows its escapes.
        let at = shown.rfind("/mini/store/").unwrap_or_else(|| panic!("no output path in:\n{shown}"));
        let out = shown[at..].split(|c: char| c.is_whitespace()).next().unwrap_or_default();
        let seen = report(&std::fs::read_to_string(attempt.physical(out)).expect("read the report"));
        assert_eq!(seen.get("open-dev-tty").map(String::as_str), Some("ENOENT"), "as {who:?}: {seen:?}");
        assert!(!seen.contains_key("tiocsti-dev-tty"), "{seen:?}");
        for probe in ["tiocsti-fd0", "tiocsti-fd1", "tiocsti-fd2", "tiocsti-high-bits", "tioclinux"] {
            assert_eq!(seen.get(probe).map(String::as_str), Some("EPERM"), "{probe} as {who:?}: {seen:?}");
        }
        // The builder (pid 1 of its namespace) leads its own session; in
        // mini's session it would see the session id as 0 (outside its view).
        assert_eq!(seen.get("pid").map(String::as_str), Some("1"), "{seen:?}");
        assert_eq!(seen.get("sid").map(String::as_str), Some("1"), "as {who:?}: {seen:?}");
    }
}
