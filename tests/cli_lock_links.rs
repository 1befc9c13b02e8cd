//! `mini lock` warns about links that leave a path input: the store copy
//! keeps them as they are, so in a build they dangle. The warning names
//! the input, each such link and its target, and says what to do; links
//! inside the input pass silently. Needs a static busybox (required under
//! CI=true, else skipped), as every flake evaluation does.

use std::os::unix::fs::symlink;
use std::path::Path;

mod common;
use common::{have_busybox, mini_at, ok, text, Scratch};

const FLAKE: &str = r#"{
  inputs.assets = { url = "path:./assets"; flake = false; };
  inputs.docs = { url = "path:./docs"; flake = false; };
  outputs = { pkgs, assets, docs, ... }: {
    default = pkgs.runCommand "site" { } "cp -r ${assets} $out";
  };
}
"#;

/// Runs `mini lock ARGS` in `dir`; its stderr, after checking it succeeded.
fn lock(store: &Path, dir: &Path, args: &[&str]) -> String {
    let out = mini_at(store, dir, &[&["lock"], args].concat());
    ok(&out);
    text(&out.stderr)
}

#[test]
fn links_leaving_a_path_input_are_named_when_it_is_pinned() {
    let s = Scratch::new("lock-links");
    if !have_busybox(&s) {
        return;
    }
    let (store, dir) = (s.0.join("store"), s.0.join("site"));
    s.write("site/flake.nixlike", FLAKE);
    s.write("site/assets/real.txt", "real\n");
    s.write("site/assets/sub/page.html", "<p>\n");
    s.write("site/docs/readme.txt", "docs\n");
    symlink("/etc/hostname", dir.join("assets/logo.png")).unwrap();
    symlink("../../elsewhere/style.css", dir.join("assets/sub/style.css")).unwrap();
    symlink("../real.txt", dir.join("assets/sub/real.txt")).unwrap();
    symlink("readme.txt", dir.join("docs/index.txt")).unwrap();

    let stderr = lock(&store, &dir, &[]);
    let expected = "warning: input 'assets' has links pointing outside it; the store copy keeps them, and builds \
                    (which see only the store) find nothing there:\n  logo.png -> /etc/hostname\n  \
                    sub/style.css -> ../../elsewhere/style.css\n\
                    copy what they point at into the input, or make them relative links inside it\n";
    assert!(stderr.contains(expected), "expected:\n{expected}\nin:\n{stderr}");
    // Links that stay inside are fine, and so is the input made only of them.
    assert!(!stderr.contains("sub/real.txt") && !stderr.contains("input 'docs'"), "{stderr}");
    assert!(stderr.contains("lock: added 'assets'") && stderr.contains("lock: wrote"), "{stderr}");
    // The pin is made all the same: a warning, not an error.
    assert!(std::fs::read_to_string(dir.join("mini.lock")).unwrap().contains("\"assets\""));

    // A kept pin imports nothing again, so says nothing; pinning again warns again.
    let again = lock(&store, &dir, &[]);
    assert!(!again.contains("warning:"), "{again}");
    let updated = lock(&store, &dir, &["--update", "assets"]);
    assert!(updated.contains("warning: input 'assets' has links pointing outside it"), "{updated}");
    assert!(!updated.contains("input 'docs'") && !updated.contains("updated 'docs'"), "{updated}");
}
