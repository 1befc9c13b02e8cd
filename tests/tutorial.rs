//! Runs `docs/tutorial.md` as a reader would: every command it shows is
//! typed, in order, into one shell, and must give the output printed under
//! it. So the tutorial cannot silently rot, and it cannot rely on anything
//! a reader's shell would not do: a `cd` stays in effect until the next one.
//!
//! The shell is `sh`, started in `~/course`, with a scratch HOME (so mini's
//! store is the default `~/.local/share/mini`) and mini on its PATH. Before
//! it starts, the toolchain wheels `scripts/install-prerequisites` cached
//! are added to that store, so no build downloads them; they also appear at
//! `~/.cache/mini/wheels`, where the script puts them by default, and pip
//! (behind `mini fetch pypi:`) is pointed there instead of at its index.
//! Without the wheels, git or python3 the test is skipped, except under
//! CI=true, where it fails.
//!
//! The blocks it knows:
//! - ```` ```nix file=NAME ```` (any language) — the file NAME, relative to
//!   `~/course`, written as the reader would with an editor;
//! - ```` ```console ```` — `$ command` lines, each followed by its output
//!   (stdout and stderr, in the order a terminal shows them). A command
//!   ending in `\` continues on the next line. Flags after `console`:
//!   `no-run` (shown, never run: e.g. `docker load`), `fails` (each command
//!   must exit non-zero), `any-output` (the output varies: times, random
//!   quotes; only the exit status is checked), `root` (needs root, as runc
//!   does: skipped otherwise, except under CI=true).
//!
//! Git commits get a fixed author and date (`GIT_AUTHOR_DATE`, …), so the
//! time-travel chapter's commit hashes are the same on every run.
//!
//! Outputs are compared with store hashes masked (`/mini/store/…-name`, and
//! the same in build logs' file names), so a different busybox on another
//! machine does not break the tutorial; the scratch HOME shows as `~`.
//! `MINI_TUTORIAL_RENDER=1 cargo test --release --test tutorial` rewrites
//! the outputs in `docs/tutorial.md` from a real run.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

mod common;
use common::Scratch;

/// Where scripts/install-prerequisites caches the toolchain wheels, under
/// HOME (unless MINI_WHEEL_CACHE says otherwise).
const WHEEL_CACHE: &str = ".cache/mini/wheels";

/// One block of the tutorial.
enum Block {
    File { name: String, text: String },
    Console { flags: Vec<String>, steps: Vec<(String, String)> },
    Other(String),
}

fn parse(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = text.split_inclusive('\n').peekable();
    let mut prose = String::new();
    while let Some(line) = lines.next() {
        let Some(info) = line.trim_end().strip_prefix("```").filter(|i| !i.is_empty()) else {
            prose.push_str(line);
            continue;
        };
        let mut body = Vec::new();
        for inner in lines.by_ref() {
            if inner.trim_end() == "```" {
                break;
            }
            body.push(inner);
        }
        let mut words = info.split_whitespace();
        match words.next() {
            Some("console") => {
                blocks.push(Block::Other(std::mem::take(&mut prose) + line));
                blocks.push(Block::Console { flags: words.map(str::to_string).collect(), steps: steps(&body) });
                prose.push_str("```\n");
            }
            Some(_) if info.contains("file=") => {
                let name = info.split("file=").nth(1).unwrap_or_default().split_whitespace().next().unwrap_or_default();
                blocks.push(Block::Other(std::mem::take(&mut prose) + line));
                blocks.push(Block::File { name: name.to_string(), text: body.concat() });
                prose.push_str("```\n");
            }
            _ => {
                prose.push_str(line);
                prose.push_str(&body.concat());
                prose.push_str("```\n");
            }
        }
    }
    blocks.push(Block::Other(prose));
    blocks
}

/// `$ command` lines and the output under each.
fn steps(body: &[&str]) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut continuing = false;
    for line in body {
        if continuing {
            let command = &mut steps.last_mut().expect("a command").0;
            command.push('\n');
            command.push_str(line.trim_end());
            continuing = line.trim_end().ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push((command.trim_end().to_string(), String::new()));
            continuing = command.trim_end().ends_with('\\');
        } else if let Some((_, output)) = steps.last_mut() {
            output.push_str(line);
        }
    }
    steps
}

