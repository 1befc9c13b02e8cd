//! File names are bytes. A store path holds `caf\xe9` and `caf\xe8`, which
//! are not UTF-8 and would both become `caf\u{fffd}` if made text, and a
//! link `link\xfe -> caf\xe9`. Before the fix the image's store layer held
//! two entries of the same (replaced) name and the link pointed at the
//! replaced name, and the customisation layer linked only one of the two.
//! Now every name and target reaches the layers byte for byte.

use crate::image_links::layer_entries;
use crate::{users, Attempt};

#[test]
fn non_utf8_names_reach_the_layers_byte_for_byte() {
    for who in users() {
        let a = Attempt::new("image-names", who);
        a.flake(
            &[(
                "names",
                "mkdir -p $out/bin; printf e9 > \"$out/bin/$(printf 'caf\\351')\"; \
                 printf e8 > \"$out/bin/$(printf 'caf\\350')\"; \
                 ln -s \"$(printf 'caf\\351')\" \"$out/bin/$(printf 'link\\376')\"",
            )],
            "  layered = pkgs.dockerTools.buildLayeredImage { name = \"layered\"; contents = [ names ]; };\n\
             single = pkgs.dockerTools.buildImage { name = \"single\"; contents = [ names ]; };\n",
        );
        let names = a.build("names");
        let inside = names.trim_start_matches('/');
        for attr in ["layered", "single"] {
            let image = a.build(attr);
            let entries = layer_entries(&std::fs::read(a.physical(&image)).expect("read the image"));
            let find = |path: &[u8]| entries.iter().filter(|e| e.1 == path).collect::<Vec<_>>();
            let stored = |name: &[u8]| [inside.as_bytes(), b"/bin/", name].concat();
            for (name, contents) in [(&b"caf\xe9"[..], &b"e9"[..]), (b"caf\xe8", b"e8")] {
                let found = find(&stored(name));
                assert_eq!(found.len(), 1, "{who:?}: {attr}: {:?} in the store layer", String::from_utf8_lossy(name));
                assert_eq!(found[0].3, contents, "{who:?}: {attr}");
                // At the image's root, a link to each, by its own name.
                let linked = find(&[b"bin/", name].concat());
                assert_eq!(linked.len(), 1, "{who:?}: {attr}: bin/{:?}", String::from_utf8_lossy(name));
                assert_eq!(linked[0].2.as_deref(), Some(&[names.as_bytes(), b"/bin/", name].concat()[..]), "{who:?}");
            }
            let link = find(&stored(b"link\xfe"));
            assert_eq!(link.len(), 1, "{who:?}: {attr}: the link");
            assert_eq!(link[0].2.as_deref(), Some(&b"caf\xe9"[..]), "{who:?}: {attr}: the link's target");
            // Nothing was turned into U+FFFD.
            let replaced = |bytes: &[u8]| bytes.windows(3).any(|w| w == "\u{fffd}".as_bytes());
            assert!(
                !entries.iter().any(|e| replaced(&e.1) || e.2.as_deref().is_some_and(replaced)),
                "{who:?}: {attr}: a name was made U+FFFD"
            );
        }
    }
}
