//! The request bodies and response fields of MLflow's REST API 2.0 that tracking uses, as pure
//! functions, so each shape is tested against the documented one without a server.
//!
//! Endpoints (all under `BASE/api/2.0/`): `mlflow/experiments/get-by-name` (GET, `experiment_name`),
//! `mlflow/experiments/create` (POST `{name}` -> `{experiment_id}`), `mlflow/runs/create` (POST
//! `{experiment_id, start_time, tags}` -> `{run: {info: {run_id, artifact_uri, ...}}}`),
//! `mlflow/runs/log-batch` (POST `{run_id, metrics, params, tags}`), `mlflow/runs/update` (POST
//! `{run_id, status, end_time}`), and the artifact proxy of `mlflow server --serve-artifacts`
//! (`PUT mlflow-artifacts/artifacts/PATH`, where the run's `artifact_uri` is `mlflow-artifacts:/PATH`).

use serde_json::{Value, json};

/// log-batch's documented request limits: at most 1000 metrics, 100 params, 100 tags, 1000 entities in
/// all, 1 MB of JSON. Our batches stay under each.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// See [`MAX_METRICS_PER_BATCH`].
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// See [`MAX_METRICS_PER_BATCH`].
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// See [`MAX_METRICS_PER_BATCH`].
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Keys every backend accepts (250 bytes); longer param or tag values than these are not sent (a
/// truncated param would be a different value, and params cannot be changed once written).
pub const MAX_KEY_BYTES: usize = 250;
/// Param values: 6000 characters since MLflow 2.x (500 before); tags: 5000 guaranteed everywhere.
pub const MAX_PARAM_VALUE_CHARS: usize = 6000;
/// See [`MAX_PARAM_VALUE_CHARS`].
pub const MAX_TAG_VALUE_CHARS: usize = 5000;

/// One metric value as log-batch takes it: `timestamp` in milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// e.g. `classifier/loss`.
    pub key: String,
    /// The value; NaN and the infinities are sent as protobuf's JSON strings.
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The training step.
    pub step: u64,
}

/// The final states of a run (`RunStatus`), and RUNNING for a run continued with `--resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Still training.
    Running,
    /// Ended normally.
    Finished,
    /// Ended by an error.
    Failed,
    /// Ended by a signal (SIGTERM/SIGINT) or never finished.
    Killed,
}

impl RunStatus {
    /// The enum's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
}

/// A double in protobuf's JSON mapping, which MLflow's server parses: a number, or the strings
/// "NaN", "Infinity", "-Infinity" (JSON has no literal for them).
pub fn double(v: f64) -> Value {
    match serde_json::Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => Value::from("NaN"),
        None if v > 0.0 => Value::from("Infinity"),
        None => Value::from("-Infinity"),
    }
}

fn key_values(pairs: &[(String, String)]) -> Value {
    Value::Array(pairs.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect())
}

/// `experiments/create`.
pub fn create_experiment(name: &str) -> Value {
    json!({ "name": name })
}

/// `runs/create`. No `user_id` (deprecated, and a user name is nothing a run should carry).
pub fn create_run(experiment_id: &str, start_time_ms: u64, tags: &[(String, String)]) -> Value {
    json!({ "experiment_id": experiment_id, "start_time": start_time_ms, "tags": key_values(tags) })
}

/// `runs/log-batch`. The caller keeps within the limits ([`batches`] does).
pub fn log_batch(run_id: &str, metrics: &[Metric], params: &[(String, String)], tags: &[(String, String)]) -> Value {
    let metrics: Vec<Value> = metrics
        .iter()
        .map(|m| json!({ "key": m.key, "value": double(m.value), "timestamp": m.timestamp_ms, "step": m.step }))
        .collect();
    json!({ "run_id": run_id, "metrics": metrics, "params": key_values(params), "tags": key_values(tags) })
}

/// `runs/update`: the status, and `end_time` for a run that ended.
pub fn update_run(run_id: &str, status: RunStatus, end_time_ms: Option<u64>) -> Value {
    let mut body = json!({ "run_id": run_id, "status": status.as_str() });
    if let Some(t) = end_time_ms {
        body["end_time"] = json!(t);
    }
    body
}

/// One log-batch request's share of what is to be sent.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    /// Metrics, in order.
    pub metrics: Vec<Metric>,
    /// Params.
    pub params: Vec<(String, String)>,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// Cuts metrics, params and tags into requests within log-batch's limits (params and tags first, so a
