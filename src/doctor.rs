//! `mini doctor`: runs `mini_build::doctor`'s checks (adding the busybox
//! one, which `mini-flake` finds) and prints them as text or JSON; fails if
//! a required one fails.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use mini_build::doctor;

use crate::Outcome;

#[derive(Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    json: bool,
}

pub fn doctor(store_root: &Path, args: DoctorArgs) -> Outcome {
    // The probe is this binary; /proc/self/exe is it too, if its path is lost.
    let mini = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let checks = doctor::checks(&mini, busybox(), store_root);
    let failed = checks.iter().filter(|c| c.required && !c.ok).count();
    let text = if args.json { format!("{}\n", doctor::render_json(&checks)) } else { doctor::render_text(&checks) };
    // A closed stdout (`| head`) is not worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    if failed > 0 && !args.json {
        eprintln!("error: {failed} required check(s) failed; mini cannot build until they are fixed");
    }
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The static busybox the prelude's builds use.
fn busybox() -> doctor::Check {
    match mini_flake::find_busybox() {
        Ok(path) => doctor::Check {
            name: "busybox",
            required: true,
            ok: true,
            detail: format!("{} is statically linked", path.display()),
            fix: None,
        },
        Err(mini_flake::FlakeError::NoBusybox { tried }) => doctor::Check {
            name: "busybox",
            required: true,
            ok: false,
            detail: format!("no static busybox ({})", tried.join("; ")),
            fix: Some("apt-get install busybox-static, or set MINI_BUSYBOX to a statically linked busybox".into()),
        },
        Err(e) => doctor::Check { name: "busybox", required: true, ok: false, detail: e.to_string(), fix: None },
    }
}
