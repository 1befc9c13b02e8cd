//! Golden bytes from Nix itself: mini's archive of a tree must be the NAR
//! that `nix-store --dump` writes for the same tree, byte for byte. The
//! hand-written token vectors in `nar`'s unit tests say what we believe the
//! format is; this says Nix agrees. Needs `nix-store`: without it the test
//! notes so and passes, except under `CI=true`, where it fails.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use mini_store::nar;
use sha2::Digest;

/// A scratch directory for this test, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A regular file, an executable, symlinks (relative, absolute, dangling),
/// an empty directory and nested directories, with names that sort
/// differently as bytes than as text would.
fn build_tree(root: &Path) {
    fs::create_dir_all(root.join("nested/deeper/deepest")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("file.txt"), "hello, nar\n").unwrap();
    fs::write(root.join("nested/deeper/deepest/seven"), "1234567").unwrap();
    fs::write(root.join("nested/Zeta"), "").unwrap();
    let tool = root.join("nested/tool");
    fs::write(&tool, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    symlink("../file.txt", root.join("nested/link")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
}

/// `nix-store --dump path`, or `None` if nix-store is not installed.
fn nix_dump(path: &Path, state: &Path) -> Option<Vec<u8>> {
    let output = Command::new("nix-store")
        .arg("--dump")
        .arg(path)
        // No daemon and no real store are needed; keep Nix out of the host's.
        .env("NIX_STATE_DIR", state.join("state"))
        .env("HOME", state)
        .output();
    match output {
        Ok(out) if out.status.success() => Some(out.stdout),
        Ok(out) => panic!("nix-store --dump failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("nix-store is required when CI=true"),
        Err(_) => None,
    }
}

#[test]
fn dump_is_byte_for_byte_nix_store_dump() {
    let scratch = Scratch(std::env::temp_dir().join(format!("mini-nar-vs-nix-{}", std::process::id())));
    let _ = fs::remove_dir_all(&scratch.0);
    let tree = scratch.0.join("tree");
    build_tree(&tree);
    // Also a lone file and a lone symlink as the archive's root.
    let roots = [tree.clone(), tree.join("nested/tool"), tree.join("nested/link")];
    for root in roots {
        let Some(expected) = nix_dump(&root, &scratch.0) else {
            eprintln!("note: nix-store is not installed; mini's archive was not compared with Nix's NAR");
            return;
        };
        let mut ours = Vec::new();
        nar::dump_path(&root, &mut ours).unwrap();
        assert!(ours == expected, "{}: mini's archive differs from nix-store --dump", root.display());
        assert_eq!(nar::hash_path(&root).unwrap(), (blake3::hash(&expected), expected.len() as u64));
        assert_eq!(nar::sha256(&root).unwrap(), <[u8; 32]>::from(sha2::Sha256::digest(&expected)));
    }
}
