//! Derivations: the recipe for producing store paths, in a canonical JSON
//! encoding (sorted keys, no insignificant whitespace), and the hashes that
//! name their outputs. As in Nix, an input-addressed output's path comes from
//! the derivation with its own output paths blanked and every input
//! derivation replaced by that input's hash, recursively ("hash modulo"), so
//! that a fixed-output input can change how it is fetched without changing
//! anything downstream.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use thiserror::Error;

use crate::encoding::{hex, hex_decode, sri_decode};
use crate::store_path::{PathKind, StorePath, StorePathError};

/// A declared content hash of a fixed-output derivation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedHash {
    /// `sha256` or `blake3`.
    pub algo: String,
    /// `flat` (the output is one file, hashed as is) or `recursive`
    /// (hashed as a canonical archive).
    pub mode: HashMode,
    pub digest: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashMode {
    Flat,
    Recursive,
}

impl HashMode {
    pub fn as_str(self) -> &'static str {
        match self {
            HashMode::Flat => "flat",
            HashMode::Recursive => "recursive",
        }
    }
}

/// One output of a derivation. `path` is `None` while the derivation is
/// being hashed modulo its own outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub path: Option<StorePath>,
    pub fixed: Option<FixedHash>,
}

/// A derivation, as written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    pub name: String,
    pub outputs: BTreeMap<String, Output>,
    /// Input derivations and the outputs of each that are used.
    pub input_drvs: BTreeMap<StorePath, BTreeSet<String>>,
    pub input_srcs: BTreeSet<StorePath>,
    pub system: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DerivationError {
    #[error(transparent)]
    Path(#[from] StorePathError),
    #[error("derivation '{0}' has no outputs")]
    NoOutputs(String),
    #[error("a fixed-output derivation must have exactly one output, named 'out'")]
    FixedNotSingleOut,
    #[error("unsupported hash algorithm '{0}' (use sha256 or blake3)")]
    UnknownAlgo(String),
    #[error("not a canonical derivation: {0}")]
    BadEncoding(String),
    #[error("invalid {algo} hash '{text}': expected {len} bytes as hex, Nix base-32 or SRI ('{algo}-<base64>')")]
    BadHash { algo: String, text: String, len: usize },
    #[error(
        "the file was modified after it was written: its contents no longer give its store path, so it is not \
         used; `mini store verify --repair` restores it, or removes it so that evaluating again writes it back"
    )]
    Modified,
}

