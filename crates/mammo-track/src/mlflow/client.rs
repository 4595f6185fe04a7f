//! A small blocking client for the endpoints tracking uses, with bounded timeouts: a server that is
//! down answers "connection refused" at once, one that is slow costs at most [`REQUEST_TIMEOUT`] per
//! request (artifacts: [`UPLOAD_TIMEOUT`]).

use std::time::Duration;

use serde_json::Value;

use super::api::{self, Metric, RunStatus};
use super::target::Target;

/// Connecting (DNS and TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One API call, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// One artifact upload (a model file is a few MB).
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// An answer larger than this is not read (ours are a few hundred bytes).
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// Why a request failed: one line naming the URL (never a credential).
#[derive(Debug, Clone)]
pub struct MlflowError {
    /// The message.
    pub message: String,
    /// The server could not be reached or did not answer in time (as opposed to refusing the request).
    pub unreachable: bool,
}

impl std::fmt::Display for MlflowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MlflowError {}

/// A run on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRef {
    /// `run_id`.
    pub run_id: String,
    /// `artifact_uri` (`mlflow-artifacts:/...` when the server proxies artifacts).
    pub artifact_uri: String,
}

/// The client.
pub struct Client {
    target: Target,
    agent: ureq::Agent,
    upload_agent: ureq::Agent,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(timeout))
        // Status codes are answers to read (MLflow's error_code), not transport errors.
        .http_status_as_error(false)
        // The credential header must not follow a redirect elsewhere; the API does not redirect.
        .max_redirects(0)
        .user_agent(concat!("mammogan/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl Client {
    /// A client for `target`.
    pub fn new(target: Target) -> Client {
        Client { target, agent: agent(REQUEST_TIMEOUT), upload_agent: agent(UPLOAD_TIMEOUT) }
    }

    /// The server, as shown.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn fail(&self, path: &str, what: impl std::fmt::Display, unreachable: bool) -> MlflowError {
        MlflowError { message: format!("{}: {what}", self.target.url(path)), unreachable }
    }

    fn answer(
        &self,
        path: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, MlflowError> {
        let mut response = r.map_err(|e| self.fail(path, e, true))?;
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| self.fail(path, e, true))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let why =
            api::error_text(&value).unwrap_or_else(|| text.chars().take(200).collect::<String>().replace('\n', " "));
        // A gateway in front of a server that is down answers 502-504: that is unreachable too.
        Err(self.fail(path, format!("HTTP {} {why}", status.as_u16()), matches!(status.as_u16(), 502..=504)))
    }

    fn with_auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match self.target.authorization() {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, MlflowError> {
        let r = self.with_auth(self.agent.post(self.target.url(path))).content_type("application/json");
        self.answer(path, r.send(body.to_string()))
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let mut r = self.with_auth(self.agent.get(self.target.url(path)));
        for (k, v) in query {
            r = r.query(*k, *v);
        }
        self.answer(path, r.call())
    }

    /// The id of the experiment named in the target, created if it does not exist.
    pub fn experiment_id(&self) -> Result<String, MlflowError> {
        let name = self.target.experiment.clone();
        let get = "api/2.0/mlflow/experiments/get-by-name";
        match self.get(get, &[("experiment_name", &name)]) {
            Ok(v) => return api::experiment_id_of(&v).ok_or_else(|| self.fail(get, "no experiment_id", false)),
            Err(e) if e.message.contains("RESOURCE_DOES_NOT_EXIST") => {}
            Err(e) => return Err(e),
        }
        let create = "api/2.0/mlflow/experiments/create";
        match self.post(create, &api::create_experiment(&name)) {
            Ok(v) => api::created_experiment_id(&v).ok_or_else(|| self.fail(create, "no experiment_id", false)),
            // Another process created it meanwhile.
            Err(e) if e.message.contains("ALREADY_EXISTS") => {
                let v = self.get(get, &[("experiment_name", &name)])?;
                api::experiment_id_of(&v).ok_or_else(|| self.fail(get, "no experiment_id", false))
            }
            Err(e) => Err(e),
        }
    }

    /// runs/create.
    pub fn create_run(
        &self,
        experiment_id: &str,
        start_ms: u64,
        tags: &[(String, String)],
    ) -> Result<RunRef, MlflowError> {
        let path = "api/2.0/mlflow/runs/create";
        let v = self.post(path, &api::create_run(experiment_id, start_ms, tags))?;
        let (run_id, artifact_uri) =
            api::created_run(&v).ok_or_else(|| self.fail(path, "no run.info.run_id", false))?;
        Ok(RunRef { run_id, artifact_uri })
    }

    /// runs/log-batch, one request (the caller keeps within the limits).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        self.post("api/2.0/mlflow/runs/log-batch", &api::log_batch(run_id, metrics, params, tags)).map(|_| ())
    }

    /// runs/get: the highest step the server holds for each metric key of `run_id` (MLflow keeps a
    /// run's latest value per key as the one with the highest step).
    pub fn latest_steps(&self, run_id: &str) -> Result<Vec<(String, u64)>, MlflowError> {
        let v = self.get("api/2.0/mlflow/runs/get", &[("run_id", run_id)])?;
        Ok(api::latest_steps(&v))
    }

    /// runs/update.
    pub fn update_run(&self, run_id: &str, status: RunStatus, end_ms: Option<u64>) -> Result<(), MlflowError> {
        self.post("api/2.0/mlflow/runs/update", &api::update_run(run_id, status, end_ms)).map(|_| ())
    }

    /// Uploads one artifact through the server's artifact proxy.
    pub fn put_artifact(&self, artifact_uri: &str, rel: &str, bytes: &[u8]) -> Result<(), MlflowError> {
        let path = api::artifact_put_path(artifact_uri, rel).ok_or_else(|| MlflowError {
            message: format!(
                "{}: the run's artifact store {artifact_uri} is not the server's proxy (start it with --serve-artifacts)",
                self.target.shown()
            ),
            unreachable: false,
        })?;
        let r = self.with_auth(self.upload_agent.put(self.target.url(&path))).content_type("application/octet-stream");
        self.answer(&path, r.send(bytes)).map(|_| ())
    }
}
