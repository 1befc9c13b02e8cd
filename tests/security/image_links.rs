//! Images must not copy host files through links a builder planted. A
//! derivation's output holds `shadow -> <host secret>` and `root -> <host
//! directory>`; an image then names the link as an `extraFiles` source, or
//! takes the output as `contents`, or the output itself is a link to a host
//! directory or to a private image. Before the fix, the layer held the
//! secret's bytes or the directory's listing, and `mini image inspect`
//! read the private image. Now a link leaving the closure is stored as a
//! link, never followed, and a source that is one is an error naming it.

use crate::{text, users, Attempt};

/// The bytes of a file the attacker must never get into an image.
const SECRET: &str = "VICTIM-SECRET-7f3a9c";
/// A name in the host directory, which must not be listed into an image.
const VICTIM_NAME: &str = "VICTIM-NAME-51be02";

/// Every member of a docker-archive, and of every layer tar in it:
/// (layer, path bytes, link target bytes, contents).
pub type Entry = (String, Vec<u8>, Option<Vec<u8>>, Vec<u8>);

/// The entries of the layers of the (uncompressed) docker-archive `bytes`.
pub fn layer_entries(bytes: &[u8]) -> Vec<Entry> {
    let mut found = Vec::new();
    let mut outer = tar::Archive::new(bytes);
    for member in outer.entries().expect("a docker-archive is a tar") {
        let mut member = member.expect("a docker-archive member");
        let name = String::from_utf8_lossy(&member.path_bytes()).into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut member, &mut data).expect("read a docker-archive member");
        if !name.ends_with(".tar") {
            continue;
        }
        let mut layer = tar::Archive::new(&data[..]);
        for entry in layer.entries().expect("a layer is a tar") {
            let mut entry = entry.expect("a layer entry");
            let path = entry.path_bytes().into_owned();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            let mut contents = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut contents).expect("read a layer entry");
            found.push((name.clone(), path, link, contents));
        }
    }
    found
}

/// Whether `needle` occurs anywhere in `haystack`.
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn image_sources_that_link_out_of_the_store_are_refused_and_links_are_never_followed() {
    for who in users() {
        let a = Attempt::new("image-links", who);
        let secret = a.path("host/shadow");
        std::fs::create_dir_all(a.path("host/root")).expect("create the host directory");
        std::fs::write(&secret, SECRET).expect("write the secret");
        std::fs::write(a.path("host/root").join(VICTIM_NAME), "x").expect("write the victim file");
        let (secret, root) = (secret.display().to_string(), a.path("host/root").display().to_string());
        a.flake(
            &[
                (
                    "evil",
                    &format!(
                        "mkdir -p $out/etc; ln -s {secret} $out/shadow; ln -s {root} $out/root; \
                         ln -s ../../../../../../../../..{secret} $out/etc/climb; echo fine > $out/etc/motd"
                    ),
                ),
                ("evilTop", &format!("ln -s {root} $out")),
            ],
            "  viaSource = pkgs.dockerTools.buildLayeredImage { name = \"via-source\"; \
             extraFiles = { \"etc/shadow\" = { source = \"${evil}/shadow\"; }; }; };\n\
             viaClimb = pkgs.dockerTools.buildLayeredImage { name = \"via-climb\"; \
             extraFiles = { \"etc/shadow\" = { source = \"${evil}/etc/climb\"; }; }; };\n\
             viaTop = pkgs.dockerTools.buildLayeredImage { name = \"via-top\"; contents = [ evilTop ]; };\n\
             layered = pkgs.dockerTools.buildLayeredImage { name = \"layered\"; contents = [ evil ]; };\n\
             single = pkgs.dockerTools.buildImage { name = \"single\"; contents = [ evil ]; };\n",
        );
        let evil = a.build("evil");

        // A source that is a link out of the store is an error naming it.
        for (attr, link) in [("viaSource", format!("{evil}/shadow")), ("viaClimb", format!("{evil}/etc/climb"))] {
            let out = a.mini(&["build", &format!(".#{attr}"), "--no-link"]);
            let err = text(&out.stderr);
            assert!(!out.status.success(), "{who:?}: {attr} was built:\n{err}");
            assert!(
                err.contains(&format!("{link} leads out of the image's closure")) && err.contains("is a link to"),
                "{who:?}: {attr}: {err}"
            );
        }
        let out = a.mini(&["build", ".#viaTop", "--no-link"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{who:?}: viaTop was built:\n{err}");
        assert!(err.contains("contents") && err.contains("leads out of the image's closure"), "{who:?}: {err}");

        // Links in contents are stored as links; nothing of the host is read.
        for attr in ["layered", "single"] {
            let image = a.build(attr);
            let bytes = std::fs::read(a.physical(&image)).expect("read the image");
            assert!(!holds(&bytes, SECRET), "{who:?}: {attr} holds the host secret");
            assert!(!holds(&bytes, VICTIM_NAME), "{who:?}: {attr} lists the host directory");
            let entries = layer_entries(&bytes);
            let link_of = |path: &str| {
                entries
                    .iter()
                    .find(|e| e.1 == path.as_bytes())
                    .and_then(|e| e.2.clone())
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
            };
            let inside = evil.trim_start_matches('/');
            assert_eq!(link_of(&format!("{inside}/shadow")).as_deref(), Some(secret.as_str()), "{who:?}: {attr}");
            assert_eq!(link_of(&format!("{inside}/root")).as_deref(), Some(root.as_str()), "{who:?}: {attr}");
            // At the image's root, `root` is a link into the store path.
            assert_eq!(link_of("root"), Some(format!("{evil}/root")), "{who:?}: {attr}");
            assert_eq!(link_of("etc/motd"), Some(format!("{evil}/etc/motd")), "{who:?}: {attr}");
        }
        assert_eq!(std::fs::read_to_string(a.path("host/shadow")).ok().as_deref(), Some(SECRET), "{who:?}");
    }
}

#[test]
fn inspect_does_not_read_a_host_image_an_output_links_to() {
    for who in users() {
        let a = Attempt::new("image-inspect-link", who);
        a.flake(&[], "  private = pkgs.dockerTools.buildLayeredImage { name = \"private\"; tag = \"secret-tag\"; };\n");
        // The user's private image, somewhere on the host.
        let private = a.build("private");
        let host_image = a.path("host/private.tar");
        std::fs::create_dir_all(a.path("host")).expect("create the host directory");
        std::fs::copy(a.physical(&private), &host_image).expect("copy the private image");
        let listed = a.mini_env(&[], &["image", "inspect", host_image.to_str().expect("a UTF-8 path")]);
        assert!(text(&listed.stdout).contains("secret-tag"), "{who:?}: the user may inspect their own image");

        // A build whose output is a link to it.
        a.flake(&[("leak", &format!("ln -s {} $out", host_image.display()))], "");
        let out = a.mini(&["image", "inspect", ".#leak"]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{who:?}: inspected through the link:\n{stdout}");
        assert!(!stdout.contains("secret-tag") && !stderr.contains("secret-tag"), "{who:?}: {stdout}{stderr}");
        assert!(stderr.contains("outside the store"), "{who:?}: {stderr}");
        // Nor through ./result, a link to the output.
        let leak = a.build("leak");
        std::os::unix::fs::symlink(a.physical(&leak), a.path("result")).expect("make a result link");
        let out = a.mini_env_in(&a.scratch.0, &[], &["image", "inspect", "./result"]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success() && !stdout.contains("secret-tag"), "{who:?}: {stdout}{stderr}");
        assert!(stderr.contains("outside the store"), "{who:?}: {stderr}");
    }
}
