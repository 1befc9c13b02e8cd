//! `mini sbom` end to end: a flake with a fetched source (a `file://` URL),
//! a `fetchPypi` wheel, a runtime reference chain and a vendored Go module
//! list is built, and its CycloneDX and SPDX documents are checked —
//! components, versions, the fetched URL and hashes, purls, dependencies
//! along the references — validated by
//! the real validators (cyclonedx-python-lib's JSON schema validator and
//! spdx-tools' `pyspdxtools`), and shown byte-identical from a second store
//! in another directory. `mini push --sbom` attaches the document to a
//! pushed image on a real registry (Debian's `docker-registry`).
//!
//! The validators live in the virtual environment
//! `scripts/install-prerequisites` makes (`$MINI_SBOM_VENV`, else
//! `~/.cache/mini/sbom-venv`); without it, or without the registry, those
//! checks are skipped with a message, except under `CI=true`, where they fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};

mod common;
use common::clients::{ci, json};
use common::registry::{self, Registry};
use common::{failed, flake_with, have_busybox, nix_string, ok, succeeded, text, Scratch};

/// Runs `mini --store STORE ARGS…` in `dir`, allowed to read `file://`
/// URLs below `mirror`, with a scratch HOME (no config file, no registry
/// credentials).
fn mini(store: &Path, dir: &Path, mirror: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mini"))
        .arg("--store")
        .arg(store)
        .args(args)
        .current_dir(dir)
        .env("MINI_ALLOWED_FILE_URLS", mirror)
        .env("HOME", store.parent().unwrap())
        .env_remove("MINI_REGISTRY_USER")
        .env_remove("MINI_REGISTRY_PASSWORD")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("run mini")
}

/// The name of the wheel the flake fetches with `fetchPypi`.
const WHEEL: &str = "tiny_pkg-1.0-py3-none-any.whl";

/// The flake: `app-2.3` refers to `lib-1.0`, which refers to `base-0.1`;
/// app copies the fetched `src.txt` and reads a wheel (so both are build
/// inputs, not references) and ships a `vendor/modules.txt`; `image` packs
/// app. `sources` are the `file://` URL and sha256 of src.txt and the
/// wheel's sha256.
fn write_flake(dir: &Path, (url, sha256, wheel_sha256): (&str, &str, &str)) {
    // A Nix string of the script, interpolating the store paths it names.
    let script = |s: &str| nix_string(s).replace("\\${", "${");
    let extra = format!(
        "  src = pkgs.fetchurl {{ url = \"{url}\"; sha256 = \"{sha256}\"; }};\n\
         \x20 wheel = pkgs.fetchPypi {{ pname = \"tiny-pkg\"; version = \"1.0\"; sha256 = \"{wheel_sha256}\"; }};\n\
         \x20 base = sh \"base-0.1\" {base};\n\
         \x20 lib = sh \"lib-1.0\" {lib};\n\
         \x20 app = sh \"app-2.3\" {app};\n\
         \x20 image = pkgs.dockerTools.buildLayeredImage {{ name = \"sbom-app\"; tag = \"v1\"; contents = [ app ]; }};\n\
         \x20 embedded = pkgs.dockerTools.streamLayeredImage {{ name = \"sbom-app\"; contents = [ app ]; sbom = true; }};\n\
         \x20 embeddedSpdx = pkgs.dockerTools.streamLayeredImage {{ name = \"sbom-app\"; contents = [ app ]; sbom = \"spdx\"; }};\n",
        base = script("mkdir -p $out && echo base > $out/base.txt"),
        lib = script("mkdir -p $out && echo ${base} > $out/lib.txt"),
        app = script(
            "mkdir -p $out/bin $out/vendor && echo ${lib} > $out/bin/app && cat ${src} > $out/data && test -s ${wheel} && \
             printf '# github.com/google/uuid v1.6.0\\n## explicit\\ngithub.com/google/uuid\\n' > $out/vendor/modules.txt"
        ),
    );
    flake_with(dir, &[], &extra);
}

/// Writes src.txt below `mirror` and a stand-in wheel beside it, adds the
/// wheel to `stores` (so `fetchPypi` finds it there and runs no pip), and
/// returns the flake's sources for [`write_flake`].
fn sources(s: &Scratch, stores: &[&Path]) -> (String, String, String) {
    let data = s.write("mirror/src.txt", "the source\n");
    let wheel = s.write(&format!("wheels/{WHEEL}"), "not really a zip");
    let sha256 = |file: &Path| format!("{:x}", Sha256::digest(std::fs::read(file).unwrap()));
    for store in stores {
        ok(&mini(store, &s.0, &s.0.join("mirror"), &["store", "add-fixed", wheel.to_str().unwrap()]));
    }
    (format!("file://{}", data.display()), sha256(&data), sha256(&wheel))
}

