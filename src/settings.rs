//! Settings that are not command-line flags, for the commands that build:
//! the config file (`$XDG_CONFIG_HOME/mini/config.json`, else
//! `~/.config/mini/config.json`) and environment variables. The file is read
//! by [`read_config`] alone. Binary caches are `cache_cmd`'s; this reads
//! which local directories `builtin:fetchurl` may read, and the values
//! fixed-output builds may take from outside (`impureEnvVars`).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The environment variable listing (colon-separated) the directories
/// `file://` URLs may read below.
const FILE_URLS_VAR: &str = "MINI_ALLOWED_FILE_URLS";
/// The config file's list of the same.
const FILE_URLS_KEY: &str = "allowedFileUrls";

/// mini's config file, if there is a place for one.
pub(crate) fn config_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(dir.join("mini/config.json"))
}

/// The config file and its JSON, if there is one (every setting read from
/// it goes through here).
pub(crate) fn read_config() -> Result<Option<(PathBuf, serde_json::Value)>, String> {
    let Some(file) = config_file() else { return Ok(None) };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    let json = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(Some((file, json)))
}

/// The directories `file://` URLs of `builtin:fetchurl` may read below:
/// those `MINI_ALLOWED_FILE_URLS` lists, then the config file's
/// `"allowedFileUrls"`. None unless set: a fetch runs with the user's
/// rights, and an untrusted flake must not read their files through it.
pub(crate) fn allowed_file_dirs() -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(list) = std::env::var_os(FILE_URLS_VAR) {
        for dir in std::env::split_paths(&list).filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_absolute() {
                return Err(format!("{FILE_URLS_VAR}: '{}' is not an absolute directory", dir.display()));
            }
            dirs.push(dir);
        }
    }
    let Some((file, json)) = read_config()? else { return Ok(dirs) };
    let bad = |what: &str| format!("{}: {what}", file.display());
    match json.get(FILE_URLS_KEY) {
        None => {}
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                let dir = item
                    .as_str()
                    .map(PathBuf::from)
                    .filter(|d| d.is_absolute())
                    .ok_or_else(|| bad(&format!("'{FILE_URLS_KEY}' must list absolute directories, not {item}")))?;
                dirs.push(dir);
            }
        }
        Some(_) => return Err(bad(&format!("'{FILE_URLS_KEY}' must be a list of directories"))),
    }
    Ok(dirs)
}

/// The config file's defaults for `impureEnvVars` variables.
const IMPURE_ENV_KEY: &str = "impureEnv";

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

/// The values fixed-output builds get for the variables they name in
/// `impureEnvVars`: the config file's `"impureEnv"` object
/// (`{ "GOPROXY": "http://…" }`), overridden by mini's own environment for
/// the download settings in [`IMPURE_ENV_FROM_ENVIRONMENT`], as Nix takes
/// them from its caller's.
pub(crate) fn impure_env() -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    if let Some((file, json)) = read_config()? {
        let bad = |what: &str| format!("{}: {what}", file.display());
        match json.get(IMPURE_ENV_KEY) {
            None => {}
            Some(serde_json::Value::Object(entries)) => {
                for (name, value) in entries {
                    let value = value
                        .as_str()
                        .ok_or_else(|| bad(&format!("'{IMPURE_ENV_KEY}.{name}' must be a string, not {value}")))?;
                    values.insert(name.clone(), value.to_string());
                }
            }
            Some(_) => return Err(bad(&format!("'{IMPURE_ENV_KEY}' must be an object of strings"))),
        }
    }
    for name in IMPURE_ENV_FROM_ENVIRONMENT {
        if let Ok(value) = std::env::var(name) {
            values.insert(name.to_string(), value);
        }
    }
    Ok(values)
}
