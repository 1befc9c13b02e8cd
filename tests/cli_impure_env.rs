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

/// Builds `attr` with `env` added to mini's environment, which must
/// succeed; `failure_means` says what it shows when it does not.
fn assert_builds(s: &Scratch, attr: &str, env: &[(&str, &str)], failure_means: &str) {
    let out = build(s, attr, env);
    assert!(out.status.success(), "{failure_means}:\n{}", text(&out.stderr));
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
    assert_builds(&s, "API_TOKEN_fod", &[("API_TOKEN", "hunter2")], "the secret reached the build");
    // Download settings do reach it.
    let proxy = [("http_proxy", "http://proxy.invalid:3128")];
    assert_builds(&s, "http_proxy_fod", &proxy, "http_proxy did not reach the build");
    assert_builds(&s, "GOPROXY_fod", &[("GOPROXY", "off")], "GOPROXY did not reach the build");
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
    let env = [("API_TOKEN", "from-environment")];
    assert_builds(&s, "API_TOKEN_fod", &env, "the config's value did not reach the build");
    assert_builds(&s, "GOPROXY_fod", &[("GOPROXY", "from-environment")], "the environment did not win");
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
