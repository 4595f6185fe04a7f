//! The HTTP server (`mammogan serve`), shaped by SageMaker's inference contract:
//!
//! - `GET /ping`: 200 `{"status":"ok"}`. The model is loaded before the socket is bound, so the first
//!   ping after "serving on ADDR" already answers 200.
//! - `POST /invocations`: the body is one mammogram (DICOM, PNG or PGM, told apart by content; the
//!   Content-Type is not needed). Answers JSON: the case score, the top regions and the highlight map as
//!   a base64 PNG at the original size (see [`Invocation`]); with `Accept: image/png`, the overlay PNG
//!   itself (score in the `X-Mammogan-Score` header). `?spacing_mm=MM` gives the pixel spacing of images
//!   that carry none, from [`SPACING_RANGE_MM`] (0.01 to 1 mm: every mammography detector and scanner
//!   lies well inside it). Behind SageMaker, which forwards no query string and returns no custom
//!   header, the spacing comes in and the score goes out through `X-Amzn-SageMaker-Custom-Attributes`
//!   (see [`crate::custom_attributes`]).
//! - `GET /execution-parameters`: for SageMaker batch transform.
//!
//! Bad input gets a 4xx with `{"error": "..."}` and never takes the server down: 400 for a body that is
//! no readable mammogram, 401 without the token (when one is set), 404/405 for other paths and methods,
//! 408 for a body not received in time, 413 over the body limit, 503 with `Retry-After` when the server
//! is full. A 500 says only "internal error" and a request id (every answer carries `X-Request-Id`); the
//! detail goes to the log under that id. A panic anywhere in a request is such a 500, never a dropped
//! connection or a response holding the panic text.
//!
//! Hostile clients ([`Limits`]): the token is checked from the headers before any of the body is read,
//! and the connection closed after the 401 without draining it. Request heads must arrive within the
//! header timeout (which is also the keep-alive idle timeout), bodies within the body timeout, and a
//! response nobody reads ends the connection after the write timeout. At most `max_connections` are open;
//! at most `max_in_flight` requests read their body, decode and infer at once (inference itself runs one
//! at a time: the backend already uses every core), `queue` more wait, the rest get 503. Bodies are
//! decoded from memory, never written to disk. SIGTERM or SIGINT: stop accepting, finish what is in
//! progress for up to `grace`, then exit even if a client is still sending.
//!
//! ## Memory budget
//! 1.5 GiB at the defaults, which no sequence of requests exceeds (`tests/soak/run` holds the server to
//! it under a cgroup memory limit). At most two requests hold memory at once (`max_in_flight`): one in
//! inference, one reading its body or decoding.
//!
//! | what | bound | at the defaults |
//! |---|---|---|
//! | model and runtime | measured: 11 MiB idle with the default model (448 KB of weights) | 11 MiB |
//! | open connections | `max_connections` x 64 KiB (hyper's read buffer, `listener::MAX_BUF`) | 32 MiB |
//! | the request in inference | measured: 520 MiB peak for a 4800 x 5760 (27.6 MP) mammogram, body and decode included; scaled to [`MAX_IMAGE_PIXELS`] | 760 MiB |
//! | the other request | its body (`max_body`, x2 while a chunked body grows) and its decode (40 MP x 6 bytes: codec output and 16-bit samples) | 370 MiB |
//!
//! That is 1.2 GiB in the worst case; the rest is margin for the allocator. Measured: three concurrent
//! 27.6 MP requests peak at 630 MiB; the soak, 720 MiB. Raising `max_body` or `max_in_flight` raises
//! the budget accordingly. Every image is checked against [`MAX_IMAGE_PIXELS`] from its own header
//! (DICOM Rows/Columns, PNG IHDR, PGM) before it is decoded, and the decoders hold every compressed
//! stream to those attributes, so no decode can allocate for more.
//!
//! Queued requests hold nothing but their connection: admission comes before the body is read.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine;
use serde::Serialize;

use crate::explain::{ExplainError, ExplainResult, explain_image};

// Public for `mammo-lab`, which serves its pages with the same hostile-client defences.
pub mod admission;
pub mod auth;
pub mod body;
pub mod listener;

pub use auth::check_token;

/// The pixel spacings `?spacing_mm=` accepts, in mm. Detectors and digitisers of mammograms lie between
/// about 0.025 and 0.2 mm; a value far outside is a mistake or an attack (1000 mm once made the server
/// try to allocate 1.2 TB).
pub const SPACING_RANGE_MM: std::ops::RangeInclusive<f64> = 0.01..=1.0;

