//! `mirror://NAME/PATH` URLs, as Nix's fetchurl has them: a recipe names a
//! file on a distribution's archive without naming a host, and the host's
//! own configuration says which servers to ask. Only `debian` is known: its
//! mirrors are the `http(s)` URIs of the apt sources configured on this
//! machine (`/etc/apt/sources.list` and `sources.list.d/*.list` in the
//! one-line format, `sources.list.d/*.sources` in deb822), in that order.
//! The file's hash, checked after the download, is what makes any mirror
//! as good as another.

use std::path::Path;

/// Where apt keeps its sources on every Debian-like system.
const APT_SOURCES: &str = "/etc/apt";

/// The URLs to try, in order, for `mirror://<rest>` (`rest` is
/// `NAME/PATH`), or why there are none.
pub fn candidates(rest: &str) -> Result<Vec<String>, String> {
    candidates_in(rest, Path::new(APT_SOURCES))
}

fn candidates_in(rest: &str, apt_dir: &Path) -> Result<Vec<String>, String> {
    let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
    if path.is_empty() || path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(format!("'mirror://{rest}' must name a file, like mirror://debian/pool/main/…"));
    }
    if name != "debian" {
        return Err(format!("unknown mirror '{name}' in 'mirror://{rest}': mini knows mirror://debian/…"));
    }
    let bases = apt_uris(apt_dir);
    if bases.is_empty() {
        return Err(format!(
            "no Debian mirror is configured on this machine for 'mirror://{rest}': \
             add an http(s) source to apt ({}/sources.list or sources.list.d/)",
            apt_dir.display()
        ));
    }
    Ok(bases.iter().map(|base| format!("{}/{path}", base.trim_end_matches('/'))).collect())
}

/// The distinct `http(s)` URIs of the apt sources under `apt_dir`.
fn apt_uris(apt_dir: &Path) -> Vec<String> {
    let mut texts: Vec<(bool, String)> = Vec::new();
    if let Ok(text) = std::fs::read_to_string(apt_dir.join("sources.list")) {
        texts.push((false, text));
    }
    if let Ok(entries) = std::fs::read_dir(apt_dir.join("sources.list.d")) {
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let deb822 = match path.extension().and_then(|e| e.to_str()) {
                Some("sources") => true,
                Some("list") => false,
                _ => continue,
            };
            if let Ok(text) = std::fs::read_to_string(&path) {
                texts.push((deb822, text));
            }
        }
    }
    let mut uris: Vec<String> = Vec::new();
    for (deb822, text) in texts {
        let found = if deb822 { deb822_uris(&text) } else { one_line_uris(&text) };
        for uri in found {
            if !uris.contains(&uri) {
                uris.push(uri);
            }
        }
    }
    uris
}

fn is_http(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// The URIs of `deb`/`deb-src` lines: `deb [options] URI suite [component…]`.
fn one_line_uris(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb-src ").or_else(|| line.strip_prefix("deb ")) else { continue };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(options) => options.split_once(']').map_or("", |(_, after)| after),
            None => rest,
        };
        if let Some(uri) = rest.split_whitespace().next().filter(|u| is_http(u)) {
            uris.push(uri.to_string());
        }
    }
    uris
}

/// The `URIs:` of the enabled stanzas of a deb822 `.sources` file.
fn deb822_uris(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for stanza in text.split("\n\n") {
        let mut enabled = true;
        let mut found = Vec::new();
        for line in stanza.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.split_once(':') else { continue };
            match key.trim().to_ascii_lowercase().as_str() {
                "enabled" => enabled = !value.trim().eq_ignore_ascii_case("no"),
                "uris" => found.extend(value.split_whitespace().filter(|u| is_http(u)).map(String::from)),
                _ => {}
            }
        }
        if enabled {
            uris.extend(found);
        }
    }
    uris
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Scratch;

    #[test]
    fn one_line_sources_give_their_http_uris() {
        let text = "# comment\n\
                    deb http://a.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] https://b.example/debian bookworm main # trailing\n\
                    deb-src http://c.example/debian bookworm main\n\
                    deb file:/srv/local ./\n\
                    deb cdrom:[Debian]/ bookworm main\n\
                    rpm http://d.example/x\n";
        assert_eq!(
            one_line_uris(text),
            ["http://a.example/debian", "https://b.example/debian", "http://c.example/debian"]
        );
    }

    #[test]
    fn deb822_sources_skip_disabled_stanzas() {
        let text = "Types: deb\nURIs: http://a.example/debian http://b.example/debian\nSuites: bookworm\n\n\
                    Types: deb\nEnabled: no\nURIs: http://off.example/debian\n\n\
                    # a comment: with a colon\nTypes: deb\nuris: https://c.example/debian-security\n";
        assert_eq!(
            deb822_uris(text),
            ["http://a.example/debian", "http://b.example/debian", "https://c.example/debian-security"]
        );
    }

    #[test]
    fn mirror_urls_are_built_from_the_apt_sources_in_order() {
        let scratch = Scratch::new("mirrors");
        let dir = &scratch.0;
        std::fs::create_dir_all(dir.join("sources.list.d")).unwrap();
        std::fs::write(dir.join("sources.list"), "deb http://one.example/debian/ bookworm main\n").unwrap();
        std::fs::write(dir.join("sources.list.d/b.sources"), "Types: deb\nURIs: http://two.example/debian\n").unwrap();
        std::fs::write(dir.join("sources.list.d/a.list"), "deb http://one.example/debian/ bookworm-updates main\n")
            .unwrap();
        std::fs::write(dir.join("sources.list.d/ignored.save"), "deb http://no.example/ x\n").unwrap();
        assert_eq!(
            candidates_in("debian/pool/main/b/bmake/b.tar.gz", dir).unwrap(),
            [
                "http://one.example/debian/pool/main/b/bmake/b.tar.gz",
                "http://two.example/debian/pool/main/b/bmake/b.tar.gz"
            ]
        );
        assert!(candidates_in("gnu/make/make.tar.gz", dir).unwrap_err().contains("unknown mirror 'gnu'"));
        assert!(candidates_in("debian/pool/../x", dir).unwrap_err().contains("must name a file"));
        assert!(candidates_in("debian", dir).unwrap_err().contains("must name a file"));
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(candidates_in("debian/pool/x", &empty).unwrap_err().contains("no Debian mirror is configured"));
    }
}
