//! Nix's base-32: the alphabet without `e`, `o`, `u` and `t` (so no word
//! can be spelled by accident), read from the last byte backwards. A store
//! path's 32 characters are these 20 bytes.

use thiserror::Error;

const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// How many characters encode `bytes` bytes.
pub const fn encoded_len(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes * 8 - 1) / 5 + 1
    }
}

/// Encodes bytes as Nix does (`nix-hash --to-base32`).
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        let low = bytes[i] >> j;
        let high = if i + 1 < bytes.len() { (bytes[i + 1] as u16) << (8 - j) } else { 0 };
        out.push(ALPHABET[((low as u16 | high) & 0x1f) as usize] as char);
    }
    out
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Base32Error {
    #[error("'{0}' is not a base-32 character (the alphabet is 0-9 and a-z without e, o, u, t)")]
    BadChar(char),
    #[error("{found} base-32 characters cannot encode {bytes} bytes (expected {expected})")]
    BadLength { found: usize, bytes: usize, expected: usize },
    #[error("the base-32 string encodes more bits than {0} bytes hold")]
    Overflow(usize),
}

/// Decodes a string made by [`encode`] back into `bytes` bytes.
pub fn decode(s: &str, bytes: usize) -> Result<Vec<u8>, Base32Error> {
    let expected = encoded_len(bytes);
    if s.len() != expected {
        return Err(Base32Error::BadLength { found: s.len(), bytes, expected });
    }
    let mut out = vec![0u8; bytes];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == c).ok_or(Base32Error::BadChar(c as char))? as u16;
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        out[i] |= (digit << j) as u8;
        let carry = (digit << j) >> 8;
        if i + 1 < bytes {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(Base32Error::Overflow(bytes));
        }
    }
    Ok(out)
}

/// Whether `c` may appear in a base-32 string.
pub fn is_base32_char(c: u8) -> bool {
    ALPHABET.contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Golden vectors from `nix-hash --type … --to-base32` (Nix 2.8).
    const VECTORS: &[(&str, &str)] = &[
        (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
        ),
        ("a9993e364706816aba3e25717850c26c9cd0d89d", "kpcd173cq987hw957sx6m0868wv3x6d9"),
        ("d41d8cd98f00b204e9800998ecf8427e", "3y8bwfr609h3lh9ch0izcqq7fl"),
    ];

    #[test]
    fn matches_nix() {
        for (h, b32) in VECTORS {
            assert_eq!(encode(&hex(h)), *b32);
            assert_eq!(decode(b32, h.len() / 2).unwrap(), hex(h));
        }
    }

    #[test]
    fn twenty_bytes_are_thirty_two_characters() {
        assert_eq!(encoded_len(20), 32);
        assert_eq!(encode(&[0; 20]), "0".repeat(32));
    }

    #[test]
    fn decode_rejects_bad_input() {
        assert_eq!(decode("e", 1).unwrap_err(), Base32Error::BadLength { found: 1, bytes: 1, expected: 2 });
        assert_eq!(decode("0e", 1).unwrap_err(), Base32Error::BadChar('e'));
        assert_eq!(decode("z0", 1).unwrap_err(), Base32Error::Overflow(1));
    }
}