/// The most pixels of an image the server explains: 40 MP, above the largest full-field detector (about
/// 29 MP). Each image's header is checked against it before decoding (`mammo_io::declared_dimensions`),
/// and the decoded image again before inference.
pub const MAX_IMAGE_PIXELS: u64 = 40_000_000;

/// How much the server lets clients hold. The defaults keep the memory budget of the module doc.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections; one more is answered 503 and closed.
    pub max_connections: usize,
    /// `POST /invocations` reading their body, decoding or inferring at once.
    pub max_in_flight: usize,
    /// Requests waiting for one of those places; one more is answered 503.
    pub queue: usize,
    /// A request head must arrive within this; also how long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// A request body must arrive within this, counted from admission (408 beyond).
    pub body_timeout: Duration,
    /// A response the client does not read for this long ends the connection.
    pub write_timeout: Duration,
    /// After SIGTERM: how long requests in progress may take before the server exits anyway.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            max_in_flight: 2,
            queue: 8,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(5),
        }
    }
}

/// The default largest request body: an uncompressed 29 MP 16-bit mammogram is 58 MB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

/// How `serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The address to bind (port 0: any free port; the bound address is passed to `on_listening`).
    pub addr: SocketAddr,
    /// When set, `POST /invocations` needs `Authorization: Bearer TOKEN` (see [`check_token`]).
    pub token: Option<String>,
    /// SageMaker mode: binding to every interface without a token is allowed (see [`check_bind`]).
    pub sagemaker: bool,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// Tile stride as a fraction of the patch size.
    pub stride: f64,
    pub limits: Limits,
}

/// The bind rule: a loopback address is always fine; any other address needs a token, except in
/// SageMaker mode, whose endpoint sends no token and is reachable only through SageMaker's own
/// authenticated `InvokeEndpoint` (inside the container's private network).
pub fn check_bind(addr: &SocketAddr, token: Option<&str>, sagemaker: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || sagemaker || token.is_some_and(|t| check_token(t).is_ok()) {
        return Ok(());
    }
    Err(format!(
        "{addr}: serving on a non-loopback address needs a token (--token-file PATH or MAMMOGAN_TOKEN); clients \
         then send `Authorization: Bearer TOKEN`"
    ))
}

struct AppState {
    models: Mutex<mammo_nn::Models>,
    token: Option<String>,
    stride: f64,
    max_body: usize,
    body_timeout: Duration,
    admission: Arc<admission::Admission>,
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
    if let Some(t) = &opts.token {
        check_token(t).map_err(anyhow::Error::msg)?;
    }
    check_bind(&opts.addr, opts.token.as_deref(), opts.sagemaker).map_err(anyhow::Error::msg)?;
    let limits = &opts.limits;
    let state = Arc::new(AppState {
        models: Mutex::new(models),
        token: opts.token.clone(),
        stride: opts.stride,
        max_body: opts.max_body,
        body_timeout: limits.body_timeout,
        admission: admission::Admission::new(limits.max_in_flight, limits.queue),
    });
    let app = router(state);
    let conn_limits = listener::ConnLimits {
        max_connections: limits.max_connections,
        header_timeout: limits.header_timeout,
        write_timeout: limits.write_timeout,
        grace: limits.grace,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let served = runtime.block_on(async move {
        // Signal handlers before the address is announced: a SIGTERM right after "serving on" must stop
        // the server cleanly, not kill it with the default action.
        let stop = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|e| anyhow::anyhow!("{}: cannot listen: {e}", opts.addr))?;
        on_listening(listener.local_addr()?);
        listener::run(listener, app, &conn_limits, stop).await;
        anyhow::Ok(())
    });
    // What the grace period left running (an inference, a stalled connection) is abandoned, not awaited:
    // dropping a runtime would wait for blocking tasks without end.
    runtime.shutdown_timeout(Duration::from_millis(100));
    tracing::info!("stopped");
    served
}

fn router(state: Arc<AppState>) -> Router {
    let invocations = post(invocations).route_layer(middleware::from_fn_with_state(Arc::clone(&state), authorize));
    Router::new()
        .route("/ping", get(ping))
        .route("/invocations", invocations)
        .route("/execution-parameters", get(execution_parameters))
        .fallback(|uri: Uri| async move { error(StatusCode::NOT_FOUND, format!("{}: no such endpoint", uri.path())) })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed (GET /ping, POST /invocations)".into())
        })
        .layer(middleware::from_fn(context))
        .with_state(state)
}

