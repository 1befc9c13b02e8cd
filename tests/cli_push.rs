//! `mini push` end to end, against a real registry (Debian's
//! `docker-registry`, started here on a free port with its storage in a
//! scratch directory): the pushed image pulls back with skopeo as it was
//! built, a re-push after one package changed uploads only what changed,
//! and htpasswd authentication works without leaking the password.
//!
//! docker-registry, skopeo and htpasswd are Debian packages installed by
//! `scripts/install-prerequisites`: a missing one skips the test, with a
//! message, except under `CI=true`, where it fails it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::clients::{have, json, run};
use common::registry::{self, Options, Registry};
use common::{mini_at, ok, succeeded, text, Scratch};

/// Whether the registry and the tools these tests use are installed.
fn tools() -> bool {
    registry::installed() && have(&["skopeo", "htpasswd"])
}

/// A copy of examples/quotes in `dir`, with `quotes` as its quotes file.
fn quotes_flake(dir: &Path, quotes: &str) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quotes");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(example.join("flake.nixlike"), dir.join("flake.nixlike")).unwrap();
    std::fs::write(dir.join("quotes.txt"), quotes).unwrap();
    dir.to_path_buf()
}

/// Runs `mini push --insecure` (plain HTTP) with no registry credentials but `env`.
fn push(store: &Path, dir: &Path, image: &str, dest: &str, env: &[(&str, &str)]) -> Output {
    push_with(store, dir, &["--insecure"], image, dest, env)
}

/// Runs `mini push FLAGS IMAGE DEST` with no registry credentials but `env`.
fn push_with(store: &Path, dir: &Path, flags: &[&str], image: &str, dest: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mini"));
    command.arg("--store").arg(store).arg("push").args(flags).args([image, dest]).current_dir(dir);
    command.env_remove("MINI_REGISTRY_USER").env_remove("MINI_REGISTRY_PASSWORD").env("HOME", store);
    command.envs(env.iter().copied());
    command.output().expect("run mini")
}

/// The `(outcome, digest, size)` of each blob line of a push's output.
fn blob_lines(out: &str) -> Vec<(String, String, u64)> {
    out.lines()
        .filter_map(|line| {
            let [outcome, digest, size] = line.split(' ').collect::<Vec<_>>().try_into().ok()?;
            ["exists", "mounted", "uploaded"]
                .contains(&outcome)
                .then(|| (outcome.to_string(), digest.to_string(), size.parse().unwrap()))
        })
        .collect()
}

/// The number of bytes the push's last line says were sent.
fn bytes_sent(out: &str) -> u64 {
    let last = out.lines().last().unwrap();
    last.rsplit(": ").next().unwrap().trim_end_matches(" bytes sent").parse().unwrap()
}

fn read_json(path: &Path) -> Value {
    json(&std::fs::read_to_string(path).unwrap())
}

/// The config digest and config of the single image in an OCI layout.
fn oci_config(layout: &Path) -> (String, Value) {
    let blob = |digest: &str| layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let index = read_json(&layout.join("index.json"));
    let manifest = read_json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let config = read_json(&blob(&config_digest));
    (config_digest, config)
}

#[test]
fn pushed_images_pull_back_and_repushes_send_only_what_changed() {
    if !tools() {
        return;
    }
    let scratch = Scratch::new("push");
    let store = scratch.0.join("store");
    let registry = Registry::start(&scratch.0);
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));

    let first = succeeded(&push(&store, project, "./examples/quotes#docker", &registry.url("quotes:latest"), &[]));
    let blobs = blob_lines(&first);
    assert!(blobs.len() >= 3, "a config and layers:\n{first}");
    assert!(blobs.iter().all(|(outcome, _, _)| outcome == "uploaded"), "a first push uploads everything:\n{first}");
    let uploaded: u64 = blobs.iter().map(|b| b.2).sum();
    assert!(bytes_sent(&first) > uploaded, "bytes sent count the blobs and the manifest:\n{first}");

    // What the registry serves is what was built: same config, same layers.
    let layout = scratch.0.join("pulled");
    let src = format!("{}:latest", registry.url("quotes"));
    run("skopeo", &["copy", "--src-tls-verify=false", &src, &format!("oci:{}:latest", layout.display())]);
    let (config_digest, config) = oci_config(&layout);
    assert_eq!(config_digest, blobs[0].1, "the config goes up unchanged, first");
    let built = ok(&mini_at(&store, project, &["build", "./examples/quotes#docker", "--no-link", "--print-out-paths"]));
    let archive = store.join("store").join(built.trim_start_matches("/mini/store/"));
    let local = json(&run("skopeo", &["inspect", "--config", &format!("docker-archive:{}", archive.display())]));
    assert_eq!(config["rootfs"]["diff_ids"], local["rootfs"]["diff_ids"]);

    // Nothing changed: nothing but the manifest goes up.
    let again = succeeded(&push(&store, project, "./examples/quotes#docker", &registry.url("quotes:latest"), &[]));
    assert!(blob_lines(&again).iter().all(|(outcome, _, _)| outcome == "exists"), "{again}");

    // One package changed: only its layers and the config go up; busybox,
    // the largest layer, stays.
    let changed = quotes_flake(&scratch.0.join("quotes"), "Don't Panic.\nA towel is about the most useful thing.\n");
    let second = succeeded(&push(&store, &changed, ".#docker", &registry.url("quotes:latest"), &[]));
    let lines = blob_lines(&second);
    let sent: Vec<_> = lines.iter().filter(|(outcome, _, _)| outcome == "uploaded").collect();
    let largest = blobs.iter().map(|b| b.2).max().unwrap();
    assert!(!sent.is_empty() && sent.len() < lines.len(), "some but not all blobs go up:\n{second}");
    assert!(sent.iter().all(|b| b.2 < largest), "the busybox layer is not uploaded again:\n{second}");
    assert!(bytes_sent(&second) < 64 * 1024, "a one-package change sends little:\n{second}");
    let manifest_size: u64 =
        second.lines().find_map(|l| l.strip_prefix("manifest ")).unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(bytes_sent(&second), sent.iter().map(|b| b.2).sum::<u64>() + manifest_size);

    // Another repository on the same registry mounts instead of uploading.
    let other = succeeded(&push(&store, &changed, ".#docker", &registry.url("other:v1"), &[]));
    assert!(blob_lines(&other).iter().all(|(outcome, _, _)| outcome == "mounted"), "{other}");
}

