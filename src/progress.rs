//! How `mini build` shows what it is doing: a live bar (built/total, what
//! is running, elapsed time) on a terminal, one line per event otherwise,
//! and with `-L` every builder line prefixed by its derivation's name.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mini_build::{Event, Observer};
use mini_store::store_path::StorePath;

pub struct Progress {
    bar: Option<ProgressBar>,
    print_logs: bool,
    running: Mutex<BTreeSet<String>>,
}

/// The name a derivation is shown by: its name without `.drv`.
fn short(drv: &StorePath) -> &str {
    drv.name().strip_suffix(".drv").unwrap_or(drv.name())
}

impl Progress {
    pub fn new(print_logs: bool) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("[{elapsed_precise}] {pos}/{len} built {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, print_logs, running: Mutex::new(BTreeSet::new()) }
    }

    /// Prints a line without tearing the live display.
    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
    }

    fn update_running(&self, f: impl FnOnce(&mut BTreeSet<String>)) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut running);
        if let Some(bar) = &self.bar {
            let names: Vec<&str> = running.iter().map(String::as_str).collect();
            bar.set_message(if names.is_empty() { String::new() } else { format!("running {}", names.join(", ")) });
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Planned { total } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(total as u64);
                } else if total == 1 {
                    self.say("this derivation will be built:");
                } else if total > 1 {
                    self.say(&format!("these {total} derivations will be built:"));
                }
            }
            Event::PlannedMore { count } => {
                if let Some(bar) = &self.bar {
                    bar.inc_length(count as u64);
                } else if count > 0 {
                    let what = if count == 1 { "derivation" } else { "derivations" };
                    self.say(&format!("{count} more {what} will be built first, for lack of a substitute:"));
                }
            }
            Event::Started { drv } => {
                self.update_running(|r| {
                    r.insert(short(drv).to_string());
                });
                if self.bar.is_none() {
                    self.say(&format!("building '{drv}'..."));
                }
            }
            Event::Log { drv, line } => {
                if self.print_logs {
                    self.say(&format!("{}> {line}", short(drv)));
                }
            }
            Event::Substituted { drv } => {
                if self.bar.is_none() {
                    self.say(&format!("copied the outputs of '{drv}' from a binary cache"));
                }
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
            }
            Event::RemoteCached { drv } => {
                self.update_running(|r| {
                    r.remove(short(drv));
                });
                if self.bar.is_none() {
                    self.say(&format!("took the outputs of '{drv}' from the remote action cache"));
                }
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
            }
            Event::RemoteFailed { drv, message } => {
                self.say(&format!(
                    "warning: the remote build of '{}' failed, building it here instead: {message}",
                    short(drv)
                ));
            }
            Event::SubstitutionFailed { drv, message } => {
                self.say(&format!("warning: cannot substitute '{}', building it instead: {message}", short(drv)));
            }
            Event::Built { drv } | Event::AlreadyValid { drv } => {
                self.update_running(|r| {
                    r.remove(short(drv));
                });
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
            }
            Event::Failed { drv, error } => {
                self.update_running(|r| {
                    r.remove(short(drv));
                });
                self.say(&format!("error: {error}"));
            }
            Event::KeptBuildDir { drv, dir } => {
                self.say(&format!("note: keeping the build directory of '{}' at {}", short(drv), dir.display()));
            }
        }
    }
}
