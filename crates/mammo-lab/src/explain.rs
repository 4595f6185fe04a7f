//! `POST /api/explain?run=NAME`: a mammogram dropped on the page (DICOM, PNG or PGM, told apart by
//! content), explained by `mammo-serve`'s `explain_image_with`, the code of `serve` and `explain`, with
//! the model of a run of the lab's root. The same hostile-input limits as `serve`: the declared body size
//! against the cap before waiting, admission (bounded concurrency, then 503) before the body is read,
//! the body read under the cap and a deadline, the image's own header checked against the pixel cap
//! before decoding. Decoded from memory; nothing is written anywhere.
//!
//! The answer: the `ExplainResult` (score, regions with their P(malignant), size, spacing) and four
//! layers at the original size as PNG data URIs: the overlay of the highlight map (what `explain`
//! writes), the saliency baseline's overlay, the raw image as a viewer shows it, the heatmap alone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mammo_serve::server::{MAX_IMAGE_PIXELS, SPACING_RANGE_MM, body, check_declared_size};
use serde_json::json;

use crate::LabState;
use crate::api::{error, query_values};

/// Tile stride as a fraction of the patch size: `explain`'s and `serve`'s default.
const STRIDE: f64 = 0.5;
/// How long an upload may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The inference device (chosen once) and the model of the run last asked for.
pub struct Explainer {
    spec: String,
    threads: usize,
    device: OnceLock<Result<mammo_nn::Device, String>>,
    loaded: Mutex<Option<(PathBuf, mammo_nn::Models)>>,
}

enum Failure {
    /// The client's fault: a 400 with this message.
    Input(String),
    /// Ours: a generic 500; this goes to the log only.
    Internal(String),
}

impl Explainer {
    pub fn new(spec: &str, threads: usize) -> Self {
        Explainer { spec: spec.to_string(), threads, device: OnceLock::new(), loaded: Mutex::new(None) }
    }

    fn device(&self) -> Result<mammo_nn::Device, Failure> {
        self.device
            .get_or_init(|| {
                mammo_nn::select_device(&self.spec, self.threads).map(|(d, _)| d).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(Failure::Internal)
    }

    /// Explains `bytes` with the model of `run_dir` (loaded once, kept until another run is asked for).
    fn explain(&self, run_dir: &Path, bytes: &[u8], spacing: Option<f64>) -> Result<serde_json::Value, Failure> {
        check_declared_size(bytes).map_err(Failure::Input)?;
        let m = mammo_io::read_image_bytes(Path::new("upload"), bytes).map_err(|e| Failure::Input(e.to_string()))?;
        if m.width as u64 * m.height as u64 > MAX_IMAGE_PIXELS {
            return Err(Failure::Input(format!(
                "upload: image of {} x {} pixels (more than {MAX_IMAGE_PIXELS})",
                m.width, m.height
            )));
        }
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.as_ref().is_none_or(|(p, _)| p != run_dir) {
            *loaded = None;
            let device = self.device()?;
            let models = mammo_nn::Models::load_on(run_dir, &device).map_err(|e| Failure::Internal(e.to_string()))?;
            *loaded = Some((run_dir.to_path_buf(), models));
        }
        let models = &loaded.as_ref().expect("loaded above").1;
        let x = mammo_serve::explain_image_with(models, &m, "upload", spacing, STRIDE, true).map_err(|e| match e {
            mammo_serve::ExplainError::Input(msg) => Failure::Input(msg),
            mammo_serve::ExplainError::Model(e) => Failure::Internal(e.to_string()),
        })?;
        drop(loaded);
        let r = &x.result;
        let (w, h) = (r.width, r.height);
        let saliency = x.baselines.iter().find(|(n, _)| *n == "saliency").map(|(_, map)| {
            let max = map.iter().copied().filter(|v| v.is_finite()).fold(0.0f32, f32::max).max(1e-6);
            x.overlay_of(map, max)
        });
        let uri = |png: Vec<u8>| mammo_eval::png_data_uri(&png);
        let raw: Vec<f32> = x.display.iter().map(|&v| f32::from(v) / 255.0).collect();
        Ok(json!({
            "result": r,
            "layers": {
                "map": uri(x.overlay_png()),
                "saliency": saliency.map(uri),
                "raw": uri(mammo_eval::gray_png(&raw, w, h, 0.0, 1.0)),
                "heatmap": uri(x.heatmap_png()),
            },
        }))
    }
}

fn spacing(query: Option<&str>) -> Result<Option<f64>, String> {
    let Some(v) = query_values(query, "spacing_mm").into_iter().next() else { return Ok(None) };
    let (lo, hi) = (SPACING_RANGE_MM.start(), SPACING_RANGE_MM.end());
    v.parse::<f64>()
        .ok()
        .filter(|s| SPACING_RANGE_MM.contains(s))
        .map(Some)
        .ok_or_else(|| format!("spacing_mm={v}: must be a pixel spacing from {lo} to {hi} mm"))
}

fn closing(mut r: Response) -> Response {
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

pub async fn explain(State(state): State<Arc<LabState>>, RawQuery(q): RawQuery, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let too_large = || closing(error(StatusCode::PAYLOAD_TOO_LARGE, &format!("upload over {} bytes", state.max_body)));
    // Everything that can be refused from the head is refused before waiting or reading.
    let name = query_values(q.as_deref(), "run").into_iter().next().unwrap_or_default();
    let Some(run_dir) = crate::runs::resolve(&state.root, &name) else {
        return closing(error(StatusCode::NOT_FOUND, "no such run"));
    };
    if !run_dir.join("model").join("model.json").is_file() {
        return closing(error(StatusCode::BAD_REQUEST, "this run has no exported model (model/)"));
    }
    let spacing = match spacing(q.as_deref()) {
        Ok(s) => s,
        Err(e) => return closing(error(StatusCode::BAD_REQUEST, &e)),
    };
    let declared: Option<u64> =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return too_large();
    }
    let Some(ticket) = state.admission.admit().await else {
        let mut r = closing(error(StatusCode::SERVICE_UNAVAILABLE, "busy: too many uploads in progress; retry"));
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let bytes = match body::read(body, state.max_body, declared, BODY_TIMEOUT).await {
        Ok(b) => b,
        Err(body::BodyError::TooLarge) => return too_large(),
        Err(body::BodyError::TimedOut) => {
            return closing(error(StatusCode::REQUEST_TIMEOUT, "upload not received in time"));
        }
        Err(body::BodyError::Broken(e)) => return closing(error(StatusCode::BAD_REQUEST, &format!("upload: {e}"))),
    };
    if bytes.is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty upload: send a DICOM, PNG or PGM mammogram");
    }
    let st = Arc::clone(&state);
    let done = tokio::task::spawn_blocking(move || {
        let _ticket = ticket;
        st.explain.explain(&run_dir, &bytes, spacing)
    })
    .await;
    match done {
        Ok(Ok(v)) => {
            let mut r = axum::Json(v).into_response();
            crate::pages::secure_headers(r.headers_mut(), crate::pages::PAGE_CSP);
            r
        }
        Ok(Err(Failure::Input(msg))) => error(StatusCode::BAD_REQUEST, &msg),
        Ok(Err(Failure::Internal(detail))) => {
            tracing::error!("explain: {detail}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; the lab's log has the details")
        }
        Err(e) => {
            tracing::error!("explain failed: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; the lab's log has the details")
        }
    }
}