/// Parses a declared output hash: hex, Nix base-32 or SRI (`sha256-…`).
pub fn parse_hash(algo: &str, text: &str) -> Result<Vec<u8>, DerivationError> {
    let len = match algo {
        "sha256" | "blake3" => 32,
        other => return Err(DerivationError::UnknownAlgo(other.to_string())),
    };
    let bad = || DerivationError::BadHash { algo: algo.to_string(), text: text.to_string(), len };
    let bytes = if text.starts_with(&format!("{algo}-")) {
        sri_decode(text).ok_or_else(bad)?.1
    } else if text.len() == 2 * len {
        hex_decode(text).ok_or_else(bad)?
    } else if text.len() == crate::base32::encoded_len(len) {
        crate::base32::decode(text, len).map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if bytes.len() != len {
        return Err(bad());
    }
    Ok(bytes)
}

/// The digest that names a derivation's outputs (Nix's `hashDerivationModulo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModuloHash(pub [u8; 32]);

impl ModuloHash {
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl Derivation {
    /// The store path of output `output`: `<name>` for `out`, `<name>-<output>` otherwise.
    pub fn output_name(&self, output: &str) -> String {
        if output == "out" {
            self.name.clone()
        } else {
            format!("{}-{output}", self.name)
        }
    }

    /// Whether this derivation declares its output's content hash.
    pub fn fixed_output(&self) -> Option<&FixedHash> {
        match (self.outputs.len(), self.outputs.get("out")) {
            (1, Some(out)) => out.fixed.as_ref(),
            _ => None,
        }
    }

    /// The hash modulo: for a fixed-output derivation, its declared content
    /// hash alone; otherwise the digest of the canonical encoding with output
    /// paths blanked and each input derivation replaced by `modulo(input)`.
    /// Callers memoise `modulo` so deep graphs cost linear time.
    pub fn hash_modulo(&self, modulo: &mut impl FnMut(&StorePath) -> ModuloHash) -> ModuloHash {
        if let Some(fixed) = self.fixed_output() {
            let path = self.outputs["out"].path.as_ref().map(|p| p.to_string()).unwrap_or_default();
            let text = format!("fixed:out:{}:{}:{}:{path}", fixed.mode.as_str(), fixed.algo, hex(&fixed.digest));
            return ModuloHash(*blake3::hash(text.as_bytes()).as_bytes());
        }
        let mut masked = self.clone();
        for out in masked.outputs.values_mut() {
            out.path = None;
        }
        let inputs: BTreeMap<String, &BTreeSet<String>> =
            self.input_drvs.iter().map(|(p, outs)| (modulo(p).to_hex(), outs)).collect();
        let json = masked.to_json_with_inputs(inputs.iter().map(|(k, v)| (k.as_str(), *v)));
        ModuloHash(*blake3::hash(json.as_bytes()).as_bytes())
    }

    /// Fills in every output path from the hash modulo.
    pub fn fill_output_paths(&mut self, modulo: ModuloHash) -> Result<(), DerivationError> {
        if self.outputs.is_empty() {
            return Err(DerivationError::NoOutputs(self.name.clone()));
        }
        if self.outputs.values().any(|o| o.fixed.is_some()) && self.fixed_output().is_none() {
            return Err(DerivationError::FixedNotSingleOut);
        }
        let names: Vec<String> = self.outputs.keys().cloned().collect();
        for output in names {
            let path = match &self.outputs[&output].fixed {
                Some(fixed) => fixed_output_path(fixed, &self.output_name(&output))?,
                None => StorePath::compute(
                    &PathKind::Output { output: &output },
                    "blake3",
                    &modulo.0,
                    &self.output_name(&output),
                )?,
            };
            if let Some(o) = self.outputs.get_mut(&output) {
                o.path = Some(path);
            }
        }
        Ok(())
    }

    /// The path the derivation itself is stored at.
    /// It is a text path like any file the store adds: its digest is over
    /// the canonical archive of a file holding [`Derivation::to_json`].
    pub fn drv_path(&self) -> Result<StorePath, DerivationError> {
        let json = self.to_json();
        let references: Vec<StorePath> = self.input_srcs.iter().chain(self.input_drvs.keys()).cloned().collect();
        let name = format!("{}.drv", self.name);
        Ok(StorePath::compute(
            &PathKind::Text { references: &references },
            "blake3",
            text_file_digest(&json).as_bytes(),
            &name,
        )?)
    }

    /// The canonical encoding: JSON with sorted keys and no whitespace.
    pub fn to_json(&self) -> String {
        let inputs: Vec<(String, &BTreeSet<String>)> =
            self.input_drvs.iter().map(|(p, o)| (p.to_string(), o)).collect();
        self.to_json_with_inputs(inputs.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    fn to_json_with_inputs<'a>(&self, input_drvs: impl Iterator<Item = (&'a str, &'a BTreeSet<String>)>) -> String {
        let mut s = String::from("{\"args\":");
        json_list(&mut s, self.args.iter().map(String::as_str));
        s.push_str(",\"builder\":");
        json_string(&mut s, &self.builder);
        s.push_str(",\"env\":{");
        for (i, (k, v)) in self.env.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json_string(&mut s, k);
            s.push(':');
            json_string(&mut s, v);
        }
        s.push_str("},\"inputDrvs\":{");
        for (i, (path, outs)) in input_drvs.enumerate() {
            if i > 0 {
                s.push(',');
            }
            json_string(&mut s, path);
            s.push(':');
            json_list(&mut s, outs.iter().map(String::as_str));
        }
        s.push_str("},\"inputSrcs\":");
        let srcs: Vec<String> = self.input_srcs.iter().map(|p| p.to_string()).collect();
        json_list(&mut s, srcs.iter().map(String::as_str));
        s.push_str(",\"name\":");
        json_string(&mut s, &self.name);
        s.push_str(",\"outputs\":{");
        for (i, (name, out)) in self.outputs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            json_string(&mut s, name);
            s.push_str(":{");
            if let Some(fixed) = &out.fixed {
                s.push_str("\"hash\":");
                json_string(&mut s, &hex(&fixed.digest));
                s.push_str(",\"hashAlgo\":");
                json_string(&mut s, &fixed.algo);
                s.push_str(",\"hashMode\":");
                json_string(&mut s, fixed.mode.as_str());
                s.push(',');
            }
            s.push_str("\"path\":");
            json_string(&mut s, &out.path.as_ref().map(|p| p.to_string()).unwrap_or_default());
            s.push('}');
        }
        s.push_str("},\"system\":");
        json_string(&mut s, &self.system);
        s.push('}');
        s
    }
}

impl Derivation {
    /// Reads the canonical encoding back, as the builder does with `.drv`
    /// files. Accepts exactly what [`Derivation::to_json`] writes.
    pub fn from_json(text: &str) -> Result<Derivation, DerivationError> {
        let bad = |message: String| DerivationError::BadEncoding(message);
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let field = |name: &str| v.get(name).ok_or_else(|| bad(format!("no '{name}' field")));
        let string = |value: &serde_json::Value, what: &str| {
            value.as_str().map(str::to_string).ok_or_else(|| bad(format!("{what} is not a string")))
        };
        let strings = |value: &serde_json::Value, what: &str| -> Result<Vec<String>, DerivationError> {
            value
                .as_array()
                .ok_or_else(|| bad(format!("{what} is not a list")))?
                .iter()
                .map(|s| string(s, what))
                .collect()
        };
        let object = |value: &'_ serde_json::Value, what: &str| {
            value.as_object().cloned().ok_or_else(|| bad(format!("{what} is not an object")))
        };
        let mut outputs = BTreeMap::new();
        for (name, out) in object(field("outputs")?, "'outputs'")? {
            let path_text = string(out.get("path").unwrap_or(&serde_json::Value::Null), "an output path")?;
            let path = if path_text.is_empty() { None } else { Some(StorePath::parse(&path_text)?) };
            let fixed = match out.get("hash") {
                None => None,
                Some(hash) => {
                    let algo = string(out.get("hashAlgo").unwrap_or(&serde_json::Value::Null), "'hashAlgo'")?;
                    let mode = match out.get("hashMode").and_then(|m| m.as_str()) {
                        Some("flat") => HashMode::Flat,
                        Some("recursive") => HashMode::Recursive,
                        _ => return Err(bad("'hashMode' is not flat or recursive".into())),
                    };
                    let digest = parse_hash(&algo, &string(hash, "'hash'")?)?;
                    Some(FixedHash { algo, mode, digest })
                }
            };
            outputs.insert(name, Output { path, fixed });
        }
        let mut input_drvs = BTreeMap::new();
        for (path, outs) in object(field("inputDrvs")?, "'inputDrvs'")? {
            input_drvs.insert(StorePath::parse(&path)?, strings(&outs, "an input output name")?.into_iter().collect());
        }
        let input_srcs = strings(field("inputSrcs")?, "an input source")?
            .iter()
            .map(|p| StorePath::parse(p))
            .collect::<Result<_, _>>()?;
        let env = object(field("env")?, "'env'")?
            .iter()
            .map(|(k, val)| Ok((k.clone(), string(val, "an env value")?)))
            .collect::<Result<_, DerivationError>>()?;
        Ok(Derivation {
            name: string(field("name")?, "'name'")?,
            outputs,
            input_drvs,
            input_srcs,
            system: string(field("system")?, "'system'")?,
            builder: string(field("builder")?, "'builder'")?,
            args: strings(field("args")?, "an argument")?,
            env,
        })
    }
}

