//! mini's config file, the one reader of it: `$XDG_CONFIG_HOME/mini/config.json`,
//! else `~/.config/mini/config.json`. It says which binary caches to
//! substitute from and which keys to trust (`substituters`,
//! `trustedPublicKeys`), which local directories `builtin:fetchurl` may read
//! (`allowedFileUrls`, also `$MINI_ALLOWED_FILE_URLS`), and the values
//! fixed-output builds may take from outside (`impureEnv`), and the remote
//! build service `mini build` sends derivations to (`remote`). A command reads
//! it once (and the evaluator's fetcher once more, the first time it
//! fetches a URL); every setting is checked when asked for, and a bad one
//! is an error naming the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::substitute::BinaryCaches;

/// A setting that cannot be used, or a config file that cannot be read.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", file.display())]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{}: {message}", file.display())]
    Bad { file: PathBuf, message: String },
    #[error("{MINI_ALLOWED_FILE_URLS}: '{}' is not an absolute directory", dir.display())]
    RelativeFileDir { dir: PathBuf },
    #[error(transparent)]
    Cache(#[from] crate::CacheError),
}

/// The environment variable listing (colon-separated) the directories
/// `file://` URLs may read below.
pub const MINI_ALLOWED_FILE_URLS: &str = "MINI_ALLOWED_FILE_URLS";
const FILE_URLS_KEY: &str = "allowedFileUrls";
const IMPURE_ENV_KEY: &str = "impureEnv";
const REMOTE_KEY: &str = "remote";

/// The variables of mini's own environment a fixed-output build may take
/// through `impureEnvVars`: where to download from, never credentials a
/// flake could send away (a flake is untrusted, and these builds have the
/// network). Others come only from the config file's `"impureEnv"`.
const IMPURE_ENV_FROM_ENVIRONMENT: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "GOPROXY",
    "GOSUMDB",
    "GONOSUMDB",
    "GOPRIVATE",
    "GONOPROXY",
    "GOINSECURE",
];

/// The config file as read: its place and its JSON (`Null` when there is
/// no file, which means every default).
#[derive(Debug, Clone)]
pub struct Config {
    file: PathBuf,
    json: serde_json::Value,
}