/// Store hashes masked (in `/mini/store/…-name` and in build logs' file
/// names, `…/log/…-name.drv`), trailing blank lines dropped.
fn masked(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('/') {
        out.push_str(&rest[..=at]);
        let after = &rest[at + 1..];
        if after.len() > 32 && after.as_bytes()[32] == b'-' && after[..32].bytes().all(|b| b.is_ascii_alphanumeric()) {
            out.push('…');
            rest = &after[32..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out.trim_end().to_string()
}

/// The reader's shell: one `sh` that runs every command of the tutorial in
/// turn, so `cd`, variables and files carry from one block to the next.
struct Shell {
    child: Child,
    input: Option<ChildStdin>,
    statuses: BufReader<ChildStdout>,
    output: PathBuf,
}

impl Shell {
    /// A shell in `course`, with `home` as its HOME (so `~/course` is
    /// `course`, and mini's store is the default `~/.local/share/mini`) and
    /// mini on its PATH; `scratch` holds what the harness itself writes.
    fn start(home: &Path, course: &Path, scratch: &Path) -> Shell {
        let mini_dir = Path::new(env!("CARGO_BIN_EXE_mini")).parent().expect("the binary's directory").to_path_buf();
        let path = std::env::join_paths(
            std::iter::once(mini_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .expect("a PATH");
        let mut child = Command::new("sh")
            .current_dir(course)
            .env("PATH", path)
            .env("HOME", home)
            // The store and config are the reader's defaults, under HOME.
            .env_remove("MINI_STORE")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            // Commits made by the tutorial have one author and one date, so
            // their hashes (and the images that record them) are the same on
            // every run; the reader's own commits will differ.
            .envs([("GIT_AUTHOR_NAME", "Ada"), ("GIT_COMMITTER_NAME", "Ada")])
            .envs([("GIT_AUTHOR_EMAIL", "ada@example.com"), ("GIT_COMMITTER_EMAIL", "ada@example.com")])
            .envs([("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"), ("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")])
            .envs([("GIT_CONFIG_GLOBAL", "/dev/null"), ("GIT_CONFIG_NOSYSTEM", "1")])
            // pip (behind `mini fetch pypi:`) takes the wheels from the
            // cache instead of downloading them.
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", home.join(WHEEL_CACHE))
            .env_remove("NO_COLOR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sh");
        let input = child.stdin.take();
        let statuses = BufReader::new(child.stdout.take().expect("the shell's stdout"));
        Shell { child, input, statuses, output: scratch.join("output") }
    }

    /// Runs `command` as if typed at the prompt: its success and what it
    /// printed, stdout and stderr in the order a terminal would show them.
    /// Its stdin is empty.
    fn run(&mut self, command: &str) -> (bool, String) {
        let input = self.input.as_mut().expect("the shell's stdin");
        let script = format!("{{\n{command}\n}} >{} 2>&1 </dev/null\necho \"$?\"\n", quoted(&self.output));
        input.write_all(script.as_bytes()).and_then(|()| input.flush()).expect("write to the shell");
        let mut status = String::new();
        let read = self.statuses.read_line(&mut status).expect("read the shell's output");
        assert!(read > 0, "the shell exited at `{command}` (a syntax error? its stderr is above)");
        let code: i32 = status.trim().parse().expect("an exit status");
        let text = String::from_utf8_lossy(&std::fs::read(&self.output).expect("the command's output")).into_owned();
        (code == 0, text)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // End of input: the shell exits.
        drop(self.input.take());
        let _ = self.child.wait();
    }
}

/// `path` as one shell word.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self")) == 0
}

#[test]
fn every_command_of_the_tutorial_works_as_shown() {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tutorial.md");
    let text = std::fs::read_to_string(&path).expect("docs/tutorial.md");
    let render = std::env::var_os("MINI_TUTORIAL_RENDER").is_some();
    if !common::clients::have(&["git", "python3"]) {
        return;
    }
    let s = Scratch::new("tutorial");
    let home = s.0.join("home");
    let course = home.join("course");
    std::fs::create_dir_all(&course).unwrap();
    // The wheels scripts/install-prerequisites cached, where it puts them
    // by default; in the store before the tutorial starts, so a toolchain
    // wheel is never downloaded, whatever the tutorial does.
    let cache = home.join(WHEEL_CACHE);
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(common::wheel_cache(), &cache).unwrap();
    if !common::seed_wheels(&home.join(".local/share/mini")) {
        return;
    }
    let mut shell = Shell::start(&home, &course, &s.0);
    let mut rendered = String::new();
    let mut failures = Vec::new();
    for block in parse(&text) {
        match block {
            Block::Other(prose) => rendered.push_str(&prose),
            Block::File { name, text } => {
                let file = course.join(&name);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, &text).unwrap();
                rendered.push_str(&text);
            }
            Block::Console { flags, steps } => {
                let flag = |f: &str| flags.iter().any(|g| g == f);
                for (command, expected) in steps {
                    rendered.push_str(&format!("$ {command}\n"));
                    let skip_for_root = flag("root") && !is_root() && !common::clients::ci();
                    if flag("no-run") || skip_for_root {
                        rendered.push_str(&expected);
                        continue;
                    }
                    let (success, output) = shell.run(&command);
                    // Shown as the reader's own directories.
                    let output = output.replace(&home.display().to_string(), "~");
                    if success == flag("fails") {
                        failures
                            .push(format!("`{command}` {}:\n{output}", if success { "succeeded" } else { "failed" }));
                    } else if !flag("any-output") && !render && masked(&output) != masked(&expected) {
                        failures.push(format!("`{command}` printed:\n{output}\ninstead of:\n{expected}"));
                    }
                    if render {
                        rendered.push_str(&output);
                    } else {
                        rendered.push_str(&expected);
                    }
                }
            }
        }
    }
    if render {
        std::fs::write(&path, rendered).unwrap();
    }
    assert!(failures.is_empty(), "{} tutorial commands broke:\n\n{}", failures.len(), failures.join("\n\n"));
}
