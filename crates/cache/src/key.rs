//! Signing keys in Nix's text form, `<name>:<base64>`: a secret key holds
//! the 64-byte ed25519 key pair (a 32-byte seed is accepted too), a public
//! key its 32-byte verifying key. Signatures are written the same way.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use mini_store::encoding::{base64_decode, base64_encode};

use crate::{CacheError, Result};

/// A named key that signs.
pub struct SecretKey {
    pub name: String,
    key: SigningKey,
}

/// A named key that verifies.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub name: String,
    key: VerifyingKey,
}

fn split(text: &str, what: &str) -> Result<(String, Vec<u8>)> {
    let text = text.trim();
    let (name, data) = text
        .split_once(':')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| CacheError::Key(format!("a {what} must look like NAME:BASE64, not '{text}'")))?;
    let bytes = base64_decode(data).ok_or_else(|| CacheError::Key(format!("{what} '{name}' is not base64")))?;
    Ok((name.to_string(), bytes))
}

impl SecretKey {
    /// Makes a new key from the system's random source.
    pub fn generate(name: &str) -> Result<SecretKey> {
        if name.is_empty() || name.contains(':') {
            return Err(CacheError::Key(format!("a key name must be non-empty and have no ':', not '{name}'")));
        }
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| CacheError::Key(format!("no random seed: {e}")))?;
        Ok(SecretKey { name: name.into(), key: SigningKey::from_bytes(&seed) })
    }

    pub fn parse(text: &str) -> Result<SecretKey> {
        let (name, bytes) = split(text, "secret key")?;
        let key = if let Ok(pair) = <[u8; 64]>::try_from(bytes.as_slice()) {
            SigningKey::from_keypair_bytes(&pair)
                .map_err(|_| CacheError::Key(format!("secret key '{name}': its two halves do not match")))?
        } else if let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice()) {
            SigningKey::from_bytes(&seed)
        } else {
            return Err(CacheError::Key(format!("secret key '{name}' has {} bytes, not 64 (or 32)", bytes.len())));
        };
        Ok(SecretKey { name, key })
    }

    /// `<name>:<base64 of the 64-byte key pair>`.
    pub fn render(&self) -> String {
        format!("{}:{}", self.name, base64_encode(&self.key.to_keypair_bytes()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// `<name>:<base64 signature of message>`.
    pub fn sign(&self, message: &str) -> String {
        format!("{}:{}", self.name, base64_encode(&self.key.sign(message.as_bytes()).to_bytes()))
    }
}

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey> {
        let (name, bytes) = split(text, "public key")?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| CacheError::Key(format!("public key '{name}' has {} bytes, not 32", bytes.len())))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| CacheError::Key(format!("public key '{name}' is not a valid ed25519 point")))?;
        Ok(PublicKey { name, key })
    }

    pub fn render(&self) -> String {
        format!("{}:{}", self.name, base64_encode(self.key.as_bytes()))
    }

    /// Whether `signature` (`<name>:<base64>`) is this key's over `message`.
    pub fn verifies(&self, message: &str, signature: &str) -> bool {
        let Some((name, data)) = signature.split_once(':') else { return false };
        let Some(bytes) = base64_decode(data) else { return false };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else { return false };
        name == self.name && self.key.verify(message.as_bytes(), &Signature::from_bytes(&bytes)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sign() {
        let secret = SecretKey::generate("cache.example-1").unwrap();
        let again = SecretKey::parse(&secret.render()).unwrap();
        let public = PublicKey::parse(&again.public().render()).unwrap();
        let sig = again.sign("1;/mini/store/x;blake3:00;1;");
        assert!(public.verifies("1;/mini/store/x;blake3:00;1;", &sig));
        assert!(!public.verifies("1;/mini/store/y;blake3:00;1;", &sig));
        let other = SecretKey::generate("cache.example-1").unwrap().public();
        assert!(!other.verifies("1;/mini/store/x;blake3:00;1;", &sig));
    }

    #[test]
    fn a_seed_is_a_secret_key_too() {
        // RFC 8032's first test vector.
        let seed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
        let key = SecretKey::parse(&format!("k:{seed}")).unwrap();
        assert_eq!(key.public().render(), "k:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
        assert!(PublicKey::parse("k:AAAA").unwrap_err().to_string().contains("not 32"));
        assert!(SecretKey::parse("nocolon").is_err());
    }
}
