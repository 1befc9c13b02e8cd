//! What Debian's package names, versions, architectures and suites may
//! look like. Every one of them comes from a lock file, a recipe or apt's
//! output, and goes on to an apt command line or into a file name, so each
//! is checked against these rules first: none can start with `-` (an
//! option), hold a `/` (a path) or a space (another argument).

/// A package name, as Debian policy has it: `[a-z0-9][a-z0-9+.-]+`.
pub const PACKAGE_RULE: &str = "a package name is lowercase letters, digits, '+', '-' and '.', \
     at least two long, starting with a letter or digit";
/// A version, with an optional epoch `N:`.
pub const VERSION_RULE: &str = "a version is letters, digits, '.', '+', '~', '-' and ':', starting with a \
     letter or digit, with an optional numeric epoch before the first ':'";
/// An architecture: `amd64`, `arm64`, `all`, `musl-linux-arm64`.
pub const ARCHITECTURE_RULE: &str = "an architecture is lowercase letters, digits and '-' (like amd64 or all)";
/// A suite or codename: `bookworm`, `stable`, `jammy-updates`.
pub const SUITE_RULE: &str = "a suite is lowercase letters, digits, '.', '+', '_' and '-' (like bookworm or stable)";

/// Whether `name` is a Debian package name.
pub fn is_package(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=128).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
}

/// Whether `version` is a Debian version (`2.36-9+deb12u4`, `1:1.2.13.dfsg-1`).
pub fn is_version(version: &str) -> bool {
    let bytes = version.as_bytes();
    let charset = bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b));
    let epoch_ok = match version.split_once(':') {
        Some((epoch, rest)) => {
            !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with(char::is_alphanumeric)
        }
        None => true,
    };
    (1..=200).contains(&bytes.len()) && bytes[0].is_ascii_alphanumeric() && charset && epoch_ok
}

/// Whether `arch` is a Debian architecture name.
pub fn is_architecture(arch: &str) -> bool {
    let bytes = arch.as_bytes();
    (1..=40).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `suite` is a suite or codename apt could know.
pub fn is_suite(suite: &str) -> bool {
    let bytes = suite.as_bytes();
    (1..=64).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_policy() {
        for good in ["make", "libc6-dev", "g++", "libstdc++6", "0ad", "python3.11", "xz-utils"] {
            assert!(is_package(good), "{good}");
        }
        for bad in ["", "a", "-make", "Make", "make gcc", "make/../x", "make:amd64", "make=1", ".x", "+x"] {
            assert!(!is_package(bad), "{bad}");
        }
    }

    #[test]
    fn versions_allow_an_epoch_and_nothing_an_option_or_path_could_use() {
        for good in ["4.3-4.1", "2.36-9+deb12u4", "1:1.2.13.dfsg-1", "20250419~deb12u1", "3.23+nmu1", "1.0"] {
            assert!(is_version(good), "{good}");
        }
        for bad in ["", "-1", "1 2", "1/2", "a:1", ":1", "1:", "1:-2", "1.0_2", "1=2", "~1"] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn architectures_and_suites() {
        for good in ["amd64", "all", "arm64", "musl-linux-arm64", "i386"] {
            assert!(is_architecture(good), "{good}");
        }
        for bad in ["", "-amd64", "AMD64", "amd64 ", "x/y", "amd_64"] {
            assert!(!is_architecture(bad), "{bad}");
        }
        for good in ["bookworm", "stable", "bookworm-security", "jammy-updates", "12"] {
            assert!(is_suite(good), "{good}");
        }
        for bad in ["", "-t", "Bookworm", "a b", "x/y", "a=b", "/^x$/"] {
            assert!(!is_suite(bad), "{bad}");
        }
    }
}
