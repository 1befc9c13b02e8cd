//! Runs `docs/tutorial.md`: every command it shows is run, in order, in one
//! scratch directory with its own store, and must give the output printed
//! under it. So the tutorial cannot silently rot.
//!
//! The blocks it knows:
//! - ```` ```nix file=NAME ```` — the file NAME, written into the directory;
//! - ```` ```console ```` — `$ command` lines, each followed by its output.
//!   A command ending in `\` continues on the next line. Flags after
//!   `console`: `no-run` (shown, never run: e.g. `docker load`), `fails`
//!   (each command must exit non-zero), `any-output` (the output varies:
//!   times, random quotes; only the exit status is checked), `root` (needs
//!   root, as runc does: skipped otherwise, except under CI=true).
//!
//! Git commits get a fixed author and date (`GIT_AUTHOR_DATE`, …), so the
//! time-travel chapter's commit hashes are the same on every run.
//!
//! Outputs are compared with store hashes masked (`/mini/store/…-name`), so
//! a different busybox on another machine does not break the tutorial; the
//! scratch directory shows as `~/course` (its parent as `~`).
//! `MINI_TUTORIAL_RENDER=1 cargo test --release --test tutorial` rewrites
//! the outputs in `docs/tutorial.md` from a real run.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::Scratch;

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

/// Store hashes masked, trailing blank lines dropped.
fn masked(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("/mini/store/") {
        let after = &rest[at + "/mini/store/".len()..];
        out.push_str(&rest[..at + "/mini/store/".len()]);
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

fn run(dir: &Path, store: &Path, command: &str) -> (bool, String) {
    let mini_dir = Path::new(env!("CARGO_BIN_EXE_mini")).parent().expect("the binary's directory").to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(mini_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("a PATH");
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", path)
        .env("MINI_STORE", store)
        // Commits made by the tutorial have one author and one date, so
        // their hashes (and the images that record them) are the same on
        // every run; the reader's own commits will differ.
        .envs([("GIT_AUTHOR_NAME", "Ada"), ("GIT_COMMITTER_NAME", "Ada")])
        .envs([("GIT_AUTHOR_EMAIL", "ada@example.com"), ("GIT_COMMITTER_EMAIL", "ada@example.com")])
        .envs([("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"), ("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")])
        .envs([("GIT_CONFIG_GLOBAL", "/dev/null"), ("GIT_CONFIG_NOSYSTEM", "1")])
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sh");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self")) == 0
}

#[test]
fn every_command_of_the_tutorial_works_as_shown() {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tutorial.md");
    let text = std::fs::read_to_string(&path).expect("docs/tutorial.md");
    let render = std::env::var_os("MINI_TUTORIAL_RENDER").is_some();
    let s = Scratch::new("tutorial");
    let dir = s.0.join("work");
    let store = s.0.join("store");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rendered = String::new();
    let mut failures = Vec::new();
    for block in parse(&text) {
        match block {
            Block::Other(prose) => rendered.push_str(&prose),
            Block::File { name, text } => {
                let file = dir.join(&name);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, &text).unwrap();
                rendered.push_str(&text);
            }
            Block::Console { flags, steps } => {
                let flag = |f: &str| flags.iter().any(|g| g == f);
                for (command, expected) in steps {
                    rendered.push_str(&format!("$ {command}\n"));
                    let skip_for_root = flag("root") && !is_root() && std::env::var("CI").as_deref() != Ok("true");
                    if flag("no-run") || skip_for_root {
                        rendered.push_str(&expected);
                        continue;
                    }
                    let (success, output) = run(&dir, &store, &command);
                    // Shown as the reader's own directories.
                    let output =
                        output.replace(&dir.display().to_string(), "~/course").replace(&s.0.display().to_string(), "~");
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
