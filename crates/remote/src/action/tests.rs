use super::*;

fn path(base: &str) -> StorePath {
    StorePath::parse_base_name(base).unwrap()
}

fn inputs() -> Vec<InputPath> {
    let lib = path("00000000000000000000000000000001-lib");
    let drv = path("00000000000000000000000000000002-app.drv");
    vec![
        InputPath { path: drv.clone(), digest: Digest::of(b"drv"), references: BTreeSet::from([lib.clone()]) },
        InputPath { path: lib.clone(), digest: Digest::of(b"lib"), references: BTreeSet::from([lib.clone()]) },
    ]
}

fn message<M: prost::Message + Default>(prepared: &Prepared, digest: &Digest) -> M {
    let (_, bytes) = prepared.messages.iter().find(|(d, _)| d == digest).expect("the message is among those sent");
    M::decode(bytes.as_slice()).unwrap()
}

#[test]
fn an_action_reads_back_as_what_was_sent_whatever_the_input_order() {
    let drv = path("00000000000000000000000000000002-app.drv");
    let out = path("00000000000000000000000000000003-app");
    let prepared = prepare(&drv, std::slice::from_ref(&out), &inputs(), None);
    let mut reversed = inputs();
    reversed.reverse();
    assert_eq!(prepare(&drv, std::slice::from_ref(&out), &reversed, None).action, prepared.action);

    let action: re::Action = message(&prepared, &prepared.action);
    let command: re::Command = message(&prepared, &Digest::required(action.command_digest.as_ref(), "c").unwrap());
    assert_eq!(read_command(&action, &command).unwrap(), Requested { drv_path: drv.clone(), outputs: vec![out] });
    let root: re::Directory = message(&prepared, &Digest::required(action.input_root_digest.as_ref(), "r").unwrap());
    let mini: re::Directory = message(&prepared, &subdirectory(&root, "mini").unwrap());
    let store: re::Directory = message(&prepared, &subdirectory(&mini, "store").unwrap());
    let nars = read_store_dir(&store).unwrap();
    let manifest_digest = file(&mini, MANIFEST).unwrap();
    let (_, manifest) = prepared.messages.iter().find(|(d, _)| *d == manifest_digest).unwrap();
    let mut read = read_manifest(std::str::from_utf8(manifest).unwrap(), &nars).unwrap();
    read.sort_by(|a, b| a.path.cmp(&b.path));
    let mut sent = inputs();
    sent.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(read, sent);
}

#[test]
fn a_timeout_or_another_input_is_another_action() {
    let drv = path("00000000000000000000000000000002-app.drv");
    let out = path("00000000000000000000000000000003-app");
    let base = prepare(&drv, std::slice::from_ref(&out), &inputs(), None).action;
    let timed = prepare(&drv, std::slice::from_ref(&out), &inputs(), Some(Duration::from_secs(60))).action;
    let mut changed = inputs();
    changed[1].digest = Digest::of(b"lib, changed");
    let other = prepare(&drv, std::slice::from_ref(&out), &changed, None).action;
    assert_ne!(base, timed);
    assert_ne!(base, other);
}

#[test]
fn commands_mini_does_not_send_are_refused() {
    let action = re::Action::default();
    let good = |args: &[&str], outputs: &[&str]| re::Command {
        arguments: args.iter().map(|a| a.to_string()).collect(),
        output_paths: outputs.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    let drv = "/mini/store/00000000000000000000000000000002-app.drv";
    let out = "mini/store/00000000000000000000000000000003-app.nar";
    assert!(read_command(&action, &good(&["mini", BUILD_DERIVATION, drv], &[out])).is_ok());
    for command in [
        good(&["sh", "-c", "rm -rf /"], &[out]),
        good(&["mini", BUILD_DERIVATION, "/etc/passwd"], &[out]),
        good(&["mini", BUILD_DERIVATION, "/mini/store/00000000000000000000000000000002-app"], &[out]),
        good(&["mini", BUILD_DERIVATION, drv], &[]),
        good(&["mini", BUILD_DERIVATION, drv], &["../../etc/passwd"]),
        good(&["mini", BUILD_DERIVATION, drv], &["mini/store/../x.nar"]),
    ] {
        assert!(matches!(read_command(&action, &command), Err(RemoteError::Refused(_))), "{:?}", command.arguments);
    }
    let networked = re::Action {
        platform: Some(re::Platform {
            properties: vec![re::platform::Property { name: "network".into(), value: "full".into() }],
        }),
        ..Default::default()
    };
    assert!(read_command(&networked, &good(&["mini", BUILD_DERIVATION, drv], &[out])).is_err());
}

#[test]
fn an_input_root_that_disagrees_with_its_manifest_is_refused() {
    let lib = path("00000000000000000000000000000001-lib");
    let nars = BTreeMap::from([(lib.clone(), Digest::of(b"lib"))]);
    assert!(read_manifest("00000000000000000000000000000001-lib\n", &nars).is_ok());
    for bad in [
        "",
        "00000000000000000000000000000001-lib\n00000000000000000000000000000001-lib\n",
        "00000000000000000000000000000001-lib 00000000000000000000000000000009-other\n",
        "00000000000000000000000000000009-other\n",
        "../../etc\n",
    ] {
        assert!(read_manifest(bad, &nars).is_err(), "{bad:?}");
    }
    let link = re::Directory {
        symlinks: vec![re::SymlinkNode { name: "x.nar".into(), target: "/etc".into(), ..Default::default() }],
        ..Default::default()
    };
    assert!(read_store_dir(&link).is_err());
    let odd = re::Directory {
        files: vec![re::FileNode {
            name: "passwd".into(),
            digest: Some(Digest::of(b"").to_proto()),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(read_store_dir(&odd).is_err());
}