/// The built output path of `installable`.
fn out_path(store: &Path, dir: &Path, mirror: &Path, installable: &str) -> String {
    ok(&mini(store, dir, mirror, &["build", installable, "--no-link", "--print-out-paths"]))
}

/// Where the validators are: `$MINI_SBOM_VENV`, else `~/.cache/mini/sbom-venv`.
/// `None` (after saying so) skips validation; under CI it fails the test.
fn validators() -> Option<PathBuf> {
    let venv = match std::env::var_os("MINI_SBOM_VENV").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mini/sbom-venv"),
    };
    if venv.join("bin/python").is_file() && venv.join("bin/pyspdxtools").is_file() {
        return Some(venv);
    }
    assert!(!ci(), "the SBOM validators are required when CI=true: run scripts/install-prerequisites");
    eprintln!("skipping validation: no validators in {} (scripts/install-prerequisites)", venv.display());
    None
}

/// Validates a CycloneDX 1.5 document with cyclonedx-python-lib's strict
/// JSON validator, and checks that every purl parses.
fn validate_cyclonedx(venv: &Path, document: &str) {
    let program = "import sys, json\n\
        from cyclonedx.validation.json import JsonStrictValidator\n\
        from cyclonedx.schema import SchemaVersion\n\
        from packageurl import PackageURL\n\
        text = sys.stdin.read()\n\
        error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)\n\
        if error is not None:\n    sys.exit(f'invalid: {error}')\n\
        doc = json.loads(text)\n\
        for c in doc['components'] + [doc['metadata']['component']]:\n    PackageURL.from_string(c['purl'])\n";
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    child.stdin.take().unwrap().write_all(document.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cyclonedx-python-lib rejects the document:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Validates an SPDX 2.3 JSON file with `pyspdxtools -i`.
fn validate_spdx(venv: &Path, file: &Path) {
    let out = Command::new(venv.join("bin/pyspdxtools")).arg("-i").arg(file).output().expect("run pyspdxtools");
    assert!(
        out.status.success(),
        "pyspdxtools rejects {}:\n{}{}",
        file.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `dependsOn` of `reference` in a CycloneDX document.
fn depends_on(doc: &Value, reference: &str) -> Vec<String> {
    let entry = doc["dependencies"].as_array().unwrap().iter().find(|d| d["ref"] == reference);
    let entry = entry.unwrap_or_else(|| panic!("no dependencies entry for {reference}"));
    entry["dependsOn"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect()
}

fn component<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let found = doc["components"].as_array().unwrap().iter().find(|c| c["bom-ref"] == reference);
    found.unwrap_or_else(|| panic!("no component {reference} in {doc:#}"))
}

#[test]
fn sboms_list_the_closure_and_its_sources_validate_and_are_reproducible() {
    let s = Scratch::new("sbom");
    if !have_busybox(&s) {
        return;
    }
    let mirror = s.0.join("mirror");
    let (store, other) = (s.0.join("a/store"), s.0.join("b/deeper/store"));
    let (url, sha256, wheel_sha256) = sources(&s, &[&store, &other]);
    write_flake(&s.0.join("flake"), (&url, &sha256, &wheel_sha256));

    let cyclonedx = succeeded(&mini(&store, &s.0, &mirror, &["sbom", "./flake#app"]));
    let doc = json(&cyclonedx);
    let app = out_path(&store, &s.0, &mirror, "./flake#app");
    let lib = out_path(&store, &s.0, &mirror, "./flake#lib");
    let base = out_path(&store, &s.0, &mirror, "./flake#base");
    let src = out_path(&store, &s.0, &mirror, "./flake#src");
    let wheel = out_path(&store, &s.0, &mirror, "./flake#wheel");

    // The subject is the root, named and versioned by parseDrvName.
    let subject = &doc["metadata"]["component"];
    assert_eq!(subject["bom-ref"], app.as_str());
    assert_eq!((subject["name"].as_str(), subject["version"].as_str()), (Some("app"), Some("2.3")));
    assert_eq!(subject["type"], "application");
    assert_eq!(subject["hashes"][0]["alg"], "BLAKE3");
    let info = json(&ok(&mini(&store, &s.0, &mirror, &["path-info", "--json", &app])));
    let nar = info[0]["narHash"].as_str().unwrap();
    assert_eq!(nar.strip_prefix("blake3:"), subject["hashes"][0]["content"].as_str(), "the NAR hash");
    assert!(subject["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "mini:deriver" && p["value"].as_str().unwrap().ends_with("-app-2.3.drv")));

    // The reference chain, and the fetch and the Go module beside it.
    assert_eq!(component(&doc, &lib)["version"], "1.0");
    assert_eq!(component(&doc, &base)["version"], "0.1");
    let mut app_deps = depends_on(&doc, &app);
    app_deps.sort();
    let go = "pkg:golang/github.com/google/uuid@v1.6.0";
    let mut expected = vec![lib.clone(), src.clone(), wheel.clone(), go.to_string()];
    expected.sort();
    assert_eq!(app_deps, expected, "app refers to lib, was built from src and the wheel, vendors uuid");
    assert_eq!(depends_on(&doc, &lib), std::slice::from_ref(&base));
    assert!(depends_on(&doc, &base).is_empty());
    let fetched = component(&doc, &src);
    assert_eq!(fetched["type"], "file");
    assert_eq!(fetched["externalReferences"][0]["url"], url.as_str());
    let hashes = fetched["hashes"].as_array().unwrap();
    assert!(hashes.iter().any(|h| h["alg"] == "SHA-256" && h["content"] == sha256.as_str()), "{fetched:#}");
    let purl = fetched["purl"].as_str().unwrap();
    assert!(purl.contains(&format!("checksum=sha256:{sha256}")) && purl.contains("download_url=file://"), "{purl}");
    assert_eq!(component(&doc, go)["version"], "v1.6.0");
    let pypi = component(&doc, &wheel);
    assert_eq!((pypi["name"].as_str(), pypi["version"].as_str()), (Some("tiny-pkg"), Some("1.0")));
    assert_eq!(pypi["purl"], format!("pkg:pypi/tiny-pkg@1.0?file_name={WHEEL}"));
    assert!(pypi["hashes"].as_array().unwrap().iter().any(|h| h["content"] == wheel_sha256.as_str()));
    let components = doc["components"].as_array().unwrap();
    assert_eq!(components.len(), 5, "lib, base, src, the wheel, the module, and nothing else: {doc:#}");
    assert!(!cyclonedx.contains(store.to_str().unwrap()), "no physical store path in the document");

    // SPDX: the same facts as packages and relationships.
    let spdx_file = s.0.join("app.spdx.json");
    succeeded(&mini(
        &store,
        &s.0,
        &mirror,
        &["sbom", "--format", "spdx", "-o", spdx_file.to_str().unwrap(), "./flake#app"],
    ));
    let spdx = std::fs::read_to_string(&spdx_file).unwrap();
    let spdx_doc = json(&spdx);
    assert_eq!(spdx_doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    assert!(spdx_doc["documentNamespace"].as_str().unwrap().starts_with("urn:uuid:"));
    let packages = spdx_doc["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 6, "app and the five components");
    let id_of = |path: &str| {
        let p = packages.iter().find(|p| p["packageFileName"] == path).unwrap_or_else(|| panic!("no package {path}"));
        p["SPDXID"].as_str().unwrap().to_string()
    };
    let has = |from: &str, kind: &str, to: &str| {
        spdx_doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["spdxElementId"] == from && r["relationshipType"] == kind && r["relatedSpdxElement"] == to)
    };
    assert!(has("SPDXRef-DOCUMENT", "DESCRIBES", &id_of(&app)));
    assert!(has(&id_of(&app), "DEPENDS_ON", &id_of(&lib)));
    assert!(has(&id_of(&lib), "DEPENDS_ON", &id_of(&base)));
    assert!(has(&id_of(&app), "DEPENDS_ON", &id_of(&src)));

    if let Some(venv) = validators() {
        validate_cyclonedx(&venv, &cyclonedx);
        validate_spdx(&venv, &spdx_file);
    }

    // Another store, elsewhere, built from scratch: the same bytes. And
    // the result link names the same closure, so the same document.
    assert_eq!(succeeded(&mini(&other, &s.0, &mirror, &["sbom", "./flake#app"])), cyclonedx);
    let other_spdx = succeeded(&mini(&other, &s.0, &mirror, &["sbom", "--format", "spdx", "./flake#app"]));
    assert_eq!(other_spdx, spdx);
    succeeded(&mini(&other, &s.0, &mirror, &["build", "./flake#app"]));
    assert_eq!(succeeded(&mini(&other, &s.0, &mirror, &["sbom", "./result"])), cyclonedx);
    assert_eq!(succeeded(&mini(&other, &s.0, &mirror, &["sbom", &app])), cyclonedx);

    // What cannot be described says why.
    let missing = failed(&mini(&store, &s.0, &mirror, &["sbom", "./nowhere"]));
    assert!(missing.starts_with("error: "), "{missing}");
    let not_stored = s.write("image.tar", "not an image in the store");
    let refused = failed(&mini(
        &store,
        &s.0,
        &mirror,
        &["push", "--insecure", "--sbom", not_stored.to_str().unwrap(), "docker://127.0.0.1:9/x:latest"],
    ));
    assert!(refused.contains("is not in the store"), "{refused}");
}

#[test]
fn push_sbom_attaches_the_document_to_the_pushed_manifest() {
    let s = Scratch::new("sbom-push");
    if !have_busybox(&s) {
        return;
    }
    if !registry::installed() {
        return;
    }
    let mirror = s.0.join("mirror");
    let store = s.0.join("store");
    let (url, sha256, wheel_sha256) = sources(&s, &[&store]);
    write_flake(&s.0.join("flake"), (&url, &sha256, &wheel_sha256));
    let registry = Registry::start(&s.0);

    for (flag, media_type) in [("--sbom", "application/vnd.cyclonedx+json"), ("--sbom=spdx", "application/spdx+json")] {
        let destination = registry.url("sbom-app:v1");
        let pushed =
            succeeded(&mini(&store, &s.0, &mirror, &["push", "--insecure", flag, "./flake#image", &destination]));
        let manifest = pushed.lines().find_map(|l| l.strip_prefix("manifest ")).unwrap_or_else(|| panic!("{pushed}"));
        let manifest_digest = manifest.split(' ').next().unwrap();
        let hex = manifest_digest.strip_prefix("sha256:").unwrap();
        let tag = format!("sha256-{hex}.sbom");
        let attached = pushed.lines().find(|l| l.starts_with("sbom ")).unwrap_or_else(|| panic!("{pushed}"));
        assert!(attached.contains(&format!("attached to {manifest_digest} as sbom-app:{tag}")), "{attached}");

        let artifact = json(&text(&registry.get(&format!("/v2/sbom-app/manifests/{tag}"))));
        assert_eq!(artifact["subject"]["digest"], manifest_digest);
        assert_eq!(artifact["artifactType"], media_type);
        assert_eq!(artifact["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
        let layer = artifact["layers"][0]["digest"].as_str().unwrap();
        let blob = registry.get(&format!("/v2/sbom-app/blobs/{layer}"));
        let format = if flag == "--sbom" { "cyclonedx" } else { "spdx" };
        let expected = succeeded(&mini(&store, &s.0, &mirror, &["sbom", "--format", format, "./flake#image"]));
        assert_eq!(text(&blob), expected, "the attached document is `mini sbom` of the image");
        let document = json(&expected);
        let image = out_path(&store, &s.0, &mirror, "./flake#image");
        let app = out_path(&store, &s.0, &mirror, "./flake#app");
        let described: Vec<String> = match format {
            "cyclonedx" => vec![document["metadata"]["component"]["bom-ref"].as_str().unwrap().to_string()],
            _ => document["packages"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["packageFileName"].as_str().map(String::from))
                .collect(),
        };
        assert!(described.contains(&image), "the image is described: {described:?}");
        assert!(expected.contains(&app), "the image's closure holds app");
    }
}

#[test]
fn images_embed_a_valid_sbom_of_their_closure() {
    // `sbom = true`: the customisation layer holds the CycloneDX document
    // of the image's closure at /var/lib/db/sbom/image.cdx.json (SPDX at
    // image.spdx.json), valid, naming the packed paths and the fetches.
    let s = Scratch::new("sbom-embedded");
    if !have_busybox(&s) {
        return;
    }
    let mirror = s.0.join("mirror");
    let store = s.0.join("store");
    let (url, sha256, wheel_sha256) = sources(&s, &[&store]);
    write_flake(&s.0.join("flake"), (&url, &sha256, &wheel_sha256));
    let app = out_path(&store, &s.0, &mirror, "./flake#app");
    let venv = validators();
    for (attr, member) in
        [("embedded", "var/lib/db/sbom/image.cdx.json"), ("embeddedSpdx", "var/lib/db/sbom/image.spdx.json")]
    {
        let image = out_path(&store, &s.0, &mirror, &format!("./flake#{attr}"));
        let custom = store.join("store").join(image.trim_start_matches("/mini/store/")).join("customisation.tar");
        let bytes = std::fs::read(&custom).expect("the customisation layer");
        let mut archive = tar::Archive::new(&bytes[..]);
        let document = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find_map(|mut e| {
                (e.path().unwrap().to_str() == Some(member)).then(|| {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut e, &mut text).unwrap();
                    text
                })
            })
            .unwrap_or_else(|| panic!("{member} is not in the customisation layer"));
        assert!(document.contains(&app) && document.contains(&url), "the closure and its fetch are described");
        if let Some(venv) = &venv {
            if attr == "embedded" {
                validate_cyclonedx(venv, &document);
            } else {
                let file = s.write("embedded.spdx.json", &document);
                validate_spdx(venv, &file);
            }
        }
    }
}
