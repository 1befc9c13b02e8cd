//! The fetcher `mini` gives every evaluator it starts (`mini eval`,
//! `instantiate`, and the flake sessions of `build`, `lock` and the rest):
//! `builtins.fetchurl` and `fetchTarball` download with `builtin:fetchurl`'s
//! code (`mini_build::fetchers`), reading `file://` URLs only below the
//! directories the settings allow; `fetchGit` copies commits with the
//! flake crate's git code. An unpinned download is fetched once per
//! process, and a note says the hash that would pin it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mini_cache::config::Config;
use mini_lang::{GitFetched, GitRequest, UrlFetched, UrlRequest};
use mini_store::store::Store;

/// Installs the fetcher as every evaluator's default.
pub fn install() {
    mini_lang::set_default_fetcher(Arc::new(CliFetcher::default()));
}

#[derive(Default)]
struct CliFetcher {
    /// Unpinned fetches done so far, so one evaluation sees one content.
    unpinned: Mutex<HashMap<(String, String, bool), UrlFetched>>,
    /// The directories `file://` URLs may read below, from the config
    /// file, read the first time a URL is fetched.
    file_dirs: std::sync::OnceLock<Result<Vec<std::path::PathBuf>, String>>,
}

impl mini_lang::Fetcher for CliFetcher {
    fn fetch_url(&self, store: &Store, request: &UrlRequest) -> Result<UrlFetched, String> {
        let key = (request.url.clone(), request.name.clone(), request.unpack);
        if request.sha256.is_none() {
            if let Some(done) = self.unpinned.lock().map_err(|_| "a fetch panicked")?.get(&key) {
                return Ok(done.clone());
            }
        }
        let file_dirs = self
            .file_dirs
            .get_or_init(|| Config::load().and_then(|c| c.allowed_file_dirs()).map_err(|e| e.to_string()))
            .clone()?;
        let (url, name, unpack) = (&request.url, &request.name, request.unpack);
        let fetch = mini_build::fetchers::UrlFetch { url, name, unpack, expected: request.sha256.as_ref() };
        let fetched =
            mini_build::fetchers::fetch_to_store(store, &file_dirs, &fetch, &mut std::io::sink()).map_err(|e| e.0)?;
        let result = UrlFetched { path: fetched.path, sha256: fetched.sha256 };
        if request.sha256.is_none() {
            let builtin = if unpack { "fetchTarball" } else { "fetchurl" };
            let hash = mini_store::encoding::sri("sha256", &fetched.sha256);
            eprintln!("note: {builtin} of '{url}' is not pinned; add sha256 = \"{hash}\"; to pin it");
            self.unpinned.lock().map_err(|_| "a fetch panicked")?.insert(key, result.clone());
        }
        Ok(result)
    }

    fn fetch_git(&self, store: &Store, request: &GitRequest) -> Result<GitFetched, String> {
        let tree = mini_flake::fetch_git(
            store,
            &mini_flake::GitFetchRequest {
                repo: std::path::Path::new(&request.url),
                rev: request.rev.as_deref(),
                git_ref: request.git_ref.as_deref(),
                name: &request.name,
                submodules: request.submodules,
                shallow: request.shallow,
                all_refs: request.all_refs,
            },
        )?;
        let nar_hash = mini_build::fetchers::nar_hash(&tree.dir).map_err(|e| e.0)?;
        Ok(GitFetched {
            path: tree.path,
            rev: tree.rev,
            rev_count: tree.rev_count,
            last_modified: tree.last_modified,
            nar_hash,
        })
    }
}