impl Derivation {
    /// Reads back the `.drv` file stored at `drv_path`, refusing one whose
    /// text no longer gives that path. A `.drv` is content-addressed: an
    /// edited one is a modified store path, never a different recipe.
    pub fn from_stored(drv_path: &StorePath, text: &str) -> Result<Derivation, DerivationError> {
        let drv = Derivation::from_json(text)?;
        let references: Vec<StorePath> = drv.input_srcs.iter().chain(drv.input_drvs.keys()).cloned().collect();
        let kind = PathKind::Text { references: &references };
        let actual = StorePath::compute(&kind, "blake3", text_file_digest(text).as_bytes(), drv_path.name())?;
        if actual != *drv_path {
            return Err(DerivationError::Modified);
        }
        Ok(drv)
    }
}

/// BLAKE3 over the canonical archive of one regular file holding `text`,
/// which is how the store hashes every text it adds.
pub fn text_file_digest(text: &str) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    let file = crate::nar::Node::Regular { executable: false, contents: text.as_bytes().to_vec() };
    crate::nar::encode(&file, &mut hasher).expect("hashing into memory cannot fail");
    hasher.finalize()
}

/// The path of a fixed output: from the declared content hash alone.
pub fn fixed_output_path(fixed: &FixedHash, name: &str) -> Result<StorePath, StorePathError> {
    let kind = match fixed.mode {
        HashMode::Recursive => PathKind::Source { references: &[] },
        HashMode::Flat => PathKind::Output { output: "out" },
    };
    let algo = format!("{}:{}", fixed.mode.as_str(), fixed.algo);
    StorePath::compute(&kind, &algo, &fixed.digest, name)
}

