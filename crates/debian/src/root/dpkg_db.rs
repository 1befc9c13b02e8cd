//! The dpkg database of an assembled root (`var/lib/dpkg`), so that
//! `dpkg-query`, `apt` and scanners that read it (SBOM tools, vulnerability
//! scanners) see the packages as installed. Pure: the files' contents;
//! [`super::assemble`] writes them.

use crate::deb::Paragraph;

/// The `Status` field of an installed package.
pub const INSTALLED: &str = "install ok installed";

/// The `info/format` file: the layout of `info/` where a `Multi-Arch: same`
/// package's files are named `<name>:<arch>.*`; without it dpkg expects
/// the older layout and finds no files for such packages.
pub const INFO_FORMAT: &str = "1\n";

/// One installed package, as the database records it.
pub struct Installed<'a> {
    pub name: &'a str,
    pub architecture: &'a str,
    pub paragraph: &'a Paragraph,
}

/// The `status` file: one paragraph per package, sorted by name then
/// architecture, each its control paragraph with `Status:` right after
/// `Package:`, separated by one blank line, ending with a newline.
pub fn status(packages: &[Installed<'_>]) -> String {
    let mut sorted: Vec<&Installed<'_>> = packages.iter().collect();
    sorted.sort_by(|a, b| (a.name, a.architecture).cmp(&(b.name, b.architecture)));
    let paragraphs: Vec<String> =
        sorted.iter().map(|p| p.paragraph.render_with("Package", &[("Status", INSTALLED)])).collect();
    paragraphs.join("\n")
}

/// The base name of a package's files in `info/`: `<name>`, or
/// `<name>:<arch>` for a `Multi-Arch: same` package, as dpkg names them.
pub fn info_name(name: &str, architecture: &str, paragraph: &Paragraph) -> String {
    match paragraph.get("Multi-Arch") {
        Some(value) if value.eq_ignore_ascii_case("same") => format!("{name}:{architecture}"),
        _ => name.to_string(),
    }
}

/// A package's `.list` file: `/.`, then each of `paths` (as the archive
/// names them, `/usr/bin`, no trailing slash) on its own line.
pub fn list(paths: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"/.\n".to_vec();
    for path in paths {
        out.extend_from_slice(path);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paragraph(text: &str) -> Paragraph {
        Paragraph::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn status_is_sorted_with_the_status_after_the_name() {
        let b = paragraph("Package: b\nVersion: 1\nArchitecture: all\nDescription: b\n more\n");
        let a64 = paragraph("Package: a\nVersion: 2\nArchitecture: amd64\n");
        let a32 = paragraph("Package: a\nVersion: 2\nArchitecture: i386\n");
        let text = status(&[
            Installed { name: "b", architecture: "all", paragraph: &b },
            Installed { name: "a", architecture: "i386", paragraph: &a32 },
            Installed { name: "a", architecture: "amd64", paragraph: &a64 },
        ]);
        assert_eq!(
            text,
            "Package: a\nStatus: install ok installed\nVersion: 2\nArchitecture: amd64\n\n\
             Package: a\nStatus: install ok installed\nVersion: 2\nArchitecture: i386\n\n\
             Package: b\nStatus: install ok installed\nVersion: 1\nArchitecture: all\nDescription: b\n more\n"
        );
        assert_eq!(status(&[]), "");
    }

    #[test]
    fn multi_arch_same_packages_are_named_with_their_architecture() {
        let same = paragraph("Package: libc6\nMulti-Arch: same\n");
        let foreign = paragraph("Package: make\nMulti-Arch: foreign\n");
        assert_eq!(info_name("libc6", "amd64", &same), "libc6:amd64");
        assert_eq!(info_name("make", "amd64", &foreign), "make");
    }

    #[test]
    fn lists_start_at_the_root() {
        assert_eq!(list(&[b"/usr".to_vec(), b"/usr/bin".to_vec()]), b"/.\n/usr\n/usr/bin\n");
        assert_eq!(list(&[]), b"/.\n");
    }
}
