//! `builtin:fetchurl` runs in mini's own process, with the user's rights.
//! Before the fix, `file:///etc/shadow` (here, a secret in the scratch
//! directory) was a hash oracle: a wrong hash printed the file's real one,
//! and the right one copied the file into the store. Now `file://` reads
//! only below the directories the user allows (`allowedFileUrls`,
//! `MINI_ALLOWED_FILE_URLS`), after resolving links, and the refusal names
//! the setting.

use std::ffi::OsStr;

use sha2::Digest;

use crate::{listing, text, users, Attempt};

const SECRET: &[u8] = b"hunter2-but-longer\n";

/// A fixed-output `builtin:fetchurl` derivation of `url` with `hash` (hex sha256).
fn fetch(attr: &str, url: &str, hash: &str) -> String {
    format!(
        "  {attr} = derivation {{ name = \"{attr}\"; system = \"builtin\"; builder = \"builtin:fetchurl\"; \
         url = \"{url}\"; outputHashAlgo = \"sha256\"; outputHash = \"{hash}\"; }};\n"
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn file_urls_read_only_below_allowed_directories() {
    let right = hex(&sha2::Sha256::digest(SECRET));
    let wrong = "0".repeat(64);
    // What a hash mismatch would print about the secret.
    let sri = format!("sha256-{}", base64_of(&sha2::Sha256::digest(SECRET)));
    for who in users() {
        let a = Attempt::new("fetchurl-file", who);
        let secret = a.path("host/shadow");
        std::fs::create_dir_all(a.path("host")).expect("create the host directory");
        std::fs::write(&secret, SECRET).expect("write the secret");
        let allowed = a.path("mirror");
        std::fs::create_dir_all(&allowed).expect("create the allowed directory");
        std::fs::write(allowed.join("data.txt"), SECRET).expect("write the allowed file");
        std::os::unix::fs::symlink(&secret, allowed.join("link")).expect("link out of the allowed directory");
        let url = |p: &std::path::Path| format!("file://{}", p.display());
        a.flake(
            &[],
            &[
                fetch("steal", &url(&secret), &right),
                fetch("guess", &url(&secret), &wrong),
                fetch("viaLink", &url(&allowed.join("link")), &right),
                fetch("mirrored", &url(&allowed.join("data.txt")), &right),
                fetch("viaConfig", &url(&allowed.join("data.txt")), &right),
            ]
            .concat(),
        );
        let refused = |attr: &str, env: &[(&str, &OsStr)]| {
            let out = a.mini_env(env, &["build", &format!(".#{attr}"), "--no-link"]);
            let err = text(&out.stderr);
            assert!(!out.status.success(), "{who:?}: {attr} was fetched");
            assert!(!err.contains(&sri), "{who:?}: {attr}: the secret's hash was told:\n{err}");
            err
        };
        // No directory is allowed by default.
        for attr in ["steal", "guess", "mirrored"] {
            let err = refused(attr, &[]);
            assert!(
                err.contains("outside the directories file:// URLs may read")
                    && err.contains("allowedFileUrls")
                    && err.contains("MINI_ALLOWED_FILE_URLS"),
                "{who:?}: {attr}: {err}"
            );
        }
        // Allowing one directory allows nothing outside it, links included.
        let env = [("MINI_ALLOWED_FILE_URLS", allowed.as_os_str())];
        for attr in ["steal", "guess", "viaLink"] {
            let err = refused(attr, &env);
            assert!(err.contains("outside the directories file:// URLs may read"), "{who:?}: {attr}: {err}");
        }
        let stored: Vec<String> = listing(&a.store().join("store"));
        assert!(
            !stored.iter().any(|p| p.ends_with("-steal") || p.ends_with("-viaLink")),
            "{who:?}: the secret reached the store: {stored:?}"
        );
        // What is below an allowed directory is fetched, through the
        // environment or the config file.
        let out = a.mini_env(&env, &["build", ".#mirrored", "--no-link", "--print-out-paths"]);
        assert!(out.status.success(), "{who:?}: {}", text(&out.stderr));
        let config = a.path("config/mini/config.json");
        std::fs::create_dir_all(config.parent().expect("a parent")).expect("create the config directory");
        let json = format!("{{\"allowedFileUrls\": [\"{}\"]}}", allowed.display());
        std::fs::write(&config, json).expect("write the config file");
        let config_home = a.path("config");
        let out = a.mini_env(
            &[("XDG_CONFIG_HOME", config_home.as_os_str())],
            &["build", ".#viaConfig", "--no-link", "--print-out-paths"],
        );
        assert!(out.status.success(), "{who:?}: {}", text(&out.stderr));
        let fetched = a.physical(text(&out.stdout).trim());
        assert_eq!(std::fs::read(fetched).ok().as_deref(), Some(SECRET), "{who:?}");
    }
}

/// Standard base64 with padding, as SRI hashes are written.
fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
