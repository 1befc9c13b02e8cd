//! REAPI digests: the SHA-256 and size of a blob, checked when read from
//! the wire (64 lower-case hex digits, a size that is not negative) and
//! checked against the bytes they name before those bytes are used.

use std::fmt;

use mini_store::encoding::{hex, hex_decode};
use prost::Message;
use sha2::{Digest as _, Sha256};

use crate::error::{RemoteError, Result};
use crate::proto::re;

/// REAPI's number for SHA-256, the one digest function mini speaks.
pub const SHA256: i32 = re::digest_function::Value::Sha256 as i32;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Digest {
    pub hash: [u8; 32],
    pub size: u64,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest { hash: Sha256::digest(bytes).into(), size: bytes.len() as u64 }
    }

    /// A message's encoding and its digest.
    pub fn of_message(message: &impl Message) -> (Digest, Vec<u8>) {
        let bytes = message.encode_to_vec();
        (Digest::of(&bytes), bytes)
    }

    pub fn hex(&self) -> String {
        hex(&self.hash)
    }

    pub fn to_proto(self) -> re::Digest {
        re::Digest { hash: self.hex(), size_bytes: self.size as i64 }
    }

    /// A digest from the wire; `what` names it in the error.
    pub fn from_proto(digest: &re::Digest, what: &str) -> Result<Digest> {
        let bad = |why: &str| {
            RemoteError::Refused(format!(
                "{what} has a malformed digest '{}/{}': {why}",
                digest.hash, digest.size_bytes
            ))
        };
        if digest.hash.len() != 64 || digest.hash.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("not 64 lower-case hex digits of SHA-256"));
        }
        let size = u64::try_from(digest.size_bytes).map_err(|_| bad("a negative size"))?;
        let bytes = hex_decode(&digest.hash).ok_or_else(|| bad("not hex"))?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes);
        Ok(Digest { hash, size })
    }

    /// A field that must hold a digest.
    pub fn required(digest: Option<&re::Digest>, what: &str) -> Result<Digest> {
        match digest {
            Some(digest) => Digest::from_proto(digest, what),
            None => Err(RemoteError::Refused(format!("{what} has no digest"))),
        }
    }

    /// Fails unless `bytes` are the blob this digest names.
    pub fn verify(&self, bytes: &[u8], what: &str) -> Result<()> {
        let got = Digest::of(bytes);
        if got == *self {
            return Ok(());
        }
        Err(RemoteError::Refused(format!("{what}: the service sent bytes with digest {got}, not the {self} asked for")))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.hex(), self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_round_trips_and_malformed_ones_are_refused() {
        let d = Digest::of(b"hello");
        assert_eq!(d.hex(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(Digest::from_proto(&d.to_proto(), "x").unwrap(), d);
        for (hash, size) in
            [("2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824", 5), ("abc", 5), (&d.hex()[..], -1)]
        {
            let proto = re::Digest { hash: hash.to_string(), size_bytes: size };
            assert!(matches!(Digest::from_proto(&proto, "x"), Err(RemoteError::Refused(_))), "{hash} {size}");
        }
        assert!(d.verify(b"hello", "x").is_ok());
        let err = d.verify(b"hellO", "blob").unwrap_err().to_string();
        assert!(err.contains("not the 2cf24dba"), "{err}");
    }
}
