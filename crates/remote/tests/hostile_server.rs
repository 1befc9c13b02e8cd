//! The REAPI client against a server that lies: an in-process fake
//! ([`fake`]) answers the client's calls as each test chooses, and every
//! answer that fails a check must be refused whole, as
//! [`RemoteFailure::Unavailable`] (the scheduler then builds here), with
//! nothing left at the output's destination. A failing builder's answer is
//! [`RemoteFailure::Builder`] with its log; an honest answer restores the
//! very tree that was sent. The client's uploads are checked too: it asks
//! `FindMissingBlobs` and sends only what is missing.

mod fake;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fake::{BatchLie, ExecuteAnswer, FakeServer};
use mini_build::{BuildOptions, Builder, Event, Observer, RemoteExecutor, RemoteFailure, RemoteOutcome, RemoteRequest};
use mini_remote::action;
use mini_remote::client::RemoteBuilder;
use mini_remote::digest::Digest;
use mini_remote::proto::re;
use mini_store::derivation::{Derivation, Output};
use mini_store::nar;
use mini_store::store::{Store, TextFile};
use mini_store::store_path::StorePath;
use mini_store::testing::{snapshot, Scratch};

/// Large enough that every blob of these tests travels in batches.
const BIG_BATCH: i64 = 4 << 20;
/// Small enough that a blob over 512 bytes is read with ByteStream, and one
/// over 32 KiB written with it.
const SMALL_BATCH: i64 = 1024;

/// A store holding one derivation, a fake server, and a client of it.
struct Fixture {
    scratch: Scratch,
    store: Store,
    drv_path: StorePath,
    drv: Derivation,
    out: StorePath,
    /// Where the client must leave the output.
    dest: PathBuf,
    /// The derivation's other outputs, and where they go.
    others: Vec<(StorePath, PathBuf)>,
    server: FakeServer,
}

impl Fixture {
    fn new(tag: &str, max_batch: i64) -> Fixture {
        Fixture::with_builder(tag, max_batch, &["out"], |_| ("/bin/sh".into(), BTreeSet::new()))
    }

    /// A fixture whose derivation (with `outputs`, `out` among them) runs
    /// `sh -c 'echo local > $out'` with the program and inputs `builder`
    /// adds to the store.
    fn with_builder(
        tag: &str,
        max_batch: i64,
        outputs: &[&str],
        builder: impl FnOnce(&Store) -> (String, BTreeSet<StorePath>),
    ) -> Fixture {
        let scratch = Scratch::new(tag);
        let store = Store::open(&scratch.0.join("store")).expect("open the store");
        let (program, input_srcs) = builder(&store);
        let mut drv = Derivation {
            name: format!("hostile-{tag}"),
            outputs: outputs.iter().map(|o| (o.to_string(), Output { path: None, fixed: None })).collect(),
            input_drvs: BTreeMap::new(),
            input_srcs: input_srcs.clone(),
            system: "x86_64-linux".into(),
            builder: program,
            args: vec!["sh".into(), "-c".into(), "echo local > $out".into()],
            env: BTreeMap::new(),
        };
        let modulo = drv.hash_modulo(&mut |_| unreachable!("the derivation has no inputs"));
        drv.fill_output_paths(modulo).expect("output paths");
        let text = TextFile { name: format!("{}.drv", drv.name), text: drv.to_json(), references: input_srcs };
        let drv_path = store.add_texts(&[text]).expect("add the derivation").remove(0);
        assert_eq!(drv_path, drv.drv_path().unwrap());
        let out = drv.outputs["out"].path.clone().expect("the output's path");
        let outputs = scratch.0.join("outputs");
        fs::create_dir(&outputs).unwrap();
        let dest = outputs.join(out.base_name());
        let others = drv
            .outputs
            .iter()
            .filter(|(name, _)| *name != "out")
            .map(|(_, o)| {
                let path = o.path.clone().expect("the output's path");
                let dest = outputs.join(path.base_name());
                (path, dest)
            })
            .collect();
        let server = FakeServer::start(max_batch);
        Fixture { scratch, store, drv_path, drv, out, dest, others, server }
    }

