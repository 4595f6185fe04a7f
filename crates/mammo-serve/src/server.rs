//! The HTTP server (`mammogan serve`), shaped by SageMaker's inference contract:
//!
//! - `GET /ping`: 200 `{"status":"ok"}`. The model is loaded before the socket is bound, so the first
//!   ping after "serving on ADDR" already answers 200.
//! - `POST /invocations`: the body is one mammogram (DICOM, PNG or PGM, told apart by content; the
//!   Content-Type is not needed). Answers JSON: the case score, the top regions and the highlight map as
//!   a base64 PNG at the original size (see [`Invocation`]); with `Accept: image/png`, the overlay PNG
//!   itself (score in the `X-Mammogan-Score` header). `?spacing_mm=MM` gives the pixel spacing of images
//!   that carry none.
//! - `GET /execution-parameters`: for SageMaker batch transform.
//!
//! Bad input gets a 4xx with `{"error": "..."}` and never takes the server down: 400 for a body that is
//! no readable mammogram, 401 without the token (when one is set), 404/405 for other paths and
//! methods, 413 over the body limit. Inference runs on a blocking thread, one request at a time (the
//! backend already uses every core per request); pings are answered meanwhile.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Serialize;

use crate::explain::{ExplainError, ExplainResult, explain_image};

/// How `serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The address to bind (port 0: any free port; the bound address is passed to `on_listening`).
    pub addr: SocketAddr,
    /// When set, `POST /invocations` needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// SageMaker mode: binding to every interface without a token is allowed (see [`check_bind`]).
    pub sagemaker: bool,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// Tile stride as a fraction of the patch size.
    pub stride: f64,
}

/// The bind rule: a loopback address is always fine; any other address needs a token, except in
/// SageMaker mode, whose endpoint sends no token and is reachable only through SageMaker's own
/// authenticated `InvokeEndpoint` (inside the container's private network).
pub fn check_bind(addr: &SocketAddr, token: Option<&str>, sagemaker: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || sagemaker || token.is_some_and(|t| !t.is_empty()) {
        return Ok(());
    }
    Err(format!(
        "{addr}: serving on a non-loopback address needs a token (--token or MAMMOGAN_TOKEN); clients then send \
         `Authorization: Bearer TOKEN`"
    ))
}

struct AppState {
    models: Mutex<mammo_nn::Models>,
    token: Option<String>,
    stride: f64,
    max_body: usize,
}

/// The JSON answer of `POST /invocations`.
#[derive(Serialize)]
pub struct Invocation {
    #[serde(flatten)]
    pub result: ExplainResult,
    /// The highlight map at the original size as a colour-mapped PNG (the same as `explain`'s
    /// `heatmap.png`), base64; its colour scale runs from 0 to `heatmap_max`.
    pub heatmap_png_base64: String,
    pub heatmap_max: f32,
}

/// Serves `models` until SIGTERM or SIGINT. `on_listening` gets the bound address once the socket is
/// ready for requests.
pub fn serve(
    models: mammo_nn::Models,
    opts: &ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    check_bind(&opts.addr, opts.token.as_deref(), opts.sagemaker).map_err(anyhow::Error::msg)?;
    let state = Arc::new(AppState {
        models: Mutex::new(models),
        token: opts.token.clone().filter(|t| !t.is_empty()),
        stride: opts.stride,
        max_body: opts.max_body,
    });
    let app = router(state, opts.max_body);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|e| anyhow::anyhow!("{}: cannot listen: {e}", opts.addr))?;
        on_listening(listener.local_addr()?);
        axum::serve(listener, app).with_graceful_shutdown(shutdown()).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/invocations", post(invocations))
        .route("/execution-parameters", get(execution_parameters))
        .fallback(|uri: Uri| async move { error(StatusCode::NOT_FOUND, format!("{}: no such endpoint", uri.path())) })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed (GET /ping, POST /invocations)".into())
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn ping() -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok" }))).into_response()
}

