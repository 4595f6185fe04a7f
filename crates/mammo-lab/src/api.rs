//! The JSON endpoints the page calls. Runs are named by their directory relative to the lab's root
//! (`?run=NAME`); a name that is not a run under the root is a 404, whatever it points at.
//!
//! - `GET /api/runs`: every run's summary (status, models, dataset hash, key metrics, times).
//! - `GET /api/run?run=NAME`: one run: summary, config, environment summary, evaluation metrics, the
//!   FROC points, the ROC/FROC charts `report.html` draws, the gallery images.
//! - `GET /api/curves?run=NAME&from=K`: the training curves from record K of `metrics.jsonl` on.
//! - `GET /api/compare?run=A&run=B...`: what differs from A to each other run (`diff`'s causes and
//!   effects).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mammo_run::Manifest;
use serde_json::{Value, json};

use crate::LabState;
use crate::runs::{self, RunSummary};

/// Runs compared at once at most.
pub const MAX_COMPARED: usize = 8;
/// Gallery images listed at most.
const MAX_GALLERY: usize = 64;

pub fn error(status: StatusCode, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({ "error": message }))).into_response();
    crate::pages::secure_headers(r.headers_mut(), crate::pages::PAGE_CSP);
    r
}

pub async fn not_found(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, &format!("{}: no such page", uri.path()))
}

fn ok(v: Value) -> Response {
    let mut r = axum::Json(v).into_response();
    crate::pages::secure_headers(r.headers_mut(), crate::pages::PAGE_CSP);
    r
}

/// The values of `key` in a query string, in order.
pub fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The run named by `?run=` (None: answer 404).
fn named_run(root: &Path, query: Option<&str>) -> Option<(String, PathBuf)> {
    let name = query_values(query, "run").into_iter().next().unwrap_or_default();
    runs::resolve(root, &name).map(|dir| (name, dir))
}

/// File reading off the async workers; a panic or an error is a 500 without its text (logged).
async fn blocking(work: impl FnOnce() -> anyhow::Result<Value> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => ok(v),
        Ok(Err(e)) => {
            tracing::warn!("{e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; the lab's log has the details")
        }
        Err(e) => {
            tracing::error!("handler failed: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; the lab's log has the details")
        }
    }
}

pub async fn runs(State(state): State<Arc<LabState>>) -> Response {
    let root = state.root.clone();
    blocking(move || Ok(json!({ "runs": runs::list(&root), "now_unix": runs::now_unix() }))).await
}

pub async fn run(State(state): State<Arc<LabState>>, RawQuery(q): RawQuery) -> Response {
    let Some((name, dir)) = named_run(&state.root, q.as_deref()) else {
        return error(StatusCode::NOT_FOUND, "no such run");
    };
    blocking(move || detail(&name, &dir)).await
}

/// Everything the run page shows but the curves.
pub fn detail(name: &str, dir: &Path) -> anyhow::Result<Value> {
    let summary: RunSummary = runs::summarise(name, dir)?;
    let m = Manifest::read(dir)?;
    let eval = runs::read_eval_metrics(dir);
    let froc: Vec<(f64, f64)> = eval
        .get("detection.froc")
        .and_then(|f| f.as_object())
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.parse::<f64>().ok()?, v.as_f64()?))).collect())
        .unwrap_or_default();
    let e = &m.environment;
    let environment = json!({
        "os": e.os_release, "arch": e.arch, "cpu": e.cpu_model, "cores_available": e.cores_available,
        "threads": m.run.threads, "backend": m.run.backend, "gpus": e.gpus, "container": e.container,
        "cgroup_memory_limit_bytes": e.cgroup_memory_limit_bytes, "deterministic": m.run.deterministic,
        "resumed": m.run.resumed,
    });
    let build = json!({ "version": m.build.version, "commit": m.build.git_commit, "dirty": m.build.git_dirty });
    Ok(json!({
        "summary": summary,
        "config": m.inputs.config,
        "seeds": m.inputs.seeds,
        "dataset": m.inputs.dataset.as_ref().map(|d| json!({
            "content_hash": d.content_hash, "split": d.split, "source_format": d.source_format })),
        "environment": environment,
        "build": build,
        "last_checkpoint": m.outcome.last_checkpoint,
        "train_metrics": m.outcome.metrics,
        "eval": eval,
        "froc": froc,
        "charts": report_charts(dir),
        "gallery": gallery(name, dir),
        "report": summary.has_report.then(|| format!("/files/{}/eval/report.html", url_path(name))),
    }))
}

/// The ROC and FROC charts of `report.html` (what it draws, computed by `evaluate`; `metrics.json` keeps
/// only their summaries), each a standalone SVG the page shows as an image (an image runs no script).
fn report_charts(dir: &Path) -> Vec<Value> {
    let p = dir.join("eval").join("report.html");
    let small = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() <= 64 * 1024 * 1024);
    let Some(html) = small.then(|| std::fs::read_to_string(&p).ok()).flatten() else { return Vec::new() };
    let mut out = Vec::new();
    let mut rest = html.as_str();
    while let Some(i) = rest.find("<figure class=\"roc\"><svg") {
        let fig = &rest[i + "<figure class=\"roc\">".len()..];
        let Some(end) = fig.find("</svg>") else { break };
        let svg = &fig[..end + "</svg>".len()];
        let label = svg.split("aria-label=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("chart");
        let caption = fig[end..]
            .split("<figcaption>")
            .nth(1)
            .and_then(|c| c.split("</figcaption>").next())
            .map(strip_tags)
            .unwrap_or_default();
        let standalone = svg.replacen("<svg ", "<svg xmlns=\"http://www.w3.org/2000/svg\" ", 1);
        out.push(json!({ "label": label, "caption": caption, "svg": standalone }));
        rest = &fig[end..];
    }
    out
}

