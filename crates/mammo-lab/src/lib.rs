//! The lab (`mammogan lab DIR`): a web application over a directory of runs. Runs and their status,
//! live training curves, comparisons, the evaluation figures and report, and explain for a dropped
//! mammogram.
//!
//! Where to start reading:
//! - [`runs`]: finding runs under the root and summarising each (status as `mammogan status` tells it).
//! - [`curves`]: `metrics.jsonl` from a record on (what the live curve polls).
//! - [`api`]: the JSON endpoints; [`pages`]: the one HTML page and its assets (built into the binary,
//!   nothing fetched from elsewhere) and the run files served read-only (`report.html`, galleries).
//! - [`explain`]: `POST /api/explain`, through `mammo-serve`'s explain code and hostile-input limits.
//! - [`auth`]: the token rule (as `serve`'s: a token is required off loopback) with a login cookie.
//!
//! The connection handling (connection cap, header and write timeouts, graceful shutdown) is
//! `mammo-serve`'s listener. *Invariant:* the lab writes nothing into a run; it opens run files only for
//! reading, and shows runs by their names relative to the root, never a path.

pub mod api;
pub mod auth;
pub mod curves;
pub mod explain;
pub mod pages;
pub mod runs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use mammo_serve::server::{admission, listener};

/// How `lab` runs.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// The directory of runs.
    pub root: PathBuf,
    /// The address to bind (port 0: any free port).
    pub addr: SocketAddr,
    /// Required off loopback (the same rule as `serve`: [`mammo_serve::check_bind`]).
    pub token: Option<String>,
    /// The largest explain upload, in bytes.
    pub max_body: usize,
    /// Inference device: auto, cpu, cuda[:N] or wgpu[:N] (Vulkan; `mammogan env` lists the adapters).
    pub device: String,
    /// CPU threads for inference (0: all).
    pub threads: usize,
}

/// What the handlers share.
pub struct LabState {
    pub root: PathBuf,
    pub token: Option<String>,
    pub max_body: usize,
    pub explain: explain::Explainer,
    pub admission: Arc<admission::Admission>,
}

impl LabState {
    pub fn new(opts: &LabOptions) -> Arc<Self> {
        Arc::new(LabState {
            root: opts.root.clone(),
            token: opts.token.clone(),
            max_body: opts.max_body,
            explain: explain::Explainer::new(&opts.device, opts.threads),
            // As `serve`'s defaults: one upload decoding while one is explained, a short queue, then 503.
            admission: admission::Admission::new(2, 4),
        })
    }
}

/// The application: every route behind the token guard.
pub fn router(state: Arc<LabState>) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/assets/{name}", get(pages::asset))
        .route("/files/{*path}", get(pages::run_file))
        .route("/login", post(auth::login))
        .route("/api/runs", get(api::runs))
        .route("/api/run", get(api::run))
        .route("/api/curves", get(api::curves))
        .route("/api/compare", get(api::compare))
        .route("/api/explain", post(explain::explain))
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), auth::guard))
        .with_state(state)
}

/// Serves the lab until SIGTERM or SIGINT; `on_listening` gets the bound address.
pub fn serve(opts: &LabOptions, on_listening: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    if let Some(t) = &opts.token {
        mammo_serve::check_token(t).map_err(anyhow::Error::msg)?;
    }
    mammo_serve::check_bind(&opts.addr, opts.token.as_deref(), false).map_err(anyhow::Error::msg)?;
    if !opts.root.is_dir() {
        anyhow::bail!("{}: not a directory of runs", opts.root.display());
    }
    let app = router(LabState::new(opts));
    let limits = listener::ConnLimits {
        max_connections: 256,
        header_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(30),
        grace: Duration::from_secs(2),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let served = runtime.block_on(async move {
        let stop = mammo_serve::server::shutdown_signal()?;
        let tcp = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|e| anyhow::anyhow!("{}: cannot listen: {e}", opts.addr))?;
        on_listening(tcp.local_addr()?);
        listener::run(tcp, app, &limits, stop).await;
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    served
}
