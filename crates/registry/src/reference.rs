//! `docker://HOST[:PORT]/REPO[:TAG]`: where an image is pushed. Pure.

use crate::{RegistryError, Result};

/// A registry, a repository on it and a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host` or `host:port`.
    pub host: String,
    /// `name` or `path/to/name`, lower case.
    pub repo: String,
    pub tag: String,
}

impl Reference {
    /// Parses `docker://HOST[:PORT]/REPO[:TAG]`; the tag defaults to `latest`.
    pub fn parse(text: &str) -> Result<Reference> {
        let bad = || RegistryError::BadReference(text.to_string());
        let rest = text.strip_prefix("docker://").ok_or_else(bad)?;
        let (host, name) = rest.split_once('/').ok_or_else(bad)?;
        let (repo, tag) = match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (name, "latest"),
        };
        let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        let repo_ok = !repo.is_empty()
            && repo.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            });
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !tag.starts_with(['.', '-']);
        if !(host_ok && repo_ok && tag_ok) {
            return Err(bad());
        }
        Ok(Reference { host: host.to_string(), repo: repo.to_string(), tag: tag.to_string() })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "docker://{}/{}:{}", self.host, self.repo, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_host_repo_and_tag() {
        let r = Reference::parse("docker://127.0.0.1:5000/team/quotes:v1").unwrap();
        assert_eq!((r.host.as_str(), r.repo.as_str(), r.tag.as_str()), ("127.0.0.1:5000", "team/quotes", "v1"));
        assert_eq!(r.to_string(), "docker://127.0.0.1:5000/team/quotes:v1");
        let r = Reference::parse("docker://registry.example/quotes").unwrap();
        assert_eq!(r.tag, "latest");
    }

    #[test]
    fn malformed_references_are_refused() {
        for text in [
            "quotes:latest",
            "docker://host",
            "docker:///quotes",
            "docker://h/Quotes",
            "docker://h/q:-x",
            "docker://h/a//b",
        ] {
            assert!(Reference::parse(text).is_err(), "{text}");
        }
    }
}