impl Config {
    /// Where the config file is, if there is a place for one.
    pub fn default_file() -> Option<PathBuf> {
        let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
        };
        Some(dir.join("mini/config.json"))
    }

    /// Reads the config file at its default place; a missing file is an
    /// empty config.
    pub fn load() -> Result<Config, ConfigError> {
        match Config::default_file() {
            Some(file) => Config::read(&file),
            None => Ok(Config { file: PathBuf::new(), json: serde_json::Value::Null }),
        }
    }

    /// Reads the config file `file`; a missing file is an empty config.
    pub fn read(file: &Path) -> Result<Config, ConfigError> {
        let json = match std::fs::read_to_string(file) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| ConfigError::Bad { file: file.to_path_buf(), message: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(source) => return Err(ConfigError::Read { file: file.to_path_buf(), source }),
        };
        Ok(Config { file: file.to_path_buf(), json })
    }

    fn bad(&self, message: String) -> ConfigError {
        ConfigError::Bad { file: self.file.clone(), message }
    }

    /// The list of strings under `key` (none if absent).
    fn strings(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.json.get(key) {
            None => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(|| self.bad(format!("'{key}' must hold strings"))))
                .collect(),
            Some(_) => Err(self.bad(format!("'{key}' must be a list of strings"))),
        }
    }

    /// The binary caches `urls`, then the config file's `substituters`,
    /// trusting `keys` and its `trustedPublicKeys`; `None` if there are none.
    pub fn binary_caches(
        &self,
        mut urls: Vec<String>,
        mut keys: Vec<String>,
    ) -> Result<Option<BinaryCaches>, ConfigError> {
        urls.extend(self.strings("substituters")?);
        keys.extend(self.strings("trustedPublicKeys")?);
        if urls.is_empty() {
            return Ok(None);
        }
        Ok(Some(BinaryCaches::new(&urls, &keys)?))
    }

    /// The directories `file://` URLs of `builtin:fetchurl` may read below:
    /// those `MINI_ALLOWED_FILE_URLS` lists, then the config file's
    /// `"allowedFileUrls"`. None unless set: a fetch runs with the user's
    /// rights, and an untrusted flake must not read their files through it.
    pub fn allowed_file_dirs(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(list) = std::env::var_os(MINI_ALLOWED_FILE_URLS) {
            for dir in std::env::split_paths(&list).filter(|d| !d.as_os_str().is_empty()) {
                if !dir.is_absolute() {
                    return Err(ConfigError::RelativeFileDir { dir });
                }
                dirs.push(dir);
            }
        }
        match self.json.get(FILE_URLS_KEY) {
            None => {}
            Some(serde_json::Value::Array(items)) => {
                for item in items {
                    let dir = item.as_str().map(PathBuf::from).filter(|d| d.is_absolute()).ok_or_else(|| {
                        self.bad(format!("'{FILE_URLS_KEY}' must list absolute directories, not {item}"))
                    })?;
                    dirs.push(dir);
                }
            }
            Some(_) => return Err(self.bad(format!("'{FILE_URLS_KEY}' must be a list of directories"))),
        }
        Ok(dirs)
    }

    /// The remote build service (`"remote": "grpc://HOST:PORT[/INSTANCE]"`),
    /// if one is set; the address is checked where it is used.
    pub fn remote(&self) -> Result<Option<String>, ConfigError> {
        match self.json.get(REMOTE_KEY) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(url)) => Ok(Some(url.clone())),
            Some(other) => {
                Err(self.bad(format!("'{REMOTE_KEY}' must be a string (grpc://HOST:PORT[/INSTANCE]), not {other}")))
            }
        }
    }

    /// The values fixed-output builds get for the variables they name in
    /// `impureEnvVars`: the config file's `"impureEnv"` object
    /// (`{ "GOPROXY": "http://…" }`), overridden by mini's own environment
    /// for the download settings in `IMPURE_ENV_FROM_ENVIRONMENT`, as Nix
    /// takes them from its caller's.
    pub fn impure_env(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut values = BTreeMap::new();
        match self.json.get(IMPURE_ENV_KEY) {
            None => {}
            Some(serde_json::Value::Object(entries)) => {
                for (name, value) in entries {
                    let value = value
                        .as_str()
                        .ok_or_else(|| self.bad(format!("'{IMPURE_ENV_KEY}.{name}' must be a string, not {value}")))?;
                    values.insert(name.clone(), value.to_string());
                }
            }
            Some(_) => return Err(self.bad(format!("'{IMPURE_ENV_KEY}' must be an object of strings"))),
        }
        for name in IMPURE_ENV_FROM_ENVIRONMENT {
            if let Ok(value) = std::env::var(name) {
                values.insert(name.to_string(), value);
            }
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config {
        Config { file: PathBuf::from("/etc/mini.json"), json: serde_json::from_str(json).unwrap() }
    }

    #[test]
    fn a_missing_file_is_every_default() {
        let config = Config::read(Path::new("/nonexistent/mini/config.json")).unwrap();
        assert!(config.binary_caches(Vec::new(), Vec::new()).unwrap().is_none());
        assert!(config.impure_env().unwrap().keys().all(|k| IMPURE_ENV_FROM_ENVIRONMENT.contains(&k.as_str())));
    }

    #[test]
    fn bad_settings_name_the_file_and_the_key() {
        let Err(e) = config(r#"{"substituters": "file:///x"}"#).binary_caches(Vec::new(), Vec::new()) else {
            panic!("a string is not a list")
        };
        assert_eq!(e.to_string(), "/etc/mini.json: 'substituters' must be a list of strings");
        let e = config(r#"{"allowedFileUrls": ["relative"]}"#).allowed_file_dirs().unwrap_err();
        assert_eq!(e.to_string(), "/etc/mini.json: 'allowedFileUrls' must list absolute directories, not \"relative\"");
        let e = config(r#"{"impureEnv": {"GOPROXY": 1}}"#).impure_env().unwrap_err();
        assert_eq!(e.to_string(), "/etc/mini.json: 'impureEnv.GOPROXY' must be a string, not 1");
    }

    #[test]
    fn settings_are_read() {
        let c = config(r#"{"allowedFileUrls": ["/srv/mirror"], "impureEnv": {"X": "y"}}"#);
        assert!(c.allowed_file_dirs().unwrap().contains(&PathBuf::from("/srv/mirror")));
        assert_eq!(c.impure_env().unwrap().get("X").map(String::as_str), Some("y"));
    }
}