/// SIGTERM or SIGINT, as a future; the handlers are installed when this is called.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
}

/// A request's id: in the `X-Request-Id` header of its answer and in every log line about it.
#[derive(Clone)]
struct RequestId(Arc<str>);

fn next_request_id() -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    // Unique across restarts too: the log of one run cannot be confused with another's.
    let prefix = PREFIX.get_or_init(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        format!("{:08x}", (t.as_secs() as u32) ^ std::process::id().rotate_left(16))
    });
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed)).into()
}

/// Gives each request an id, runs it in its own task so that a panic becomes a generic 500 (the
/// panic's text goes to the log), and logs the answer.
async fn context(mut req: Request, next: Next) -> Response {
    let id = next_request_id();
    req.extensions_mut().insert(RequestId(Arc::clone(&id)));
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let started = Instant::now();
    let mut response = match tokio::spawn(next.run(req)).await {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_panic() { panic_text(e.into_panic()) } else { e.to_string() };
            internal_error(&id, &format!("the handler failed: {why}"))
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    if path == "/ping" && status == 200 {
        tracing::debug!("[{id}] {method} {path} {status}");
    } else {
        tracing::info!("[{id}] {method} {path} {status} in {:.2} s", started.elapsed().as_secs_f64());
    }
    response
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p.downcast_ref::<&str>().map_or_else(|| "panic".to_string(), |s| s.to_string()),
    }
}

/// The answer to a failure of ours: nothing of `detail` reaches the client.
fn internal_error(id: &str, detail: &str) -> Response {
    tracing::error!("[{id}] {detail}");
    let body = serde_json::json!({ "error": "internal error; the server log has the details", "request_id": id });
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// 401 from the headers alone; the body is never read, and the connection is closed rather than drained.
async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match &state.token {
        Some(token) if !auth::authorized(req.headers(), token) => {
            let mut r =
                closing(error(StatusCode::UNAUTHORIZED, "missing or wrong `Authorization: Bearer TOKEN`".into()));
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
        _ => next.run(req).await,
    }
}

/// Marks an answer given before the body was read: hyper then closes the connection instead of reading
/// the rest of the body to reuse it.
fn closing(mut r: Response) -> Response {
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
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

fn spacing_param(uri: &Uri) -> Result<Option<f64>, String> {
    for pair in uri.query().unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("spacing_mm=") {
            let (lo, hi) = (SPACING_RANGE_MM.start(), SPACING_RANGE_MM.end());
            return v
                .parse::<f64>()
                .ok()
                .filter(|s| SPACING_RANGE_MM.contains(s))
                .map(Some)
                .ok_or_else(|| format!("spacing_mm={v}: must be a pixel spacing from {lo} to {hi} mm"));
        }
    }
    Ok(None)
}

/// Refuses an image whose own header (DICOM Rows/Columns, PNG IHDR, PGM) declares more than
/// [`MAX_IMAGE_PIXELS`], before anything is allocated for its pixels: 389 bytes of PNG can declare
/// 20000 x 20000, and a few hundred bytes of DICOM 16000 x 16000 (the decoders' own cap,
/// `mammo_io::budget::MAX_PIXELS`, is for files on disk and is 6x this). A body no header can be read
/// from is left to the decoders, which name the problem.
pub fn check_declared_size(body: &[u8]) -> Result<(), String> {
    if let Ok((w, h)) = mammo_io::declared_dimensions(Path::new("request body"), body) {
        let (w, h) = (w as u64, h as u64);
        if w.saturating_mul(h) > MAX_IMAGE_PIXELS {
            return Err(format!("request body: image of {w} x {h} pixels (more than {MAX_IMAGE_PIXELS})"));
        }
    }
    Ok(())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

async fn invocations(
    State(state): State<Arc<AppState>>,
    Extension(RequestId(id)): Extension<RequestId>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let too_large =
        || closing(error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {} bytes", state.max_body)));
    // Everything that can be refused from the head is refused before waiting or reading.
    let spacing =
        match spacing_param(&parts.uri).and_then(|q| crate::custom_attributes::request_spacing(&parts.headers, q)) {
            Ok(s) => s,
            Err(e) => return closing(error(StatusCode::BAD_REQUEST, e)),
        };
    let declared = content_length(&parts.headers);
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return too_large();
    }
    let Some(ticket) = state.admission.admit().await else {
        let mut r =
            closing(error(StatusCode::SERVICE_UNAVAILABLE, "busy: too many requests in progress; retry".into()));
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let body = match body::read(body, state.max_body, declared, state.body_timeout).await {
        Ok(b) => b,
        Err(body::BodyError::TooLarge) => return too_large(),
        Err(body::BodyError::TimedOut) => {
            let msg = format!("request body not received within {} s", state.body_timeout.as_secs_f64());
            return closing(error(StatusCode::REQUEST_TIMEOUT, msg));
        }
        Err(body::BodyError::Broken(e)) => {
            return closing(error(StatusCode::BAD_REQUEST, format!("request body: {e}")));
        }
    };
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty request body: send a DICOM, PNG or PGM mammogram".into());
    }
    let want_png = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("image/png") && !a.contains("application/json"));
    let (st, rid) = (Arc::clone(&state), Arc::clone(&id));
    on_blocking_thread(&id, move || {
        // Held until decoding and inference are done, even if the client has hung up meanwhile.
        let _ticket = ticket;
        infer(&st, &rid, &body, spacing, want_png)
    })
    .await
}

/// Runs `work` on a blocking thread and turns its failures into answers: a panic is a generic 500.
async fn on_blocking_thread(id: &str, work: impl FnOnce() -> Result<Response, Failure> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(r)) => r,
        Ok(Err(Failure::Input(msg))) => error(StatusCode::BAD_REQUEST, msg),
        Ok(Err(Failure::Internal(detail))) => internal_error(id, &detail),
        Err(e) => {
            let why = if e.is_panic() { panic_text(e.into_panic()) } else { e.to_string() };
            internal_error(id, &format!("inference failed: {why}"))
        }
    }
}