/// run shows its config before its curves). Order within each kind is kept.
pub fn batches(metrics: Vec<Metric>, params: Vec<(String, String)>, tags: Vec<(String, String)>) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut params = params.into_iter().peekable();
    let mut tags = tags.into_iter().peekable();
    let mut metrics = metrics.into_iter().peekable();
    while params.peek().is_some() || tags.peek().is_some() || metrics.peek().is_some() {
        let mut b = Batch::default();
        b.params.extend(params.by_ref().take(MAX_PARAMS_PER_BATCH));
        b.tags.extend(tags.by_ref().take(MAX_TAGS_PER_BATCH));
        let room = (MAX_ENTITIES_PER_BATCH - b.params.len() - b.tags.len()).min(MAX_METRICS_PER_BATCH);
        b.metrics.extend(metrics.by_ref().take(room));
        out.push(b);
    }
    out
}

/// Whether a param or tag can be sent as it is (key and value within the documented sizes).
pub fn fits(key: &str, value: &str, max_value_chars: usize) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && value.chars().count() <= max_value_chars
}

/// `experiment.experiment_id` of a get-by-name answer.
pub fn experiment_id_of(answer: &Value) -> Option<String> {
    id_string(&answer["experiment"]["experiment_id"])
}

/// `experiment_id` of an experiments/create answer.
pub fn created_experiment_id(answer: &Value) -> Option<String> {
    id_string(&answer["experiment_id"])
}

/// `run.info.run_id` and `run.info.artifact_uri` of a runs/create answer.
pub fn created_run(answer: &Value) -> Option<(String, String)> {
    let info = &answer["run"]["info"];
    let id = info["run_id"].as_str().or_else(|| info["run_uuid"].as_str())?;
    Some((id.to_string(), info["artifact_uri"].as_str().unwrap_or_default().to_string()))
}

// Experiment ids are strings in the API; a server that answered a number is read the same way.
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `error_code` and `message` of an error answer, as one line.
pub fn error_text(answer: &Value) -> Option<String> {
    let code = answer["error_code"].as_str()?;
    let message = answer["message"].as_str().unwrap_or("").replace('\n', " ");
    Some(if message.is_empty() { code.to_string() } else { format!("{code}: {message}") })
}

/// The API path (after `BASE/`) of an artifact's upload through the artifact proxy, for a run whose
/// `artifact_uri` is `mlflow-artifacts:/EXP/RUN/artifacts` (or `mlflow-artifacts://HOST/...`). `None`
/// for any other artifact store (`s3://`, `file:` ...): those are written by the client directly,
/// which we do not do, so the artifacts of such a run are recorded as not sent.
pub fn artifact_put_path(artifact_uri: &str, rel: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        Some(with_host) => &with_host[with_host.find('/')?..],
        None => rest,
    };
    let root = rest.trim_matches('/');
    if root.is_empty() || rel.is_empty() || rel.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return None;
    }
    Some(format!("api/2.0/mlflow-artifacts/artifacts/{}/{}", encode_path(root), encode_path(rel)))
}