fn json_list<'a>(out: &mut String, items: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, item);
    }
    out.push(']');
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn json_string(out: &mut String, s: &str) {
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    use crate::store_path::source_path_for_tests as src;

    fn drv(name: &str, builder: &str) -> Derivation {
        Derivation {
            name: name.into(),
            outputs: BTreeMap::from([("out".to_string(), Output { path: None, fixed: None })]),
            input_drvs: BTreeMap::new(),
            input_srcs: BTreeSet::from([src("script.sh")]),
            system: "x86_64-linux".into(),
            builder: builder.into(),
            args: vec!["-c".into(), "echo \"hi\" > $out".into()],
            env: BTreeMap::from([("name".to_string(), name.to_string())]),
        }
    }

    /// Hashes `d` with a memo table of already-finished derivations.
    fn finish(d: &mut Derivation, memo: &HashMap<StorePath, ModuloHash>) -> (StorePath, ModuloHash) {
        let h = d.hash_modulo(&mut |p| memo[p]);
        d.fill_output_paths(h).unwrap();
        (d.drv_path().unwrap(), h)
    }

    #[test]
    fn from_json_reads_back_what_to_json_writes() {
        let mut d = drv("hello", "/bin/sh");
        d.fill_output_paths(d.hash_modulo(&mut |_| unreachable!())).unwrap();
        assert_eq!(Derivation::from_json(&d.to_json()).unwrap(), d);
        let mut fixed = drv("src.tar", "builtin:fetchurl");
        fixed.outputs.get_mut("out").unwrap().fixed =
            Some(FixedHash { algo: "sha256".into(), mode: HashMode::Flat, digest: vec![7; 32] });
        fixed.fill_output_paths(fixed.hash_modulo(&mut |_| unreachable!())).unwrap();
        assert_eq!(Derivation::from_json(&fixed.to_json()).unwrap(), fixed);
        assert!(Derivation::from_json("{\"args\":[]}").is_err());
        assert!(Derivation::from_json("not json").is_err());
    }

    #[test]
    fn a_stored_derivation_is_read_only_at_its_own_path() {
        let mut d = drv("hello", "/bin/sh");
        let (drv_path, _) = finish(&mut d, &HashMap::new());
        let text = d.to_json();
        assert_eq!(Derivation::from_stored(&drv_path, &text).unwrap(), d);
        // The builder changed, the path kept: refused.
        let edited = text.replace("/bin/sh", "/bin/ev");
        assert!(Derivation::from_json(&edited).is_ok());
        assert_eq!(Derivation::from_stored(&drv_path, &edited), Err(DerivationError::Modified));
        // Even a change that reads back the same (whitespace) is a modification.
        assert_eq!(Derivation::from_stored(&drv_path, &format!("{text} ")), Err(DerivationError::Modified));
        // Its input sources are part of its path.
        let mut other = drv("hello", "/bin/sh");
        other.input_srcs.insert(src("more.sh"));
        let other_text = other.to_json();
        assert_eq!(Derivation::from_stored(&drv_path, &other_text), Err(DerivationError::Modified));
        let message = DerivationError::Modified.to_string();
        assert!(message.contains("modified") && message.contains("mini store verify --repair"), "{message}");
    }

    #[test]
    fn canonical_json_is_sorted_and_compact() {
        let mut d = drv("hello", "/bin/sh");
        d.fill_output_paths(d.hash_modulo(&mut |_| unreachable!())).unwrap();
        let json = d.to_json();
        assert!(json.starts_with("{\"args\":[\"-c\",\"echo \\\"hi\\\" > $out\"],\"builder\":\"/bin/sh\",\"env\":{\"name\":\"hello\"},\"inputDrvs\":{},\"inputSrcs\":[\"/mini/store/"), "{json}");
        assert!(json.ends_with("\"system\":\"x86_64-linux\"}"), "{json}");
    }

    /// Golden vector: pins the canonical encoding and both hashes. If this
    /// changes, every derivation mini ever wrote changes its paths.
    #[test]
    fn derivation_hashing_is_stable() {
        let mut d = drv("hello", "/bin/sh");
        let (drv_path, modulo) = finish(&mut d, &HashMap::new());
        // Cross-checked with an independent Python computation (json.dumps
        // with sorted keys and compact separators, the blake3 package, and
        // the archive of one regular file built by hand for the .drv digest).
        assert_eq!(modulo.to_hex(), "05bf6e8bf04ca6b7e53d263db1896725a6369b1f30ca3142210cc06472a8f335");
        assert_eq!(
            d.outputs["out"].path.as_ref().unwrap().to_string(),
            "/mini/store/ybi0g0b4p329m05s82y62391lz4rhaxr-hello"
        );
        assert_eq!(drv_path.to_string(), "/mini/store/akilmcfdpfb55rccvrqn3m6jfzzf8j1d-hello.drv");
    }

    #[test]
    fn output_paths_depend_on_the_recipe_and_inputs() {
        let memo = HashMap::new();
        let (_, a) = finish(&mut drv("hello", "/bin/sh"), &memo);
        let (_, b) = finish(&mut drv("hello", "/bin/bash"), &memo);
        assert_ne!(a, b);
        let mut d1 = drv("hello", "/bin/sh");
        let mut d2 = drv("hello", "/bin/sh");
        assert_eq!(finish(&mut d1, &memo), finish(&mut d2, &memo));
        assert_eq!(d1.outputs["out"].path, d2.outputs["out"].path);
    }

    #[test]
    fn fixed_output_inputs_change_nothing_downstream_when_their_recipe_changes() {
        let fixed = FixedHash { algo: "sha256".into(), mode: HashMode::Flat, digest: vec![0xab; 32] };
        let fetch = |builder: &str| {
            let mut d = drv("src.tar", builder);
            d.outputs.get_mut("out").unwrap().fixed = Some(fixed.clone());
            d
        };
        let mut memo = HashMap::new();
        let mut downstream_outputs = Vec::new();
        for builder in ["/bin/curl-like", "/bin/wget-like"] {
            let mut f = fetch(builder);
            let (f_path, f_hash) = finish(&mut f, &memo);
            memo.insert(f_path.clone(), f_hash);
            let mut user = drv("app", "/bin/sh");
            user.input_drvs.insert(f_path, BTreeSet::from(["out".to_string()]));
            finish(&mut user, &memo);
            downstream_outputs.push((f.outputs["out"].path.clone(), user.outputs["out"].path.clone()));
        }
        assert_eq!(downstream_outputs[0], downstream_outputs[1]);
    }

    #[test]
    fn output_hashes_parse_in_every_notation() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let bytes = parse_hash("sha256", hex).unwrap();
        assert_eq!(parse_hash("sha256", "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").unwrap(), bytes);
        assert_eq!(parse_hash("sha256", "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU").unwrap(), bytes);
        assert_eq!(parse_hash("sha256", &hex.to_uppercase()).unwrap(), bytes);
        assert_eq!(parse_hash("sha256", "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73").unwrap(), bytes);
        assert!(matches!(parse_hash("md5", hex), Err(DerivationError::UnknownAlgo(_))));
        assert!(matches!(parse_hash("sha256", "abc"), Err(DerivationError::BadHash { .. })));
        assert!(matches!(parse_hash("sha256", "sha256-AAAA"), Err(DerivationError::BadHash { .. })));
    }

    #[test]
    fn multiple_outputs_get_suffixed_names() {
        let mut d = drv("lib", "/bin/sh");
        d.outputs.insert("dev".into(), Output { path: None, fixed: None });
        finish(&mut d, &HashMap::new());
        assert!(d.outputs["out"].path.as_ref().unwrap().to_string().ends_with("-lib"));
        assert!(d.outputs["dev"].path.as_ref().unwrap().to_string().ends_with("-lib-dev"));
        assert!(d.drv_path().unwrap().to_string().ends_with("-lib.drv"));
    }
}
