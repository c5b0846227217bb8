//! Lease token verification: the footer's `kid` picks a published key whose id is recomputed (a
//! listed `kid` is never trusted alone), the v4.public signature, strict JSON claims, `typ`,
//! audience, tenant and time — the server verifier's rules.

use crate::json::parse_strict_json;
use crate::paseto::{footer_unverified, paserk_pid, parse_paserk_public, verify_v4_public};
use crate::TokenError;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `typ` claim of a lease token.
pub const LEASE_TOKEN_TYPE: &str = "bp.lease/1";

/// One entry of `GET /v1/license/keys`. Only `public_key` is trusted; `kid` is cross-checked.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct PublishedKey {
    #[serde(default)]
    pub kid: Option<String>,
    pub public_key: String,
    #[serde(default)]
    pub status: Option<String>,
}

/// A verified lease token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClaims {
    pub iss: String,
    pub sub: String,
    pub subject_type: String,
    pub subject_id: String,
    /// The product id.
    pub aud: String,
    /// The lease id.
    pub jti: String,
    pub tenant_id: String,
    pub entitlement_id: String,
    pub policy: String,
    pub features: Vec<String>,
    pub iat: SystemTime,
    pub nbf: SystemTime,
    pub exp: SystemTime,
    /// True inside the entitlement's grace period.
    pub grace: bool,
    /// True when the lease was granted past max_seats (within the policy's overdraft_seats).
    pub overdraft: bool,
    /// True when the lease is borrowed for offline use: `exp` is the end of the borrow.
    pub borrowed: bool,
}

/// A flag claim (grace, overdraft, borrowed): present only when true.
fn flag(claims: &Map<String, Value>, name: &str) -> Result<bool, TokenError> {
    match claims.get(name) {
        None => Ok(false),
        Some(Value::Bool(true)) => Ok(true),
        Some(_) => Err(TokenError::new("bad_claims", format!("lease token claim \"{}\" must be true when present", name))),
    }
}

/// What [`verify_lease_token`] checks beyond the signature.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The token's `aud` must equal it (applications should always set it).
    pub product_id: Option<String>,
    /// The token's `tenant_id` must equal it.
    pub tenant_id: Option<String>,
    /// The time to check against (default: now).
    pub now: Option<SystemTime>,
    /// Tolerated clock difference for `nbf`/`exp`.
    pub leeway: Duration,
}

fn key_material_kid(kid: &str) -> bool {
    let mut it = kid.splitn(3, '.');
    let version = it.next().unwrap_or("");
    let kind = it.next().unwrap_or("");
    it.next().is_some()
        && version.len() > 1
        && version.starts_with('k')
        && version[1..].bytes().all(|c| c.is_ascii_digit())
        && ["local", "public", "secret", "seal", "local-wrap", "secret-wrap", "local-pw", "secret-pw"].contains(&kind)
}

fn key_for(keys: &[PublishedKey], kid: &str) -> Result<[u8; 32], TokenError> {
    let mut liar: Option<&PublishedKey> = None;
    for entry in keys {
        let pid = match paserk_pid(&entry.public_key) {
            Ok(p) => p,
            Err(e) if entry.kid.as_deref() == Some(kid) => return Err(e),
            Err(_) => continue,
        };
        let consistent = entry.kid.as_deref().map_or(true, |k| k == pid);
        if pid == kid && consistent {
            return parse_paserk_public(&entry.public_key);
        }
        if !consistent && (entry.kid.as_deref() == Some(kid) || pid == kid) {
            liar = Some(entry);
        }
    }
    if liar.is_some() {
        return Err(TokenError::new("unknown_key", "a key list entry's kid does not match its public_key; the list is corrupt or tampered with, so that entry is not used".into()));
    }
    Err(TokenError::new("unknown_key", format!("token was signed by key {}, which is not in the key list ({} keys); fetch GET /v1/license/keys again", kid, keys.len())))
}

fn object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, TokenError> {
    let code = if what == "footer" { "bad_footer" } else { "bad_claims" };
    let text = std::str::from_utf8(bytes).map_err(|_| TokenError::new(code, format!("token {} is not UTF-8", what)))?;
    match parse_strict_json(text).map_err(|e| TokenError::new(code, format!("token {} is not strict JSON: {}", what, e)))? {
        Value::Object(m) => Ok(m),
        _ => Err(TokenError::new(code, format!("token {} is not a JSON object", what))),
    }
}

fn text(claims: &Map<String, Value>, name: &str) -> Result<String, TokenError> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(TokenError::new("bad_claims", format!("lease token claim \"{}\" must be a non-empty string", name))),
    }
}

fn time(claims: &Map<String, Value>, name: &str) -> Result<SystemTime, TokenError> {
    match claims.get(name) {
        Some(Value::String(s)) => parse_rfc3339(s).ok_or_else(|| TokenError::new("bad_claims", format!("lease token claim \"{}\" is not an RFC 3339 date-time", name))),
        _ => Err(TokenError::new("bad_claims", format!("lease token claim \"{}\" must be an RFC 3339 date-time string", name))),
    }
}

