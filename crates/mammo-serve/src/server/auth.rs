//! The bearer token: checked from the headers alone, before anything reads the request body (a
//! 250 MB body without the token costs the server nothing but the 401).

use axum::http::{HeaderMap, header};

/// A usable token: not blank, visible ASCII without spaces (what an `Authorization` header can carry
/// unchanged). A blank token would look set while guarding nothing.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.trim().is_empty() {
        return Err("the token is empty or blank".into());
    }
    if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the token holds {}: use visible ASCII characters without spaces",
            if c.is_whitespace() { "white space".to_string() } else { format!("the character {c:?}") }
        ));
    }
    Ok(())
}

/// The credentials of `Authorization: Bearer TOKEN`; the scheme name is case-insensitive (RFC 7235
/// section 2.1), so `bearer` and `BEARER` are accepted.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Whether the request carries `token`.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn scheme_is_case_insensitive_and_token_exact() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            authorized(&h, "s3cret")
        };
        assert!(with("Bearer s3cret") && with("bearer s3cret") && with("BEARER  s3cret"));
        assert!(!with("Bearer s3cre") && !with("Bearer s3cretX") && !with("Basic s3cret") && !with("s3cret"));
        assert!(!with("Bearers3cret") && !with("Bearer "));
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }

    #[test]
    fn blank_or_unprintable_tokens_are_refused() {
        assert_eq!(check_token(""), Err("the token is empty or blank".into()));
        assert_eq!(check_token("  \t\n"), Err("the token is empty or blank".into()));
        assert!(check_token("two words").unwrap_err().contains("white space"));
        assert!(check_token("caf\u{e9}").unwrap_err().contains("visible ASCII"));
        assert!(check_token("a-Good_t0ken~").is_ok());
    }
}
