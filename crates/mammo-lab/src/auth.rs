//! The lab's token rule, `serve`'s with a browser's way in: a request passes with
//! `Authorization: Bearer TOKEN` (scripts; `mammo_serve`'s parsing and constant-time comparison) or with
//! the cookie the login page sets (HttpOnly, so page scripts cannot read it; SameSite=Strict, so
//! another site cannot make the browser send it). Without a token set (a loopback bind) every request
//! passes. The token is never logged and never sent back.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mammo_serve::server::auth as serve_auth;

use crate::LabState;

/// The cookie's name.
pub const COOKIE: &str = "mammogan_lab";
/// The largest login form read (a token is a line).
const MAX_FORM: usize = 4096;

const LOGIN_PAGE: &str = include_str!("assets/login.html");

/// Whether the request carries the token, in the `Authorization` header or the cookie.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    serve_auth::authorized(headers, token) || cookie(headers).is_some_and(|c| same(c.as_bytes(), token.as_bytes()))
}

/// The value of our cookie in the `Cookie` headers, if any.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Constant-time comparison (as `serve`'s): the time taken does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The guard in front of every route but the login form's POST: 401 without the token. A browser gets
/// the login page with that 401, anything else a JSON error.
pub async fn guard(State(state): State<Arc<LabState>>, req: Request, next: Next) -> Response {
    let Some(token) = &state.token else { return next.run(req).await };
    if authorized(req.headers(), token) {
        return next.run(req).await;
    }
    if req.method() == Method::POST && req.uri().path() == "/login" {
        return next.run(req).await;
    }
    unauthorized(req.headers())
}

fn unauthorized(headers: &HeaderMap) -> Response {
    let wants_html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    let mut r = if wants_html {
        let mut r = (StatusCode::UNAUTHORIZED, LOGIN_PAGE).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        crate::pages::secure_headers(r.headers_mut(), crate::pages::PAGE_CSP);
        r
    } else {
        crate::api::error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (log in, or send `Authorization: Bearer TOKEN`)",
        )
    };
    // The body is not read: the connection is closed rather than drained.
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// `POST /login` with `token=...` (a form): the right token sets the cookie and goes to the runs page;
/// a wrong one is a 401 with the login page again.
pub async fn login(State(state): State<Arc<LabState>>, req: Request) -> Response {
    let Some(token) = state.token.clone() else {
        return redirect_home(None);
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = mammo_serve::server::body::read(body, MAX_FORM, None, std::time::Duration::from_secs(10)).await
    else {
        return unauthorized(&parts.headers);
    };
    let given = form_urlencoded::parse(&body).find(|(k, _)| k == "token").map(|(_, v)| v.trim().to_string());
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => redirect_home(Some(&token)),
        _ => {
            tracing::warn!("login refused: wrong token");
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
            unauthorized(&h)
        }
    }
}

fn redirect_home(token: Option<&str>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, "").into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Some(t) = token {
        // A valid token is visible ASCII (`check_token`), so it is a valid cookie value.
        if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/")) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_or_cookie() {
        let with = |name: header::HeaderName, v: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(v).unwrap());
            authorized(&h, "s3cret")
        };
        assert!(with(header::AUTHORIZATION, "Bearer s3cret"));
        assert!(with(header::COOKIE, "mammogan_lab=s3cret"));
        assert!(with(header::COOKIE, "a=b; mammogan_lab=s3cret; c=d"));
        assert!(!with(header::COOKIE, "mammogan_lab=s3cre"));
        assert!(!with(header::COOKIE, "mammogan_labx=s3cret"));
        assert!(!with(header::COOKIE, "other=s3cret"));
        assert!(!with(header::AUTHORIZATION, "Bearer wrong"));
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let r = redirect_home(Some("s3cret"));
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let c = r.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(c.starts_with("mammogan_lab=s3cret;") && c.contains("HttpOnly") && c.contains("SameSite=Strict"));
    }
}