/// Percent-encodes all but unreserved characters and `/`.
pub fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn log_batch_has_the_documented_shape() {
        let m = Metric { key: "classifier/loss".into(), value: 0.5, timestamp_ms: 1_700_000_000_123, step: 7 };
        let body = log_batch("r1", &[m], &[kv("train.steps", "20")], &[kv("mammogan.commit", "abc")]);
        assert_eq!(
            body,
            json!({
                "run_id": "r1",
                "metrics": [{"key": "classifier/loss", "value": 0.5, "timestamp": 1_700_000_000_123u64, "step": 7}],
                "params": [{"key": "train.steps", "value": "20"}],
                "tags": [{"key": "mammogan.commit", "value": "abc"}],
            })
        );
    }

    #[test]
    fn non_finite_values_are_protobuf_json_strings() {
        assert_eq!(double(f64::NAN), json!("NaN"));
        assert_eq!(double(f64::INFINITY), json!("Infinity"));
        assert_eq!(double(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(double(1.25), json!(1.25));
    }

    #[test]
    fn create_update_and_experiment_bodies() {
        assert_eq!(create_experiment("mammogan"), json!({"name": "mammogan"}));
        assert_eq!(
            create_run("3", 42, &[kv("mlflow.source.name", "mammogan train")]),
            json!({"experiment_id": "3", "start_time": 42, "tags": [{"key": "mlflow.source.name", "value": "mammogan train"}]})
        );
        assert_eq!(
            update_run("r", RunStatus::Finished, Some(9)),
            json!({"run_id": "r", "status": "FINISHED", "end_time": 9})
        );
        assert_eq!(update_run("r", RunStatus::Running, None), json!({"run_id": "r", "status": "RUNNING"}));
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(experiment_id_of(&json!({"experiment": {"experiment_id": "5", "name": "x"}})), Some("5".into()));
        assert_eq!(created_experiment_id(&json!({"experiment_id": "6"})), Some("6".into()));
        assert_eq!(created_experiment_id(&json!({})), None);
        let run = json!({"run": {"info": {"run_id": "abc", "artifact_uri": "mlflow-artifacts:/1/abc/artifacts"}, "data": {}}});
        assert_eq!(created_run(&run), Some(("abc".into(), "mlflow-artifacts:/1/abc/artifacts".into())));
        let err = json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Could not find\nexperiment"});
        assert_eq!(error_text(&err).as_deref(), Some("RESOURCE_DOES_NOT_EXIST: Could not find experiment"));
    }

    #[test]
    fn batches_stay_within_the_limits_and_keep_order() {
        let metrics: Vec<Metric> =
            (0..2500).map(|i| Metric { key: "m".into(), value: i as f64, timestamp_ms: 0, step: i }).collect();
        let params: Vec<_> = (0..150).map(|i| kv(&format!("p{i}"), "v")).collect();
        let tags: Vec<_> = (0..3).map(|i| kv(&format!("t{i}"), "v")).collect();
        let b = batches(metrics, params, tags);
        for x in &b {
            assert!(x.metrics.len() <= MAX_METRICS_PER_BATCH && x.params.len() <= MAX_PARAMS_PER_BATCH);
            assert!(x.tags.len() <= MAX_TAGS_PER_BATCH);
            assert!(x.metrics.len() + x.params.len() + x.tags.len() <= MAX_ENTITIES_PER_BATCH);
            // 1 MB per request: a metric is well under 200 bytes of JSON.
            assert!(log_batch("r", &x.metrics, &x.params, &x.tags).to_string().len() < 1_000_000);
        }
        let steps: Vec<u64> = b.iter().flat_map(|x| x.metrics.iter().map(|m| m.step)).collect();
        assert_eq!(steps, (0..2500).collect::<Vec<_>>());
        assert_eq!(b.iter().map(|x| x.params.len()).sum::<usize>(), 150);
        assert_eq!(b[0].params.len(), 100);
        assert_eq!(b[0].metrics.len(), 1000 - 103);
        assert!(batches(vec![], vec![], vec![]).is_empty());
    }

    #[test]
    fn artifact_paths_go_through_the_proxy_only() {
        assert_eq!(
            artifact_put_path("mlflow-artifacts:/1/abc/artifacts", "eval/report.html").as_deref(),
            Some("api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/eval/report.html")
        );
        assert_eq!(
            artifact_put_path("mlflow-artifacts://host:5000/1/abc/artifacts", "model/a b.json").as_deref(),
            Some("api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/a%20b.json")
        );
        assert_eq!(artifact_put_path("s3://bucket/1/abc/artifacts", "x"), None);
        assert_eq!(artifact_put_path("mlflow-artifacts:/1/abc/artifacts", "../x"), None);
        assert_eq!(artifact_put_path("mlflow-artifacts:/1/abc/artifacts", "a//b"), None);
    }

    #[test]
    fn oversized_params_do_not_fit() {
        assert!(fits("train.steps", "20", MAX_PARAM_VALUE_CHARS));
        assert!(!fits(&"k".repeat(251), "v", MAX_PARAM_VALUE_CHARS));
        assert!(!fits("k", &"v".repeat(5001), MAX_TAG_VALUE_CHARS));
        assert!(!fits("", "v", MAX_TAG_VALUE_CHARS));
    }
}

/// `(key, step)` of each entry of a runs/get answer's `run.data.metrics` (the latest value per key).
pub fn latest_steps(answer: &Value) -> Vec<(String, u64)> {
    let Some(metrics) = answer.pointer("/run/data/metrics").and_then(Value::as_array) else { return Vec::new() };
    metrics
        .iter()
        .filter_map(|m| {
            let key = m.get("key")?.as_str()?.to_string();
            // The REST API writes int64 fields as numbers or, through the protobuf JSON mapping, strings.
            let step = match m.get("step") {
                Some(Value::Number(n)) => n.as_u64()?,
                Some(Value::String(t)) => t.parse().ok()?,
                _ => 0,
            };
            Some((key, step))
        })
        .collect()
}

#[cfg(test)]
mod latest_steps_tests {
    use super::*;

    #[test]
    fn latest_steps_reads_numbers_and_strings_and_ignores_the_rest() {
        let v = serde_json::json!({"run": {"data": {"metrics": [
            {"key": "classifier/loss", "value": 0.5, "timestamp": 1, "step": 30},
            {"key": "classifier/val_auc", "value": 0.9, "timestamp": 1, "step": "25"},
            {"key": "image.auc", "value": 0.9, "timestamp": 1},
            {"value": 1.0, "step": 3}
        ]}}});
        assert_eq!(
            latest_steps(&v),
            vec![
                ("classifier/loss".to_string(), 30),
                ("classifier/val_auc".to_string(), 25),
                ("image.auc".to_string(), 0)
            ]
        );
        assert!(latest_steps(&serde_json::json!({"run": {}})).is_empty());
    }
}