/// Runs `openssl ARGS` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
}

#[test]
fn https_registries_with_their_own_authority_are_trusted_through_ssl_cert_file() {
    if !tools() || !have(&["openssl"]) {
        return;
    }
    let scratch = Scratch::new("push-tls");
    let pki = scratch.0.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    // A private CA, and a certificate it signs for the registry's address.
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &pki,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=mini test CA"],
        ]
        .concat(),
    );
    openssl(
        &pki,
        &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat(),
    );
    std::fs::write(
        pki.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &pki,
        &["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"]
            .into_iter()
            .chain(["-out", "server.crt", "-days", "2", "-extfile", "ext.cnf"])
            .collect::<Vec<_>>(),
    );
    let registry = Registry::start_with(
        &scratch.0,
        Options { tls: Some((&pki.join("server.crt"), &pki.join("server.key"))), ..Options::default() },
    );
    let store = scratch.0.join("store");
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dest = registry.url("hello:1");

    // HTTPS is the default, and an unknown authority is refused, saying how to trust it.
    let refused = push_with(&store, project, &[], "./examples/hello#docker", &dest, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("UnknownIssuer") && stderr.contains("SSL_CERT_FILE"), "{stderr}");

    let ca = pki.join("ca.crt");
    let pushed = succeeded(&push_with(
        &store,
        project,
        &[],
        "./examples/hello#docker",
        &dest,
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    ));
    let manifest = pushed
        .lines()
        .find_map(|l| l.strip_prefix("manifest "))
        .expect("a manifest line")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    // skopeo, trusting the same CA (its --cert-dir takes CAs as *.crt, and
    // keys as client keys, so the CA gets a directory of its own), sees
    // that manifest over HTTPS.
    let trust = scratch.0.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(&ca, trust.join("ca.crt")).unwrap();
    let seen = json(&run("skopeo", &["inspect", "--cert-dir", trust.to_str().unwrap(), &dest]));
    assert_eq!(seen["Digest"], manifest.as_str(), "{seen}");

    let bad_bundle = scratch.0.join("empty.pem");
    std::fs::write(&bad_bundle, "not a certificate\n").unwrap();
    let refused = push_with(
        &store,
        project,
        &[],
        "./examples/hello#docker",
        &dest,
        &[("SSL_CERT_FILE", bad_bundle.to_str().unwrap())],
    );
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("empty.pem' (from SSL_CERT_FILE): it holds no certificate"), "{stderr}");
}

#[test]
fn htpasswd_registries_take_the_right_password_only() {
    if !tools() {
        return;
    }
    let scratch = Scratch::new("push-auth");
    let store = scratch.0.join("store");
    let password = "pw-for-mini-tests-7f3a";
    let htpasswd = scratch.0.join("htpasswd");
    std::fs::write(&htpasswd, run("htpasswd", &["-Bbn", "tester", password])).unwrap();
    let auth = format!("  htpasswd:\n    realm: mini-test\n    path: {}\n", htpasswd.display());
    let registry = Registry::start_with(&scratch.0, Options { auth: Some(&auth), ..Options::default() });
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dest = registry.url("quotes:latest");
    let no_leak = |out: &Output| {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!all.contains(password) && !all.contains("wrong-password"), "a password is printed:\n{all}");
        all
    };

    let anonymous = push(&store, project, "./examples/quotes#docker", &dest, &[]);
    assert!(!anonymous.status.success());
    assert!(no_leak(&anonymous).contains(&format!("error: authentication failed for {}", registry.host)));

    let wrong = [("MINI_REGISTRY_USER", "tester"), ("MINI_REGISTRY_PASSWORD", "wrong-password")];
    let refused = push(&store, project, "./examples/quotes#docker", &dest, &wrong);
    assert_eq!(refused.status.code(), Some(1));
    let all = no_leak(&refused);
    assert!(all.contains(&format!("authentication failed for {}: check MINI_REGISTRY_USER", registry.host)), "{all}");

    let right = [("MINI_REGISTRY_USER", "tester"), ("MINI_REGISTRY_PASSWORD", password)];
    let pushed = push(&store, project, "./examples/quotes#docker", &dest, &right);
    no_leak(&pushed);
    assert!(succeeded(&pushed).contains(&format!("pushed {dest}:")));

    // The same credentials from ~/.docker/config.json (HOME is the store).
    std::fs::create_dir_all(store.join(".docker")).unwrap();
    let auth = run("sh", &["-c", &format!("printf %s 'tester:{password}' | base64 -w0")]);
    let config = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host);
    std::fs::write(store.join(".docker/config.json"), config).unwrap();
    let from_config = push(&store, project, "./examples/quotes#docker", &dest, &[]);
    no_leak(&from_config);
    succeeded(&from_config);
}