    fn client(&self) -> RemoteBuilder {
        RemoteBuilder::connect(&self.server.endpoint(), None).expect("connect to the fake server")
    }

    fn request(&self) -> RemoteRequest<'_> {
        RemoteRequest {
            store: &self.store,
            drv_path: &self.drv_path,
            drv: &self.drv,
            inputs: &[],
            outputs: self.others.iter().cloned().chain([(self.out.clone(), self.dest.clone())]).collect(),
        }
    }

    fn run(&self) -> Result<RemoteOutcome, RemoteFailure> {
        self.client().execute(self.request())
    }

    /// The run must be refused, leave nothing at the destination and
    /// nothing changed anywhere else; its message.
    fn refused(&self) -> String {
        let before = snapshot(&self.scratch.0);
        let message = unavailable(self.run());
        assert!(fs::symlink_metadata(&self.dest).is_err(), "{} was left behind ({message})", self.dest.display());
        assert_eq!(snapshot(&self.scratch.0), before, "the refused answer changed files ({message})");
        message
    }

    /// An ActionResult naming `digest` as the output's NAR.
    fn result(&self, digest: re::Digest) -> re::ActionResult {
        re::ActionResult {
            output_files: vec![re::OutputFile {
                path: action::nar_file(&self.out),
                digest: Some(digest),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// The action cache answers with `bytes` as the output, honestly stored.
    fn cached(&self, bytes: &[u8]) -> Digest {
        let digest = self.server.put(bytes);
        self.server.state().action_cache = Some(self.result(digest.to_proto()));
        digest
    }
}

fn unavailable(result: Result<RemoteOutcome, RemoteFailure>) -> String {
    match result {
        Err(RemoteFailure::Unavailable(message)) => message,
        Err(RemoteFailure::Builder { status, .. }) => panic!("a builder failure ({status}), not a refusal"),
        Ok(outcome) => panic!("accepted (cached: {})", outcome.cached),
    }
}

/// A small tree, with an executable, a symlink and `filler` bytes of data,
/// written at `dir`; its NAR.
fn tree(dir: &Path, filler: usize) -> Vec<u8> {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(dir.join("bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    fs::set_permissions(dir.join("bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(dir.join("share")).unwrap();
    fs::write(dir.join("share/data"), (0..filler).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>()).unwrap();
    std::os::unix::fs::symlink("bin/hello", dir.join("hello")).unwrap();
    nar_of(dir)
}

fn nar_of(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    nar::dump_path(path, &mut bytes).expect("archive a tree");
    bytes
}

/// NAR framing: each string as its length and its bytes padded to 8.
fn nar_words(words: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in words {
        out.extend_from_slice(&(word.len() as u64).to_le_bytes());
        out.extend_from_slice(word);
        out.resize(out.len().div_ceil(8) * 8, 0);
    }
    out
}

/// A NAR of a directory with one file entry named `name`.
fn nar_with_entry(name: &[u8]) -> Vec<u8> {
    nar_words(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"(",
        b"name",
        name,
        b"node",
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"escaped",
        b")",
        b")",
        b")",
    ])
}

/// A NAR of `depth` directories, each the only entry of the one above.
fn nested(depth: usize) -> Vec<u8> {
    let mut out = nar_words(&[b"nix-archive-1"]);
    for _ in 0..depth {
        out.extend(nar_words(&[b"(", b"type", b"directory", b"entry", b"(", b"name", b"d", b"node"]));
    }
    out.extend(nar_words(&[b"(", b"type", b"directory", b")"]));
    for _ in 0..depth {
        out.extend(nar_words(&[b")", b")"]));
    }
    out
}

#[test]
fn an_output_that_does_not_match_its_digest_is_refused() {
    for max_batch in [BIG_BATCH, SMALL_BATCH] {
        let f = Fixture::new("mismatch", max_batch);
        let good = tree(&f.scratch.0.join("good"), 2000);
        let digest = f.cached(&good);
        let mut other = good.clone();
        let last = other.len() - 20;
        other[last] ^= 1;
        f.server.state().cas.insert(digest, other);
        let message = f.refused();
        assert!(message.contains("refused"), "{message}");
        assert!(message.contains(&digest.hex()), "{message}");
        // So is a valid archive of another tree.
        let other = tree(&f.scratch.0.join("other"), 2001);
        f.server.state().cas.insert(digest, other);
        let message = f.refused();
        assert!(message.contains("refused") && message.contains(&digest.hex()), "{message}");
        // Shorter bytes are refused as well.
        f.server.state().cas.insert(digest, good[..good.len() - 8].to_vec());
        let message = f.refused();
        assert!(message.contains("refused"), "{message}");
        assert!(f.server.state().read.contains(&digest));
        assert_eq!(f.server.state().streamed.contains(&digest), max_batch == SMALL_BATCH);
    }
}

#[test]
fn an_output_the_cas_does_not_hold_is_refused() {
    for max_batch in [BIG_BATCH, SMALL_BATCH] {
        let f = Fixture::new("missing", max_batch);
        let digest = Digest::of(&tree(&f.scratch.0.join("good"), 2000));
        f.server.state().action_cache = Some(f.result(digest.to_proto()));
        let message = f.refused();
        assert!(message.contains("refused") && message.contains("does not hold"), "{message}");
    }
}

#[test]
fn a_result_without_the_output_or_with_a_malformed_digest_is_refused() {
    let f = Fixture::new("malformed", BIG_BATCH);
    let good = tree(&f.scratch.0.join("good"), 100);
    let digest = f.server.put(&good);
    let wrong_name = re::ActionResult {
        output_files: vec![re::OutputFile {
            path: format!("mini/store/{}.nar", f.drv_path.base_name()),
            digest: Some(digest.to_proto()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let no_digest = re::ActionResult {
        output_files: vec![re::OutputFile { path: action::nar_file(&f.out), digest: None, ..Default::default() }],
        ..Default::default()
    };
    let upper = f.result(re::Digest { hash: digest.hex().to_uppercase(), size_bytes: digest.size as i64 });
    let negative = f.result(re::Digest { hash: digest.hex(), size_bytes: -(digest.size as i64) });
    let short = f.result(re::Digest { hash: digest.hex()[..40].to_string(), size_bytes: digest.size as i64 });
    let cases = [
        (re::ActionResult::default(), "has no output"),
        (wrong_name, "has no output"),
        (no_digest, "has no digest"),
        (upper, "malformed digest"),
        (negative, "malformed digest"),
        (short, "malformed digest"),
    ];
    for (result, expected) in cases {
        f.server.state().action_cache = Some(result);
        let message = f.refused();
        assert!(message.contains("refused") && message.contains(expected), "{message}");
    }
    // Nothing was read for answers that name no output to read.
    assert!(f.server.state().read.is_empty());
}

#[test]
fn an_output_that_is_not_a_valid_archive_is_refused_and_nothing_is_left() {
    let f = Fixture::new("not-nar", BIG_BATCH);
    let good = tree(&f.scratch.0.join("good"), 100);
    let mut truncated = good[..good.len() - 24].to_vec();
    truncated.extend_from_slice(&[0; 8]);
    // A directory whose first entries unpack before a broken one.
    let partial = {
        let mut bytes = good[..good.len() - 16].to_vec();
        bytes.extend_from_slice(&nar_words(&[b"entry", b"(", b"name", b"zz", b"node", b"(", b"type", b"fifo"]));
        bytes
    };
    let cases: Vec<Vec<u8>> = vec![
        b"this is not an archive".to_vec(),
        truncated,
        partial,
        nar_with_entry(b".."),
        nar_with_entry(b"."),
        nar_with_entry(b"../escaped"),
        nar_with_entry(b"a/b"),
        nar_with_entry(b""),
        nar_with_entry(b"nul\0name"),
        nested(5000),
    ];
    for bytes in cases {
        f.cached(&bytes);
        let message = f.refused();
        assert!(message.contains("refused") && message.contains("not a valid archive"), "{message}");
        assert!(!f.scratch.0.join("escaped").exists());
    }
}

#[test]
fn a_byte_stream_that_sends_more_than_the_blob_is_refused() {
    let f = Fixture::new("stream-extra", SMALL_BATCH);
    let good = tree(&f.scratch.0.join("good"), 5000);
    let digest = f.cached(&good);
    f.server.state().read_extra = b"and a little more".to_vec();
    let message = f.refused();
    assert!(message.contains("refused") && message.contains("more than"), "{message}");
    assert!(f.server.state().streamed.contains(&digest));
    // The same answer, honest, is taken.
    f.server.state().read_extra.clear();
    let outcome = f.run().unwrap_or_else(|e| panic!("refused: {}", unavailable(Err(e))));
    assert!(outcome.cached);
    assert_eq!(nar_of(&f.dest), good);
}

#[test]
fn an_execution_that_ends_in_an_error_or_an_odd_response_is_refused() {
    let f = Fixture::new("execute", BIG_BATCH);
    let cases = [
        (ExecuteAnswer::Error(tonic::Code::FailedPrecondition, "the bot fell over".into()), "the bot fell over"),
        (ExecuteAnswer::ResponseStatus(tonic::Code::PermissionDenied, "not yours".into()), "not yours"),
        (ExecuteAnswer::WrongType, "the operation's response is a"),
        (ExecuteAnswer::Empty, "neither a response nor an error"),
        (ExecuteAnswer::Result(Box::default()), "has no output"),
    ];
    for (answer, expected) in cases {
        f.server.state().execute = answer;
        let message = f.refused();
        assert!(message.contains(expected), "{message}");
    }
    // The ExecuteResponse must hold a result.
    f.server.state().execute = ExecuteAnswer::ResponseStatus(tonic::Code::Ok, String::new());
    let message = f.refused();
    assert!(message.contains("refused") && message.contains("has no result"), "{message}");
    assert_eq!(f.server.state().executed.len(), 6);
    // An error that may pass is tried again, a bounded number of times.
    f.server.state().execute = ExecuteAnswer::Error(tonic::Code::Unavailable, "the bots are away".into());
    let message = f.refused();
    assert!(message.contains("the bots are away"), "{message}");
    let executed = f.server.state().executed.len() - 6;
    assert!((2..=8).contains(&executed), "executed {executed} times");
}

#[test]
fn a_server_that_cannot_hash_with_sha256_is_refused_at_once() {
    let f = Fixture::new("md5", BIG_BATCH);
    f.server.state().digest_functions = vec![re::digest_function::Value::Md5 as i32];
    match RemoteBuilder::connect(&f.server.endpoint(), None) {
        Err(mini_remote::RemoteError::Unsupported(message)) => assert!(message.contains("SHA-256"), "{message}"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a server without SHA-256 was accepted"),
    }
}

#[test]
fn a_failing_builder_is_a_builder_failure_with_its_log() {
    let f = Fixture::new("builder", BIG_BATCH);
    f.server.state().execute = ExecuteAnswer::Result(Box::new(re::ActionResult {
        exit_code: 2,
        stdout_raw: b"compiling\nerror: it broke\n".to_vec(),
        stderr_raw: b"on stderr\n".to_vec(),
        ..Default::default()
    }));
    match f.run() {
        Err(RemoteFailure::Builder { status, log }) => {
            assert!(status.contains("exit code 2"), "{status}");
            assert_eq!(log, b"compiling\nerror: it broke\non stderr\n");
        }
        other => panic!("not a builder failure: {}", unavailable(other)),
    }
    assert!(fs::symlink_metadata(&f.dest).is_err());

    // A log kept in CAS is read from there, and checked.
    let log = b"a long log\n".repeat(10);
    let digest = f.server.put(&log);
    let failed = re::ActionResult { exit_code: 1, stdout_digest: Some(digest.to_proto()), ..Default::default() };
    f.server.state().execute = ExecuteAnswer::Result(Box::new(failed.clone()));
    match f.run() {
        Err(RemoteFailure::Builder { log: got, .. }) => assert_eq!(got, log),
        other => panic!("not a builder failure: {}", unavailable(other)),
    }
    // A failure in the action cache is a miss: the action is executed again.
    f.server.state().action_cache = Some(failed.clone());
    let before = f.server.state().executed.len();
    assert!(matches!(f.run(), Err(RemoteFailure::Builder { .. })));
    assert_eq!(f.server.state().executed.len(), before + 1, "a cached failure was believed");
    f.server.state().cas.insert(digest, b"another log\n".repeat(10)[..log.len()].to_vec());
    let message = f.refused();
    assert!(message.contains("refused") && message.contains("the build log"), "{message}");
}

#[test]
fn an_honest_answer_restores_the_tree_that_was_sent() {
    for (max_batch, filler) in [(BIG_BATCH, 100), (SMALL_BATCH, 100_000)] {
        let f = Fixture::new("honest", max_batch);
        let good = tree(&f.scratch.0.join("good"), filler);
        let digest = f.server.put(&good);
        let mut result = f.result(digest.to_proto());
        // Entries the client did not ask for are not written anywhere.
        result.output_files.push(re::OutputFile {
            path: "../../escaped".into(),
            digest: Some(digest.to_proto()),
            ..Default::default()
        });
        result.output_directories.push(re::OutputDirectory {
            path: "mini/store".into(),
            tree_digest: Some(digest.to_proto()),
            ..Default::default()
        });
        result.stdout_raw = b"built\n".to_vec();
        f.server.state().execute = ExecuteAnswer::Result(Box::new(result.clone()));
        let client = f.client();
        let outcome = client.execute(f.request()).unwrap_or_else(|e| panic!("refused: {}", unavailable(Err(e))));
        assert!(!outcome.cached);
        assert_eq!(outcome.log, b"built\n");
        assert_eq!(nar_of(&f.dest), good);
        assert_eq!(
            fs::read(f.dest.join("share/data")).unwrap(),
            fs::read(f.scratch.0.join("good/share/data")).unwrap()
        );
        assert!(!f.scratch.0.join("escaped").exists() && !f.scratch.0.parent().unwrap().join("escaped").exists());
        assert_eq!(f.server.state().streamed.contains(&digest), max_batch == SMALL_BATCH);
        let stats = client.stats();
        assert_eq!((stats.executed, stats.cached, stats.downloaded_bytes), (1, 0, digest.size));

        // The same answer from the action cache: nothing is executed.
        fs::remove_dir_all(&f.dest).unwrap();
        f.server.state().action_cache = Some(result);
        let executed = f.server.state().executed.len();
        let outcome = client.execute(f.request()).unwrap_or_else(|e| panic!("refused: {}", unavailable(Err(e))));
        assert!(outcome.cached);
        assert_eq!(nar_of(&f.dest), good);
        assert_eq!(f.server.state().executed.len(), executed);
        assert_eq!(client.stats().cached, 1);
    }
}

#[test]
fn only_the_blobs_the_cas_lacks_are_uploaded() {
    let f = Fixture::new("uploads", SMALL_BATCH);
    // An input large enough to be written with ByteStream, one small
    // enough for a batch, and one the CAS already holds.
    let sources = f.scratch.0.join("sources");
    fs::create_dir(&sources).unwrap();
    let mut inputs = Vec::new();
    for (name, size) in [("large", 100_000usize), ("small", 10), ("held", 10)] {
        let file = sources.join(name);
        fs::write(&file, name.repeat(size)).unwrap();
        inputs.push(f.store.add_path(&file, name).unwrap());
    }
    let held = f.server.put(&nar_of(&f.store.physical_path(&inputs[2])));
    let good = tree(&f.scratch.0.join("good"), 100);
    let digest = f.server.put(&good);
    f.server.state().execute = ExecuteAnswer::Result(Box::new(f.result(digest.to_proto())));
    let request = || RemoteRequest { inputs: &inputs, ..f.request() };

    let client = f.client();
    client.execute(request()).unwrap_or_else(|e| panic!("refused: {}", unavailable(Err(e))));
    let (asked, uploaded, action) = {
        let state = f.server.state();
        assert!(state.bad_uploads.is_empty(), "{:?}", state.bad_uploads);
        assert_eq!(state.asked.len(), 1, "one FindMissingBlobs");
        assert_eq!(state.executed.len(), 1);
        (fake::set(&state.asked[0]), state.uploaded.clone(), state.executed[0])
    };
    let nars: Vec<Digest> = inputs.iter().map(|p| Digest::of(&nar_of(&f.store.physical_path(p)))).collect();
    let drv_nar = Digest::of(&nar_of(&f.store.physical_path(&f.drv_path)));
    for wanted in nars.iter().chain([&drv_nar, &action]) {
        assert!(asked.contains(wanted), "FindMissingBlobs was not asked about {wanted}");
    }
    assert!(!uploaded.contains(&held), "a blob the CAS held was sent");
    assert_eq!(fake::set(&uploaded).len(), uploaded.len(), "a blob was sent twice");
    assert_eq!(fake::set(&uploaded), asked.iter().copied().filter(|d| *d != held).collect());
    assert_eq!(client.stats().uploaded_blobs, uploaded.len() as u64);
    assert_eq!(client.stats().uploaded_bytes, uploaded.iter().map(|d| d.size).sum::<u64>());

    // The same request again: the same action, nothing uploaded.
    fs::remove_dir_all(&f.dest).unwrap();
    client.execute(request()).unwrap_or_else(|e| panic!("refused: {}", unavailable(Err(e))));
    let state = f.server.state();
    assert_eq!(state.asked.len(), 2);
    assert_eq!(state.uploaded.len(), uploaded.len(), "the second run uploaded {:?}", &state.uploaded[uploaded.len()..]);
    assert_eq!(state.executed, vec![action, action]);
}

/// The remote events of a build, and the derivations built here.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<String>>);

impl Observer for Seen {
    fn event(&self, event: Event<'_>) {
        let line = match event {
            Event::RemoteFailed { message, .. } => format!("remote failed: {message}"),
            Event::RemoteCached { .. } => "remote cached".to_string(),
            Event::Built { .. } => "built".to_string(),
            _ => return,
        };
        self.0.lock().unwrap().push(line);
    }
}

/// The host's static busybox as a store path (`<path>/busybox`), if there is one.
fn busybox(store: &Store) -> Option<StorePath> {
    let host = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(Path::new).find(|p| p.is_file())?;
    let dir = store.root().join("busybox-source");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(host, dir.join("busybox")).unwrap();
    let path = store.add_path(&dir, "busybox").unwrap();
    fs::remove_dir_all(&dir).unwrap();
    Some(path)
}

/// A derivation run by busybox, or `None` (after saying why) when this
/// host has none; under CI a missing busybox fails.
fn busybox_fixture(tag: &str) -> Option<Fixture> {
    let mut found = true;
    let f = Fixture::with_builder(tag, BIG_BATCH, &["out"], |store| match busybox(store) {
        Some(path) => (format!("{path}/busybox"), BTreeSet::from([path])),
        None => {
            found = false;
            ("/bin/sh".into(), BTreeSet::new())
        }
    });
    if !found {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "a static busybox is required under CI");
        eprintln!("skipped: no static busybox on this host (apt-get install busybox-static)");
        return None;
    }
    Some(f)
}

#[test]
fn the_scheduler_builds_here_what_a_hostile_server_answered() {
    let Some(f) = busybox_fixture("scheduler-hostile") else { return };
    // The action cache names another tree's archive, and CAS serves
    // different bytes under its digest.
    let remote = f.scratch.0.join("remote");
    fs::write(&remote, "remote\n").unwrap();
    let digest = f.cached(&nar_of(&remote));
    let hostile = f.scratch.0.join("hostile");
    fs::write(&hostile, "hostile\n").unwrap();
    f.server.state().cas.insert(digest, nar_of(&hostile));
    let client = f.client();
    let seen = Seen::default();
    let options = BuildOptions { jobs: 1, ..Default::default() };
    let report =
        Builder::new(&f.store, options, &seen).with_remote(&client).realise(std::slice::from_ref(&f.drv_path), false);
    let report = report.unwrap_or_else(|e| panic!("the build failed: {e}"));
    assert!(report.failed.is_empty(), "{:?}", report.failed.iter().map(|(_, e)| e.to_string()).collect::<Vec<_>>());
    let seen = seen.0.into_inner().unwrap();
    assert!(seen[0].starts_with("remote failed: refused"), "{seen:?}");
    assert!(seen.contains(&"built".to_string()), "{seen:?}");
    assert!(f.store.is_valid(&f.out));
    assert_eq!(fs::read_to_string(f.store.physical_path(&f.out)).unwrap(), "local\n");
    assert_eq!(client.stats().cached, 0);
}

#[test]
fn the_scheduler_takes_an_honest_cached_answer() {
    let Some(f) = busybox_fixture("scheduler-honest") else { return };
    let remote = f.scratch.0.join("remote");
    fs::write(&remote, "remote\n").unwrap();
    f.cached(&nar_of(&remote));
    let client = f.client();
    let seen = Seen::default();
    let options = BuildOptions { jobs: 1, ..Default::default() };
    let report =
        Builder::new(&f.store, options, &seen).with_remote(&client).realise(std::slice::from_ref(&f.drv_path), false);
    let report = report.unwrap_or_else(|e| panic!("the build failed: {e}"));
    assert!(report.failed.is_empty());
    assert_eq!(seen.0.into_inner().unwrap(), vec!["remote cached".to_string()]);
    assert!(f.store.is_valid(&f.out));
    assert_eq!(fs::read_to_string(f.store.physical_path(&f.out)).unwrap(), "remote\n");
    assert_eq!(client.stats().cached, 1);
}

#[test]
fn a_server_that_takes_huge_batches_is_sent_no_more_than_the_client_may_encode() {
    let f = Fixture::new("huge-batch", 1 << 30);
    let file = f.scratch.0.join("large");
    fs::write(&file, vec![7u8; 66 << 20]).unwrap();
    let inputs = vec![f.store.add_path(&file, "large").unwrap()];
    fs::remove_file(&file).unwrap();
    let good = tree(&f.scratch.0.join("good"), 100);
    let digest = f.server.put(&good);
    f.server.state().execute = ExecuteAnswer::Result(Box::new(f.result(digest.to_proto())));
    let client = f.client();
    client
        .execute(RemoteRequest { inputs: &inputs, ..f.request() })
        .unwrap_or_else(|e| panic!("refused: {}", unavailable(Err(e))));
    assert!(f.server.state().bad_uploads.is_empty());
    assert_eq!(nar_of(&f.dest), good);
}

#[test]
fn a_batch_read_that_answers_another_blob_or_not_one_is_refused() {
    let f = Fixture::new("batch-lie", BIG_BATCH);
    let good = tree(&f.scratch.0.join("good"), 100);
    let digest = f.cached(&good);
    f.server.state().cas.insert(digest, b"other bytes".to_vec());
    f.server.state().batch_lie = BatchLie::OtherDigest;
    let message = f.refused();
    assert!(message.contains("refused") && message.contains("not asked for"), "{message}");
    f.server.state().cas.insert(digest, good);
    for (lie, expected) in [(BatchLie::Twice, "twice"), (BatchLie::Nothing, "did not answer")] {
        f.server.state().batch_lie = lie;
        let message = f.refused();
        assert!(message.contains("refused") && message.contains(expected), "{message}");
    }
}

#[test]
fn an_upload_answer_that_names_other_blobs_or_sizes_is_refused() {
    let f = Fixture::new("upload-lie", SMALL_BATCH);
    let file = f.scratch.0.join("large");
    fs::write(&file, "large".repeat(20_000)).unwrap();
    let inputs = vec![f.store.add_path(&file, "large").unwrap()];
    let good = tree(&f.scratch.0.join("good"), 100);
    let digest = f.server.put(&good);
    f.server.state().execute = ExecuteAnswer::Result(Box::new(f.result(digest.to_proto())));
    let run = || unavailable(f.client().execute(RemoteRequest { inputs: &inputs, ..f.request() }));

    f.server.state().missing_extra = Some(Digest::of(b"never asked about"));
    let message = run();
    assert!(message.contains("refused") && message.contains("not asked about"), "{message}");
    f.server.state().missing_extra = None;
    f.server.state().committed = Some(3);
    let message = run();
    assert!(message.contains("refused") && message.contains("committed 3 bytes"), "{message}");
    assert!(fs::symlink_metadata(&f.dest).is_err());
    assert!(f.server.state().executed.is_empty(), "an action was executed after a refused upload");
}

#[test]
fn only_an_execution_that_timed_out_is_a_timeout() {
    let f = Fixture::new("deadline", BIG_BATCH);
    // The action cache's own deadline says nothing of the build: it is
    // built here.
    f.server.state().action_cache_error = Some(tonic::Code::DeadlineExceeded);
    let message = f.refused();
    assert!(message.contains("GetActionResult") && message.contains("DeadlineExceeded"), "{message}");
    assert!(f.server.state().executed.is_empty());
    // An action that ran out of time fails the build.
    f.server.state().action_cache_error = None;
    f.server.state().execute = ExecuteAnswer::ResponseStatus(tonic::Code::DeadlineExceeded, "ran too long".into());
    match f.run() {
        Err(RemoteFailure::Builder { status, .. }) => assert!(status.contains("timed out"), "{status}"),
        other => panic!("not a builder failure: {}", unavailable(other)),
    }
    assert!(fs::symlink_metadata(&f.dest).is_err());
}

#[test]
fn a_result_missing_one_of_two_outputs_or_with_one_bad_one_leaves_neither() {
    let f = Fixture::with_builder("two-outputs", BIG_BATCH, &["dev", "out"], |_| ("/bin/sh".into(), BTreeSet::new()));
    let (dev, dev_dest) = f.others[0].clone();
    let good = tree(&f.scratch.0.join("good"), 100);
    let good_digest = f.server.put(&good);
    let output = |path: &StorePath, digest: Digest| re::OutputFile {
        path: action::nar_file(path),
        digest: Some(digest.to_proto()),
        ..Default::default()
    };
    // Only `out`.
    f.server.state().action_cache =
        Some(re::ActionResult { output_files: vec![output(&f.out, good_digest)], ..Default::default() });
    let message = f.refused();
    assert!(message.contains("has no output") && message.contains(&dev.base_name()), "{message}");
    // One good and one that is no archive, in either order of unpacking:
    // the good one is not kept either.
    let bad_digest = f.server.put(b"not an archive");
    for (dev_digest, out_digest) in [(bad_digest, good_digest), (good_digest, bad_digest)] {
        f.server.state().action_cache = Some(re::ActionResult {
            output_files: vec![output(&dev, dev_digest), output(&f.out, out_digest)],
            ..Default::default()
        });
        let message = f.refused();
        assert!(message.contains("not a valid archive"), "{message}");
        assert!(fs::symlink_metadata(&dev_dest).is_err());
    }
    // Both good: both restored.
    f.server.state().action_cache = Some(re::ActionResult {
        output_files: vec![output(&dev, good_digest), output(&f.out, good_digest)],
        ..Default::default()
    });
    f.run().unwrap_or_else(|e| panic!("refused: {}", unavailable(Err(e))));
    assert_eq!((nar_of(&dev_dest), nar_of(&f.dest)), (good.clone(), good));
}