/// Verifies a lease token issued by the license server against the published keys and returns
/// its claims. Errors carry the same codes as the server's verifier: `malformed`,
/// `wrong_purpose`, `bad_footer`, `unknown_key`, `bad_key`, `bad_signature`, `wrong_type`,
/// `bad_claims`, `wrong_audience`, `not_yet_valid`, `expired`.
pub fn verify_lease_token(token: &str, keys: &[PublishedKey], opts: &VerifyOptions) -> Result<LeaseClaims, TokenError> {
    let footer_bytes = footer_unverified(token)?;
    if footer_bytes.is_empty() {
        return Err(TokenError::new("bad_footer", "token has no footer; expected {\"kid\":\"k4.pid…\"}".into()));
    }
    let footer = object(&footer_bytes, "footer")?;
    let kid = match footer.get("kid") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => return Err(TokenError::new("bad_footer", "token footer has no \"kid\" string naming the signing key".into())),
    };
    if key_material_kid(&kid) {
        return Err(TokenError::new("bad_footer", "token footer \"kid\" contains key material; it must be a key id such as k4.pid…".into()));
    }
    let key = key_for(keys, &kid)?;
    let verified = verify_v4_public(token, &key, b"")?;
    let claims = object(&verified.message, "claims")?;

    match claims.get("typ") {
        Some(Value::String(t)) if t == LEASE_TOKEN_TYPE => {}
        _ => return Err(TokenError::new("wrong_type", format!("token typ is not \"{}\"; this is not a lease token", LEASE_TOKEN_TYPE))),
    }
    let sub = text(&claims, "sub")?;
    let colon = sub.find(':').filter(|&c| c > 0 && c < sub.len() - 1).ok_or_else(|| TokenError::new("bad_claims", "lease token claim \"sub\" must be \"subject_type:subject_id\"".into()))?;
    let features = match claims.get("features") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|f| f.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| TokenError::new("bad_claims", "lease token claim \"features\" must be an array of strings".into()))?,
        _ => return Err(TokenError::new("bad_claims", "lease token claim \"features\" must be an array of strings".into())),
    };
    let grace = flag(&claims, "grace")?;
    let overdraft = flag(&claims, "overdraft")?;
    let borrowed = flag(&claims, "borrowed")?;
    let lease = LeaseClaims {
        iss: text(&claims, "iss")?,
        subject_type: sub[..colon].to_owned(),
        subject_id: sub[colon + 1..].to_owned(),
        sub,
        aud: text(&claims, "aud")?,
        jti: text(&claims, "jti")?,
        tenant_id: text(&claims, "tenant_id")?,
        entitlement_id: text(&claims, "entitlement_id")?,
        policy: text(&claims, "policy")?,
        features,
        iat: time(&claims, "iat")?,
        nbf: time(&claims, "nbf")?,
        exp: time(&claims, "exp")?,
        grace,
        overdraft,
        borrowed,
    };
    if let Some(p) = &opts.product_id {
        if &lease.aud != p {
            return Err(TokenError::new("wrong_audience", format!("lease token is for product {}, not {}", lease.aud, p)));
        }
    }
    if let Some(t) = &opts.tenant_id {
        if &lease.tenant_id != t {
            return Err(TokenError::new("wrong_audience", format!("lease token is for tenant {}, not {}", lease.tenant_id, t)));
        }
    }
    let now = opts.now.unwrap_or_else(SystemTime::now);
    if now >= lease.exp + opts.leeway {
        return Err(TokenError::new("expired", "lease token has expired; request a new one".into()));
    }
    if now + opts.leeway < lease.nbf {
        return Err(TokenError::new("not_yet_valid", "lease token is not valid yet; check this machine's clock".into()));
    }
    Ok(lease)
}

/// Parses an RFC 3339 date-time (`2024-01-15T11:30:00Z`, fractions and offsets allowed; impossible
/// dates refused). Fractions below 1 ms are dropped, as the server does.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T') | Some(b't')) {
        return None;
    }
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let mut pos = 19;
    let mut millis = 0i64;
    if b.get(pos) == Some(&b'.') {
        let start = pos + 1;
        pos = start;
        while matches!(b.get(pos), Some(c) if c.is_ascii_digit()) {
            pos += 1;
        }
        let digits = pos - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        let mut ms = String::from_utf8(b[start..start + digits.min(3)].to_vec()).ok()?;
        while ms.len() < 3 {
            ms.push('0');
        }
        millis = ms.parse().ok()?;
    }
    let offset_minutes = match b.get(pos) {
        Some(b'Z') | Some(b'z') if pos + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let (oh, om) = (num(pos + 1, 2)?, num(pos + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            (if sign == b'-' { -1 } else { 1 }) * (oh * 60 + om)
        }
        _ => return None,
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month[(month - 1) as usize] || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days from 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60) * 1000) + millis;
    if ms >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_millis(ms as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_millis(ms.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_refuses_impossible_dates() {
        let t = parse_rfc3339("2024-01-15T11:30:00Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_705_318_200);
        assert_eq!(parse_rfc3339("2024-01-15T12:30:00+01:00"), Some(t));
        assert_eq!(parse_rfc3339("2024-01-15T11:30:00.570Z").unwrap().duration_since(t).unwrap().as_millis(), 570);
        for bad in ["2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-15 11:30:00Z", "2024-01-15T11:30:00", "2024-01-15T24:00:00Z"] {
            assert!(parse_rfc3339(bad).is_none(), "{}", bad);
        }
    }

    #[test]
    fn key_material_in_kid_is_recognised() {
        assert!(key_material_kid("k4.public.AAAA"));
        assert!(key_material_kid("k4.secret.AAAA"));
        assert!(!key_material_kid("k4.pid.AAAA"));
    }
}