/// A run name or file name as a URL path: each byte but unreserved ones and `/` percent-encoded (a run
/// directory may be called `a b#1`).
fn url_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in s.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
}

/// The gallery images `evaluate` wrote (`eval/images/*.png`), as lab URLs, grouped by patch.
fn gallery(name: &str, dir: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir.join("eval").join("images")) else { return Vec::new() };
    let mut files: Vec<String> = entries
        .flatten()
        .take(10_000)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|f| f.ends_with(".png") && !f.starts_with('.'))
        .collect();
    files.sort();
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for f in files {
        let (item, kind) = f.trim_end_matches(".png").rsplit_once('-').unwrap_or((&f, "image"));
        let url = format!("/files/{}/eval/images/{}", url_path(name), url_path(&f));
        match groups.last_mut() {
            Some((g, v)) if g == item => v.push(json!({ "kind": kind, "url": url })),
            _ => groups.push((item.to_string(), vec![json!({ "kind": kind, "url": url })])),
        }
        if groups.len() > MAX_GALLERY {
            groups.pop();
            break;
        }
    }
    groups.into_iter().map(|(item, images)| json!({ "item": item, "images": images })).collect()
}

pub async fn curves(State(state): State<Arc<LabState>>, RawQuery(q): RawQuery) -> Response {
    let Some((_, dir)) = named_run(&state.root, q.as_deref()) else {
        return error(StatusCode::NOT_FOUND, "no such run");
    };
    let from = query_values(q.as_deref(), "from").first().and_then(|f| f.parse().ok()).unwrap_or(0);
    blocking(move || {
        let c = crate::curves::read(&dir, from);
        let status = Manifest::read(&dir).map(|m| runs::status_of(&m)).ok();
        Ok(json!({ "next": c.next, "points": c.points, "status": status }))
    })
    .await
}

pub async fn compare(State(state): State<Arc<LabState>>, RawQuery(q): RawQuery) -> Response {
    let names: Vec<String> = query_values(q.as_deref(), "run")
        .iter()
        .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|n| !n.is_empty())
        .collect();
    if names.len() < 2 || names.len() > MAX_COMPARED {
        return error(StatusCode::BAD_REQUEST, &format!("compare needs 2 to {MAX_COMPARED} runs (?run=A&run=B)"));
    }
    let mut dirs = Vec::new();
    for n in &names {
        match runs::resolve(&state.root, n) {
            Some(d) => dirs.push((n.clone(), d)),
            None => return error(StatusCode::NOT_FOUND, "no such run"),
        }
    }
    blocking(move || compared(&dirs)).await
}

/// The first run against each other one: `diff`'s causes and effects.
pub fn compared(runs_: &[(String, PathBuf)]) -> anyhow::Result<Value> {
    let manifests: Vec<Manifest> = runs_.iter().map(|(_, d)| Manifest::read(d)).collect::<Result<_, _>>()?;
    let summaries: Vec<RunSummary> = runs_.iter().map(|(n, d)| runs::summarise(n, d)).collect::<anyhow::Result<_>>()?;
    let diffs: Vec<Value> = manifests[1..]
        .iter()
        .zip(&runs_[1..])
        .map(|(m, (name, _))| {
            let d = mammo_run::diff::diff(&manifests[0], m);
            json!({ "a": runs_[0].0, "b": name, "causes": d.causes, "effects": d.effects })
        })
        .collect();
    Ok(json!({ "runs": summaries, "diffs": diffs }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(query_values(Some("run=a%2Fb&from=3&run=c"), "run"), vec!["a/b", "c"]);
        assert_eq!(query_values(None, "run"), Vec::<String>::new());
    }

    #[test]
    fn names_in_urls_are_encoded() {
        assert_eq!(url_path("sweep/trials/1"), "sweep/trials/1");
        assert_eq!(url_path("a b#1?x"), "a%20b%231%3Fx");
        assert_eq!(url_path("é"), "%C3%A9");
    }

    #[test]
    fn charts_come_out_of_the_report() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("eval")).unwrap();
        std::fs::write(
            dir.path().join("eval/report.html"),
            "<p><figure class=\"roc\"><svg viewBox=\"0 0 1 1\" aria-label=\"ROC curve\"><line/></svg>\
             <figcaption>Image-level ROC: AUC <b>0.9</b></figcaption></figure><figure class=\"roc\"><svg \
             aria-label=\"FROC curve\"></svg></figure>",
        )
        .unwrap();
        let c = report_charts(dir.path());
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["label"], "ROC curve");
        assert_eq!(c[0]["caption"], "Image-level ROC: AUC 0.9");
        assert!(c[0]["svg"].as_str().unwrap().starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox"));
        assert_eq!(c[1]["label"], "FROC curve");
    }
}
