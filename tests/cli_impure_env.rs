//! `impureEnvVars`: which of the caller's variables a fixed-output build
//! receives. Download settings (proxies, Go's module settings) come from
//! mini's environment; any other variable only from the config file's
//! `"impureEnv"`, so an untrusted flake cannot read a secret from the
//! user's environment and send it over the network such builds have.

mod common;

use common::{flake_with, have_busybox, nix_string, text, Scratch};
use sha2::{Digest, Sha256};
use std::process::Command;

/// The hex sha256 of `text`, as a flat fixed output holding it.
fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// A fixed-output derivation writing `$NAME` (or "unset") to its output,
/// declared to hold `expected`; it builds exactly when the variable had
/// that value.
fn fod(name: &str, expected: &str) -> String {
    format!(
        "  {name}_fod = derivation {{\n    name = \"{name}\";\n    system = \"x86_64-linux\";\n    \
         builder = \"${{pkgs.busybox}}/bin/sh\";\n    args = [ \"-c\" {script} ];\n    \
         impureEnvVars = [ \"{name}\" ];\n    outputHashMode = \"flat\";\n    outputHashAlgo = \"sha256\";\n    \
         outputHash = \"{hash}\";\n  }};\n",
        script = nix_string(&format!("printf %s \"${{{name}:-unset}}\" > $out")),
        hash = sha256_hex(expected),
    )
}

fn build(s: &Scratch, attr: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mini"));
    command.arg("--store").arg(s.0.join("store")).args(["build", "--no-link", &format!(".#{attr}")]);
    command.current_dir(s.0.join("flake")).env("XDG_CONFIG_HOME", s.0.join("config"));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run mini")
}

#[test]
fn a_secret_in_the_environment_never_reaches_a_fixed_output_build() {
    let s = Scratch::new("impure-env-secret");
    if !have_busybox(&s) {
        return;
    }
    let extra = fod("API_TOKEN", "unset") + &fod("http_proxy", "http://proxy.invalid:3128") + &fod("GOPROXY", "off");
    flake_with(&s.0.join("flake"), &[], &extra);
    // The token is in mini's environment, yet the build sees it unset.
    let out = build(&s, "API_TOKEN_fod", &[("API_TOKEN", "hunter2")]);
    assert!(out.status.success(), "the secret reached the build:\n{}", text(&out.stderr));
    // Download settings do reach it.
    let out = build(&s, "http_proxy_fod", &[("http_proxy", "http://proxy.invalid:3128")]);
    assert!(out.status.success(), "http_proxy did not reach the build:\n{}", text(&out.stderr));
    let out = build(&s, "GOPROXY_fod", &[("GOPROXY", "off")]);
    assert!(out.status.success(), "GOPROXY did not reach the build:\n{}", text(&out.stderr));
}

#[test]
fn the_config_file_gives_any_variable_and_the_environment_wins_for_download_settings() {
    let s = Scratch::new("impure-env-config");
    if !have_busybox(&s) {
        return;
    }
    let extra = fod("API_TOKEN", "from-config") + &fod("GOPROXY", "from-environment");
    flake_with(&s.0.join("flake"), &[], &extra);
    s.write("config/mini/config.json", r#"{ "impureEnv": { "API_TOKEN": "from-config", "GOPROXY": "from-config" } }"#);
    let out = build(&s, "API_TOKEN_fod", &[("API_TOKEN", "from-environment")]);
    assert!(out.status.success(), "the config's value did not reach the build:\n{}", text(&out.stderr));
    let out = build(&s, "GOPROXY_fod", &[("GOPROXY", "from-environment")]);
    assert!(out.status.success(), "the environment did not win:\n{}", text(&out.stderr));
}

#[test]
fn impure_env_vars_outside_a_fixed_output_build_are_an_error() {
    let s = Scratch::new("impure-env-not-fixed");
    if !have_busybox(&s) {
        return;
    }
    flake_with(
        &s.0.join("flake"),
        &[],
        "  plain = derivation { name = \"plain\"; system = \"x86_64-linux\"; builder = \"${pkgs.busybox}/bin/sh\"; \
         args = [ \"-c\" \"echo > $out\" ]; impureEnvVars = [ \"HOME\" ]; };\n",
    );
    let out = build(&s, "plain", &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("impureEnvVars is only for fixed-output derivations"), "{err}");
}
