//! What the fetch builtins (`fetchurl`, `fetchTarball`, `fetchGit`) ask of
//! whoever can download. The language knows no HTTP and no git: the
//! command that runs an evaluation hands it a [`Fetcher`]
//! ([`crate::Evaluator::set_fetcher`], or [`set_default_fetcher`] for every
//! evaluator of the process), and the builtins parse their arguments,
//! decide purity, compute the fixed-output path of a pinned fetch and
//! return the result; only the download itself is the fetcher's.
//!
//! **Invariant:** a fetcher registers a path only after its content was
//! checked against the hash it was asked for; a mismatch registers nothing.

use std::sync::{Arc, OnceLock};

use mini_store::store::Store;
use mini_store::store_path::StorePath;

/// A URL to fetch as a file (`fetchurl`) or as an unpacked tree (`fetchTarball`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRequest {
    pub url: String,
    /// The store path's name.
    pub name: String,
    /// Unpack the download (an archive) and take its single top-level
    /// directory, hashed recursively; else the file itself, hashed flat.
    pub unpack: bool,
    /// The SHA-256 the content must have (of the file, or of the tree's
    /// canonical archive); `None`: unpinned, taken as it comes.
    pub sha256: Option<[u8; 32]>,
}

/// What a URL fetch added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlFetched {
    /// The fixed-output path of the content: the one a fixed-output
    /// derivation with this hash and name gives.
    pub path: StorePath,
    /// The content's SHA-256, as [`UrlRequest::sha256`] means it.
    pub sha256: [u8; 32],
}

/// A git repository to fetch a commit's tree from (`fetchGit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRequest {
    /// A local repository: an absolute path (a `file://` URL's path).
    pub url: String,
    /// A full commit hash.
    pub rev: Option<String>,
    /// A branch or tag (`main`, `refs/tags/v1`); with neither, HEAD.
    pub git_ref: Option<String>,
    pub name: String,
    pub submodules: bool,
    /// No revision count (0), as Nix's shallow clones have none.
    pub shallow: bool,
    /// `rev` may be on any ref, not only on `git_ref`.
    pub all_refs: bool,
}

/// A commit's tree in the store, with what `fetchGit` tells of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitFetched {
    pub path: StorePath,
    /// The full commit hash.
    pub rev: String,
    /// Commits reachable from `rev` (0 when shallow).
    pub rev_count: u64,
    /// The commit time, in seconds since the epoch.
    pub last_modified: i64,
    /// SHA-256 of the tree's canonical (NAR) archive, in SRI form
    /// (`sha256-<base64>`): Nix's `narHash` of the same tree.
    pub nar_hash: String,
}

/// Downloads for the fetch builtins. Errors are messages for the user.
pub trait Fetcher: Send + Sync {
    /// Fetches `request` into `store`; with a hash, a mismatch is an error
    /// naming both hashes, and nothing is registered.
    fn fetch_url(&self, store: &Store, request: &UrlRequest) -> Result<UrlFetched, String>;
    /// Adds the tree of the commit `request` names to `store`.
    fn fetch_git(&self, store: &Store, request: &GitRequest) -> Result<GitFetched, String>;
}

static DEFAULT: OnceLock<Arc<dyn Fetcher>> = OnceLock::new();

/// Gives every evaluator this process creates from now on `fetcher`
/// (the `mini` command sets it once, before evaluating anything, so the
/// flake sessions it starts fetch as `mini eval` does). Only the first
/// call counts.
pub fn set_default_fetcher(fetcher: Arc<dyn Fetcher>) {
    let _ = DEFAULT.set(fetcher);
}

/// The fetcher [`set_default_fetcher`] installed, if any.
pub(crate) fn default_fetcher() -> Option<Arc<dyn Fetcher>> {
    DEFAULT.get().cloned()
}

/// `YYYYMMDDHHMMSS` in UTC, as Nix's `lastModifiedDate`.
pub fn utc_date_time(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}{month:02}{day:02}{:02}{:02}{:02}", of_day / 3600, of_day % 3600 / 60, of_day % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_nix_last_modified_dates() {
        // Values from Nix 2.8's fetchGit.
        assert_eq!(utc_date_time(1_577_836_800), "20200101000000");
        assert_eq!(utc_date_time(1_796_453_946), "20261205065906");
        assert_eq!(utc_date_time(0), "19700101000000");
        assert_eq!(utc_date_time(951_782_400 + 86_399), "20000229235959");
        assert_eq!(utc_date_time(-1), "19691231235959");
    }
}