enum Failure {
    /// The client's fault: a 400 with this message.
    Input(String),
    /// Ours: a generic 500; this goes to the log only.
    Internal(String),
}

/// Decodes the body (from memory: nothing of it is ever written to disk) and explains it. Runs on a
/// blocking thread.
fn infer(state: &AppState, id: &str, body: &[u8], spacing: Option<f64>, want_png: bool) -> Result<Response, Failure> {
    check_declared_size(body).map_err(Failure::Input)?;
    let m = mammo_io::read_image_bytes(Path::new("request body"), body).map_err(|e| Failure::Input(e.to_string()))?;
    // Inference needs several times the image's size: the memory budget holds only up to this cap,
    // whatever the format's own caps allow.
    let pixels = m.width as u64 * m.height as u64;
    if pixels > MAX_IMAGE_PIXELS {
        let (w, h) = (m.width, m.height);
        return Err(Failure::Input(format!("request body: image of {w} x {h} pixels (more than {MAX_IMAGE_PIXELS})")));
    }
    let models = state.models.lock().unwrap_or_else(|p| p.into_inner());
    let explained = explain_image(&models, &m, "request body", spacing, state.stride).map_err(|e| match e {
        ExplainError::Input(msg) => Failure::Input(msg),
        ExplainError::Model(e) => Failure::Internal(e.to_string()),
    })?;
    drop(models);
    drop(m);
    tracing::info!(
        "[{id}] {}x{} px, score {:.4}, {} regions",
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
        crate::custom_attributes::add_score(r.headers_mut(), explained.result.score);
        return Ok(r);
    }
    let heatmap_png_base64 = base64::engine::general_purpose::STANDARD.encode(explained.heatmap_png());
    let heatmap_max = explained.heat_max();
    let score = explained.result.score;
    let mut r = axum::Json(Invocation { result: explained.result, heatmap_png_base64, heatmap_max }).into_response();
    crate::custom_attributes::add_score(r.headers_mut(), score);
    Ok(r)
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
        assert!(check_bind(&any, None, false).unwrap_err().contains("--token-file"));
        assert!(check_bind(&any, Some(""), false).is_err());
        assert!(check_bind(&any, Some("   "), false).is_err());
        assert!(check_bind(&any, Some("s3cret"), false).is_ok());
        assert!(check_bind(&any, None, true).is_ok());
    }

    #[test]
    fn spacing_must_be_a_detector_spacing() {
        let p = |q: &str| spacing_param(&format!("/invocations?{q}").parse().unwrap());
        assert_eq!(p("spacing_mm=0.2"), Ok(Some(0.2)));
        assert_eq!(p("a=1&spacing_mm=0.01"), Ok(Some(0.01)));
        assert_eq!(p("spacing_mm=1"), Ok(Some(1.0)));
        assert_eq!(spacing_param(&"/invocations".parse().unwrap()), Ok(None));
        for bad in ["-1", "0", "0.009", "1.01", "1000", "1e300", "inf", "NaN", "x", ""] {
            let e = p(&format!("spacing_mm={bad}")).unwrap_err();
            assert_eq!(e, format!("spacing_mm={bad}: must be a pixel spacing from 0.01 to 1 mm"));
        }
    }

    #[test]
    fn declared_png_size_is_checked_before_decoding() {
        let ihdr = |w: u32, h: u32| {
            let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
            b.extend_from_slice(&w.to_be_bytes());
            b.extend_from_slice(&h.to_be_bytes());
            b.extend_from_slice(&[16, 0, 0, 0, 0]);
            b
        };
        assert_eq!(
            check_declared_size(&ihdr(20000, 20000)),
            Err("request body: image of 20000 x 20000 pixels (more than 40000000)".into())
        );
        assert_eq!(check_declared_size(&ihdr(u32::MAX, u32::MAX)).map_err(|e| e.contains("more than")), Err(true));
        assert!(check_declared_size(&ihdr(5000, 8000)).is_ok());
        assert!(check_declared_size(b"garbage").is_ok(), "not an image: left to the decoders");
    }

    /// A DICOM of a few hundred bytes whose Rows and Columns say 8000 x 8000 (64 MP, within the
    /// decoders' own cap but not the server's) is refused from its header, before its pixel data is
    /// even looked at.
    #[test]
    fn declared_dicom_size_is_checked_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("small.dcm");
        let spec = mammo_io::dicom::DicomWriteSpec {
            sop_instance_uid: "1.2.3.4".into(),
            study_instance_uid: "1.2.3".into(),
            series_instance_uid: "1.2.3.5".into(),
            strings: Vec::new(),
            bits_stored: 12,
            monochrome1: false,
            spacing_mm: Some(0.1),
            window: None,
        };
        mammo_io::dicom::write_dicom(&p, 4, 4, &[100; 16], &spec, mammo_io::dicom::WriteSyntax::ExplicitVrLittleEndian)
            .unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        assert!(check_declared_size(&bytes).is_ok());
        // (0028,0010) Rows and (0028,0011) Columns, explicit VR US, length 2.
        for element in [0x10u8, 0x11] {
            let head = [0x28, 0x00, element, 0x00, b'U', b'S', 2, 0];
            let at = bytes.windows(8).position(|w| w == head).expect("the element is there") + 8;
            bytes[at..at + 2].copy_from_slice(&8000u16.to_le_bytes());
        }
        assert_eq!(
            check_declared_size(&bytes),
            Err("request body: image of 8000 x 8000 pixels (more than 40000000)".into())
        );
    }

    #[test]
    fn request_ids_differ() {
        let (a, b) = (next_request_id(), next_request_id());
        assert_ne!(a, b);
        assert!(HeaderValue::from_str(&a).is_ok());
    }

    async fn text(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    const GENERIC: &str = "internal error; the server log has the details";

    #[tokio::test]
    async fn internal_errors_carry_no_detail() {
        let r = internal_error("abc-1", "thread panicked at src/secret.rs: index out of bounds");
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(text(r).await, format!(r#"{{"error":"{GENERIC}","request_id":"abc-1"}}"#));
        // A model error is a 500 without its text; bad input a 400 with it.
        let r = on_blocking_thread("abc-2", || Err(Failure::Internal("tensor shape [3] at /secret/path".into()))).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!text(r).await.contains("secret"));
        let r = on_blocking_thread("abc-3", || Err(Failure::Input("request body: not a PNG".into()))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(text(r).await.contains("not a PNG"));
    }

    /// A panic in inference or in any handler is a generic 500 with a request id, never its text.
    #[tokio::test]
    async fn panics_become_generic_500s() {
        let r = on_blocking_thread("abc-4", || panic!("index out of bounds in /secret/decoder.rs")).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = text(r).await;
        assert!(body.contains(GENERIC) && body.contains("abc-4") && !body.contains("secret"), "{body}");

        use tower::ServiceExt;
        async fn boom() -> Response {
            panic!("secret detail at /secret/path")
        }
        let app = Router::new().route("/boom", get(boom)).route("/ping", get(ping)).layer(middleware::from_fn(context));
        let req = |p: &str| axum::http::Request::get(p).body(axum::body::Body::empty()).unwrap();
        let r = app.clone().oneshot(req("/boom")).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = text(r).await;
        assert!(body.contains(GENERIC) && body.contains(&id) && !body.contains("secret"), "{body}");
        // The server goes on.
        assert_eq!(app.oneshot(req("/ping")).await.unwrap().status(), StatusCode::OK);
    }
}