async fn execution_parameters(State(state): State<Arc<AppState>>) -> Response {
    let mb = (state.max_body / (1024 * 1024)).clamp(1, 100);
    axum::Json(serde_json::json!({
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": mb,
    }))
    .into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn spacing_param(uri: &Uri) -> Result<Option<f64>, String> {
    for pair in uri.query().unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("spacing_mm=") {
            return v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Some)
                .ok_or_else(|| format!("spacing_mm={v}: must be a positive number of mm"));
        }
    }
    Ok(None)
}

async fn invocations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    if let Some(token) = &state.token {
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.trim().as_bytes(), token.as_bytes())) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong `Authorization: Bearer TOKEN`".into());
        }
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {} bytes", state.max_body));
        }
        Err(e) => return error(e.status(), e.body_text()),
    };
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty request body: send a DICOM, PNG or PGM mammogram".into());
    }
    let spacing = match spacing_param(&uri) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let want_png = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("image/png") && !a.contains("application/json"));
    let st = Arc::clone(&state);
    let joined = tokio::task::spawn_blocking(move || infer(&st, &body, spacing, want_png)).await;
    let response = match joined {
        Ok(Ok(r)) => r,
        Ok(Err((status, msg))) => error(status, msg),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("inference failed: {e}")),
    };
    tracing::info!("POST /invocations {} in {:.2} s", response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// Decodes the body and explains it. Runs on a blocking thread.
fn infer(
    state: &AppState,
    body: &[u8],
    spacing: Option<f64>,
    want_png: bool,
) -> Result<Response, (StatusCode, String)> {
    let internal = |e: String| (StatusCode::INTERNAL_SERVER_ERROR, e);
    // The readers sniff files by content; the body goes to a private temporary file, whose path is
    // replaced by "request body" in any message.
    let mut file = tempfile::NamedTempFile::new().map_err(|e| internal(format!("temporary file: {e}")))?;
    std::io::Write::write_all(&mut file, body).map_err(|e| internal(format!("temporary file: {e}")))?;
    let path = file.path().to_path_buf();
    let m = mammo_io::read_image(&path)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string().replace(&path.display().to_string(), "request body")))?;
    drop(file);
    let models = state.models.lock().unwrap_or_else(|p| p.into_inner());
    let explained = explain_image(&models, &m, "request body", spacing, state.stride).map_err(|e| match e {
        ExplainError::Input(msg) => (StatusCode::BAD_REQUEST, msg),
        ExplainError::Model(e) => internal(e.to_string()),
    })?;
    drop(models);
    tracing::info!(
        "{}x{} px, score {:.4}, {} regions",
        explained.result.width,
        explained.result.height,
        explained.result.score,
        explained.result.regions.len()
    );
    if want_png {
        let mut r = (StatusCode::OK, explained.overlay_png()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        if let Ok(v) = HeaderValue::from_str(&format!("{:.6}", explained.result.score)) {
            r.headers_mut().insert("x-mammogan-score", v);
        }
        return Ok(r);
    }
    let heatmap_png_base64 = base64::engine::general_purpose::STANDARD.encode(explained.heatmap_png());
    let heatmap_max = explained.heat_max();
    Ok(axum::Json(Invocation { result: explained.result, heatmap_png_base64, heatmap_max }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_rule() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(check_bind(&lo, None, false).is_ok());
        assert!(check_bind(&v6, None, false).is_ok());
        assert!(check_bind(&any, None, false).unwrap_err().contains("token"));
        assert!(check_bind(&any, Some(""), false).is_err());
        assert!(check_bind(&any, Some("s3cret"), false).is_ok());
        assert!(check_bind(&any, None, true).is_ok());
    }

    #[test]
    fn token_comparison_and_spacing() {
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert_eq!(spacing_param(&"/invocations?spacing_mm=0.2".parse().unwrap()), Ok(Some(0.2)));
        assert_eq!(spacing_param(&"/invocations".parse().unwrap()), Ok(None));
        assert!(spacing_param(&"/invocations?spacing_mm=-1".parse().unwrap()).is_err());
    }
}
