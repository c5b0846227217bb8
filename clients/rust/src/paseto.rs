//! PASETO v4.public verification and PASERK `k4.public` / `k4.pid`, as strict as the server:
//! canonical unpadded base64url only, Pre-Authentication Encoding, Ed25519 (ring), small-order and
//! non-canonical public keys refused, key ids recomputed with BLAKE2b-264.

use crate::TokenError;
use ring::signature::{UnparsedPublicKey, ED25519};

/// Longest token accepted, checked before any other work. A lease token is well under 1 KiB.
pub const MAX_TOKEN_LENGTH: usize = 64 * 1024;
const HEADER: &str = "v4.public.";

/// Decodes unpadded base64url, refusing anything that does not re-encode to the same text
/// (padding, other alphabets, non-zero trailing bits): two spellings of one token never verify.
pub fn decode_base64url(text: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    let bad = || TokenError::new("malformed", format!("{} is not canonical unpadded base64url", what));
    if !text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') || text.len() % 4 == 1 {
        return Err(bad());
    }
    let bytes = base64::decode_config(text, base64::URL_SAFE_NO_PAD).map_err(|_| bad())?;
    if base64::encode_config(&bytes, base64::URL_SAFE_NO_PAD) != text {
        return Err(bad());
    }
    Ok(bytes)
}

/// Unpadded base64url.
pub fn encode_base64url(bytes: &[u8]) -> String {
    base64::encode_config(bytes, base64::URL_SAFE_NO_PAD)
}

/// Pre-Authentication Encoding (PASETO Common): LE64(count), then LE64(len) ‖ bytes for each piece.
pub fn pae(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + pieces.iter().map(|p| 8 + p.len()).sum::<usize>());
    out.extend_from_slice(&(pieces.len() as u64 & 0x7fff_ffff_ffff_ffff).to_le_bytes());
    for p in pieces {
        out.extend_from_slice(&(p.len() as u64 & 0x7fff_ffff_ffff_ffff).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// y-coordinates (little-endian, sign bit cleared) of the points of order dividing 8, plus p−1:
/// a key that is one of them makes signatures forgeable.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [0; 32],
    [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
];
/// p = 2^255 − 19, little-endian.
const FIELD_P: [u8; 32] = hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    }
}

/// Refuses a raw Ed25519 public key that is not a canonical encoding (y ≥ p) or is a small-order
/// point. (A point off the curve fails at verification: ring cannot decode it.)
pub fn check_public_key(raw: &[u8]) -> Result<(), TokenError> {
    if raw.len() != 32 {
        return Err(TokenError::new("bad_key", format!("Ed25519 public key must be 32 bytes, got {}", raw.len())));
    }
    let mut y = [0u8; 32];
    y.copy_from_slice(raw);
    y[31] &= 0x7f;
    // Compare as little-endian integers: from the most significant byte down.
    let mut not_below_p = true;
    for i in (0..32).rev() {
        if y[i] != FIELD_P[i] {
            not_below_p = y[i] > FIELD_P[i];
            break;
        }
    }
    if not_below_p {
        return Err(TokenError::new("bad_key", "Ed25519 public key is not canonically encoded (y >= 2^255-19)".into()));
    }
    if SMALL_ORDER_Y.iter().any(|s| *s == y) {
        return Err(TokenError::new("bad_key", "Ed25519 public key is a small-order point; signatures under it can be forged, so it is refused".into()));
    }
    Ok(())
}

/// The raw 32 bytes of a `k4.public.…` PASERK (form checked, key screened).
pub fn parse_paserk_public(paserk: &str) -> Result<[u8; 32], TokenError> {
    let body = paserk.strip_prefix("k4.public.").ok_or_else(|| TokenError::new("bad_key", "not a k4.public PASERK".into()))?;
    let raw = decode_base64url(body, "k4.public key").map_err(|e| TokenError::new("bad_key", e.message))?;
    if raw.len() != 32 {
        return Err(TokenError::new("bad_key", format!("k4.public key must be 32 bytes, got {}", raw.len())));
    }
    check_public_key(&raw)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&raw);
    Ok(out)
}

/// Key id of a public key: `k4.pid.` + base64url(BLAKE2b-264("k4.pid." ‖ paserk)). The form of
/// the PASERK is checked, not the key (the official vectors take the id of the all-zero key).
pub fn paserk_pid(paserk: &str) -> Result<String, TokenError> {
    let body = paserk.strip_prefix("k4.public.").ok_or_else(|| TokenError::new("bad_key", "not a k4.public PASERK".into()))?;
    let raw = decode_base64url(body, "k4.public key").map_err(|e| TokenError::new("bad_key", e.message))?;
    if raw.len() != 32 {
        return Err(TokenError::new("bad_key", format!("k4.public key must be 32 bytes, got {}", raw.len())));
    }
    let hash = blake2b_simd::Params::new().hash_length(33).to_state().update(b"k4.pid.").update(paserk.as_bytes()).finalize();
    Ok(format!("k4.pid.{}", encode_base64url(hash.as_bytes())))
}

/// The message and footer of a v4.public token, once its signature verified.
pub struct Verified {
    pub message: Vec<u8>,
    pub footer: Vec<u8>,
}

/// The footer of a token, before verification (to pick the key by `kid`). Never trust it further.
pub fn footer_unverified(token: &str) -> Result<Vec<u8>, TokenError> {
    let parts = split(token)?;
    match parts.1 {
        Some(f) => decode_base64url(f, "token footer"),
        None => Ok(Vec::new()),
    }
}

fn split(token: &str) -> Result<(&str, Option<&str>), TokenError> {
    if token.len() > MAX_TOKEN_LENGTH {
        return Err(TokenError::new("malformed", format!("token is longer than {} bytes", MAX_TOKEN_LENGTH)));
    }
    let rest = match token.strip_prefix(HEADER) {
        Some(r) => r,
        None if token.starts_with("v4.local.") || token.starts_with("v3.") || token.starts_with("v2.") || token.starts_with("v1.") => {
            return Err(TokenError::new("wrong_purpose", "only v4.public tokens are accepted".into()))
        }
        None => return Err(TokenError::new("malformed", "token does not start with v4.public.".into())),
    };
    let mut it = rest.split('.');
    let body = it.next().unwrap_or("");
    let footer = it.next();
    if it.next().is_some() {
        return Err(TokenError::new("malformed", "token has more than four parts".into()));
    }
    if footer == Some("") {
        return Err(TokenError::new("malformed", "token has an empty footer part".into()));
    }
    Ok((body, footer))
}

/// Verifies a v4.public token with a raw Ed25519 public key and an implicit assertion.
pub fn verify_v4_public(token: &str, public_key: &[u8], implicit: &[u8]) -> Result<Verified, TokenError> {
    let (body, footer) = split(token)?;
    check_public_key(public_key)?;
    let raw = decode_base64url(body, "token body")?;
    if raw.len() < 64 {
        return Err(TokenError::new("malformed", "token body is shorter than a signature".into()));
    }
    let (message, sig) = raw.split_at(raw.len() - 64);
    let footer = match footer {
        Some(f) => decode_base64url(f, "token footer")?,
        None => Vec::new(),
    };
    let m2 = pae(&[HEADER.as_bytes(), message, &footer, implicit]);
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&m2, sig)
        .map_err(|_| TokenError::new("bad_signature", "token signature does not verify under the key".into()))?;
    Ok(Verified { message: message.to_vec(), footer })
}
