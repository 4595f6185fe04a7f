//! The lab's one page and its assets, built into the binary (no request leaves the lab when a page
//! loads), and the files of a run's `eval/` directory (`report.html` and its galleries), served
//! read-only under a strict Content-Security-Policy.

use std::path::{Component, Path};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::LabState;
use crate::api::error;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The lab's own pages: scripts, styles and connections only from the lab; images also from `data:`
/// and `blob:` (explain's answers); never framed.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A run's report: its inline style and its images, no script, no connection, no form: even a tampered
/// report cannot run code with the login cookie. (Not `sandbox`: its opaque origin would keep the
/// SameSite=Strict cookie off the report's own images.)
pub const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
     form-action 'none'; base-uri 'none'; frame-ancestors 'self'";

/// The largest run file served (a report with its inline charts is a few MB).
const MAX_FILE: u64 = 64 * 1024 * 1024;

pub fn secure_headers(h: &mut HeaderMap, csp: &'static str) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn text(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure_headers(r.headers_mut(), PAGE_CSP);
    r
}

pub async fn index() -> Response {
    text(INDEX, "text/html; charset=utf-8")
}

pub async fn asset(UrlPath(name): UrlPath<String>) -> Response {
    match name.as_str() {
        "app.js" => text(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => text(APP_CSS, "text/css; charset=utf-8"),
        _ => error(StatusCode::NOT_FOUND, "no such asset"),
    }
}

/// `GET /files/RUN/eval/FILE`: a file of a run's `eval/` directory (HTML, PNG, SVG, JSON), read-only.
/// Nothing else of a run is served: checkpoints, the dataset reference and logs stay out.
pub async fn run_file(State(state): State<Arc<LabState>>, UrlPath(path): UrlPath<String>) -> Response {
    let Some((run, rest)) = split_run_path(&state.root, &path) else {
        return error(StatusCode::NOT_FOUND, "no such run file");
    };
    let content_type = match Path::new(&rest).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => return error(StatusCode::NOT_FOUND, "no such run file"),
    };
    let file = run.join("eval").join(&rest);
    let bytes = tokio::task::spawn_blocking(move || read_plain_file(&file)).await.ok().flatten();
    let Some(bytes) = bytes else { return error(StatusCode::NOT_FOUND, "no such run file") };
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure_headers(r.headers_mut(), REPORT_CSP);
    r
}

/// `RUN/eval/REST` -> (the run's directory, REST), for the longest run name that fits, with REST a plain
/// relative path (no `..`, no hidden part).
fn split_run_path(root: &Path, path: &str) -> Option<(std::path::PathBuf, String)> {
    // The root itself as a run ("."): browsers drop the "./" of "/files/./eval/...".
    let mut best =
        path.strip_prefix("eval/").and_then(|rest| crate::runs::resolve(root, ".").map(|dir| (dir, rest.to_string())));
    let mut from = 0;
    while let Some(i) = path[from..].find("/eval/").map(|i| i + from) {
        let (name, rest) = (&path[..i], &path[i + "/eval/".len()..]);
        if let Some(dir) = crate::runs::resolve(root, name) {
            best = Some((dir, rest.to_string()));
        }
        from = i + 1;
    }
    let (dir, rest) = best?;
    let plain = !rest.is_empty()
        && Path::new(&rest)
            .components()
            .all(|c| matches!(c, Component::Normal(p) if !p.to_string_lossy().starts_with('.')));
    plain.then_some((dir, rest))
}

/// A regular file (not a link, not a device) of at most [`MAX_FILE`] bytes.
fn read_plain_file(p: &Path) -> Option<Vec<u8>> {
    let m = std::fs::symlink_metadata(p).ok()?;
    if !m.is_file() || m.len() > MAX_FILE {
        return None;
    }
    std::fs::read(p).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_paths_stay_inside_eval() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("sweep/trials/1");
        std::fs::create_dir_all(run.join("eval/images")).unwrap();
        std::fs::write(run.join("manifest.json"), "{}").unwrap();
        let (d, rest) = split_run_path(dir.path(), "sweep/trials/1/eval/images/a.png").unwrap();
        assert_eq!((d, rest.as_str()), (run.clone(), "images/a.png"));
        assert!(split_run_path(dir.path(), "sweep/trials/1/eval/../manifest.json").is_none());
        assert!(split_run_path(dir.path(), "sweep/trials/1/eval/.hidden").is_none());
        assert!(split_run_path(dir.path(), "../x/eval/report.html").is_none());
        assert!(split_run_path(dir.path(), "sweep/eval/report.html").is_none(), "not a run");
        assert!(split_run_path(dir.path(), "/etc/eval/passwd").is_none());
        assert!(split_run_path(dir.path(), "eval/report.html").is_none(), "the root is no run");
        std::fs::write(dir.path().join("manifest.json"), "{}").unwrap();
        let (d, rest) = split_run_path(dir.path(), "eval/report.html").unwrap();
        assert_eq!((d, rest.as_str()), (dir.path().to_path_buf(), "report.html"));
    }
}
