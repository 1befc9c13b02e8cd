//! The text encodings of digests, in one place: lower-case hex (records,
//! OCI digests, `builtins.hashString`), a NAR hash as `blake3:<hex>`
//! (records, narinfos, lock files), and SRI (`<algo>-<base64>`, how
//! recipes and hash-mismatch errors write fixed-output hashes). Nix's
//! base-32 lives next door in [`crate::base32`]. Pure: bytes in, text out.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// How [`sri_decode`] reads the digest: the standard alphabet, with its
/// padding optional (the caller strips it) and unused low bits of the last
/// character ignored, as recipes have always been allowed to write it.
const SRI_DIGEST: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Hex of either case read back; `None` for an odd length or a non-hex digit.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    text.as_bytes().chunks(2).map(|pair| Some((digit(pair[0])? << 4 | digit(pair[1])?) as u8)).collect()
}

/// Standard base64 with padding, as SRI hashes and registry credentials use.
pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// [`base64_encode`] read back; `None` for anything that is not standard
/// base64 with its padding.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// A hash in SRI notation, `<algo>-<base64>`, which [`sri_decode`] and
/// `mini_store::derivation::parse_hash` read back.
pub fn sri(algo: &str, digest: &[u8]) -> String {
    format!("{algo}-{}", base64_encode(digest))
}

/// An SRI hash split into its algorithm and digest; `None` if `text` is
/// not `<algo>-<base64>`. Lenient where recipes are: the base64 may carry
/// its padding, none, or more than it needs.
pub fn sri_decode(text: &str) -> Option<(&str, Vec<u8>)> {
    let (algo, encoded) = text.split_once('-')?;
    Some((algo, SRI_DIGEST.decode(encoded.trim_end_matches('=')).ok()?))
}

/// A path's archive hash as text, `blake3:<64 lower-case hex digits>`:
/// how records, `path-info`, narinfos and lock files write it.
pub fn nar_hash_text(hash: &[u8; 32]) -> String {
    format!("blake3:{}", hex(hash))
}

/// [`nar_hash_text`] read back (either case of hex digits); `None` for
/// anything else.
pub fn parse_nar_hash(text: &str) -> Option<[u8; 32]> {
    blake3::Hash::from_hex(text.strip_prefix("blake3:")?).ok().map(|hash| *hash.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        assert_eq!(hex(&[0x00, 0x9f, 0xff]), "009fff");
        assert_eq!(hex_decode("009FfF"), Some(vec![0x00, 0x9f, 0xff]));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn nar_hash_text_round_trips() {
        let text = nar_hash_text(&[0xab; 32]);
        assert_eq!(text, format!("blake3:{}", "ab".repeat(32)));
        assert_eq!(parse_nar_hash(&text.to_uppercase().replace("BLAKE3", "blake3")), Some([0xab; 32]));
        assert_eq!(parse_nar_hash(&text[..text.len() - 2]), None);
        assert_eq!(parse_nar_hash(&format!("sha256:{}", "ab".repeat(32))), None);
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(base64_encode(&[0xff, 0xfe, 0xfd]), "//79");
        assert_eq!(base64_decode("Zg"), None, "padding is required");
    }

    #[test]
    fn sri_round_trips() {
        let text = sri("sha256", &[1, 2, 3]);
        assert_eq!(text, "sha256-AQID");
        assert_eq!(sri_decode(&text), Some(("sha256", vec![1, 2, 3])));
        assert_eq!(sri_decode("sha256"), None);
    }

    #[test]
    fn sri_digests_may_leave_out_their_padding() {
        let empty = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
        let digest = sri_decode(&format!("sha256-{empty}=")).unwrap().1;
        assert_eq!(digest.len(), 32);
        for padding in ["", "==", "==="] {
            assert_eq!(sri_decode(&format!("sha256-{empty}{padding}")).unwrap().1, digest, "'{padding}'");
        }
        // The last character's two unused bits are ignored, not refused.
        assert_eq!(sri_decode("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFX").unwrap().1, digest);
        assert_eq!(sri_decode("sha256-AA=A"), None);
        assert_eq!(sri_decode("sha256-A*"), None);
    }
}
