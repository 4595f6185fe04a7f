//! The lab's handlers through its router (no socket): runs listing and status mapping over manifests as
//! training leaves them, the token rule on every page and API, path names that try to leave the root,
//! compare, and the rule that the lab writes nothing into a run.

use std::collections::BTreeMap;
use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use mammo_run::manifest::RunInfo;
use mammo_run::{Manifest, Status};
use serde_json::{Value, json};
use tower::ServiceExt;

fn manifest(status: Status, steps: u64, run: RunInfo) -> Manifest {
    let config = json!({ "train": { "steps": steps, "seed": 42 }, "classifier": { "channels": 8 } });
    let mut m = Manifest::failed_start(Some(config), &["classifier"], String::new());
    m.run = run;
    m.outcome.status = status;
    m.outcome.error = (status == Status::Failed).then(|| "config: train.steps 0: must be at least 1".into());
    m.outcome.steps = BTreeMap::from([("classifier".to_string(), steps)]);
    m.outcome.metrics = BTreeMap::from([("classifier.val_auc".to_string(), 0.75)]);
    m.outcome.wall_time_s = 12.5;
    m
}

/// A process that has ended: its pid names no live process.
fn dead_process() -> RunInfo {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let mut r = RunInfo::this_process("flex", 0, 1, true, false);
    r.pid = child.id();
    r
}

/// root/{done, live, gone, stopped, broken, sweep/trials/1}, with the files a trained and evaluated run has,
/// plus things that are not runs (a checkpoint holding a manifest.json, a link to a run, a hidden dir).
fn fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let this = || RunInfo::this_process("flex", 0, 1, true, false);
    let runs = [
        ("done", manifest(Status::Finished, 20, this())),
        ("live", manifest(Status::Running, 1000, this())),
        ("gone", manifest(Status::Running, 1000, dead_process())),
        ("stopped", manifest(Status::Killed, 20, this())),
        ("broken", manifest(Status::Failed, 0, this())),
        ("sweep/trials/1", manifest(Status::Finished, 30, this())),
    ];
    for (name, m) in &runs {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        m.write(&dir).unwrap();
    }
    let done = root.join("done");
    std::fs::write(
        done.join("metrics.jsonl"),
        "{\"step\":10,\"model\":\"classifier\",\"loss\":0.6}\n{\"step\":20,\"model\":\"classifier\",\"loss\":0.4}\n",
    )
    .unwrap();
    std::fs::create_dir_all(done.join("eval/images")).unwrap();
    std::fs::write(
        done.join("eval/metrics.json"),
        r#"{"classifier.auc": 0.81, "image.auc": 0.7, "detection.froc": {"0.5": 0.25, "1": 0.5}, "split": "test"}"#,
    )
    .unwrap();
    std::fs::write(
        done.join("eval/report.html"),
        "<html><figure class=\"roc\"><svg aria-label=\"ROC curve\"></svg><figcaption>ROC</figcaption></figure></html>",
    )
    .unwrap();
    std::fs::write(done.join("eval/images/patch-000001-map.png"), b"\x89PNG not really").unwrap();
    // Not runs.
    std::fs::create_dir_all(done.join("checkpoints/classifier/step-10")).unwrap();
    manifest(Status::Finished, 1, this()).write(&done.join("checkpoints/classifier/step-10")).unwrap();
    std::fs::create_dir_all(root.join(".hidden.partial-1")).unwrap();
    manifest(Status::Finished, 1, this()).write(&root.join(".hidden.partial-1")).unwrap();
    std::os::unix::fs::symlink(&done, root.join("link")).unwrap();
    tmp
}

fn app(root: &Path, token: Option<&str>) -> axum::Router {
    let opts = mammo_lab::LabOptions {
        root: root.to_path_buf(),
        addr: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_string),
        max_body: 1 << 20,
        device: "cpu".into(),
        threads: 1,
    };
    mammo_lab::router(mammo_lab::LabState::new(&opts))
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let r = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let body = axum::body::to_bytes(r.into_body(), 64 << 20).await.unwrap().to_vec();
    (status, headers, body)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

async fn json_of(app: &axum::Router, path: &str) -> Value {
    let (status, _, body) = call(app, get(path)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn runs_are_listed_with_the_status_mammogan_status_tells() {
    let tmp = fixture();
    let app = app(tmp.path(), None);
    let v = json_of(&app, "/api/runs").await;
    let runs: BTreeMap<String, &Value> =
        v["runs"].as_array().unwrap().iter().map(|r| (r["name"].as_str().unwrap().to_string(), r)).collect();
    let names: Vec<&str> = runs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["broken", "done", "gone", "live", "stopped", "sweep/trials/1"],
        "no checkpoint, link or hidden dir"
    );
    let status = |n: &str| runs[n]["status"].as_str().unwrap().to_string();
    assert_eq!(status("done"), "finished");
    assert_eq!(status("live"), "running", "its process (this test) is alive");
    assert_eq!(status("gone"), "killed", "a manifest saying running whose process is gone: SIGKILLed");
    assert_eq!(status("stopped"), "killed");
    assert_eq!(status("broken"), "failed");
    assert_eq!(runs["broken"]["error"], "config: train.steps 0: must be at least 1");
    let done = runs["done"];
    assert_eq!(done["metrics"]["classifier.auc"], 0.81, "test figures from eval/metrics.json");
    assert_eq!(done["metrics"]["classifier.val_auc"], 0.75, "validation figures from the manifest");
    assert_eq!(done["duration_s"], 12.5);
    assert_eq!(done["has_report"], true);
    assert!(done["dataset"].is_null());
    // No absolute path anywhere in what the lab answers.
    let text = v.to_string();
    assert!(!text.contains(tmp.path().to_str().unwrap()), "{text}");
}

#[tokio::test]
async fn a_run_its_curves_files_and_a_comparison() {
    let tmp = fixture();
    let app = app(tmp.path(), None);
    let d = json_of(&app, "/api/run?run=done").await;
    assert_eq!(d["summary"]["status"], "finished");
    assert_eq!(d["config"]["train"]["steps"], 20);
    assert_eq!(d["froc"], json!([[0.5, 0.25], [1.0, 0.5]]));
    assert_eq!(d["charts"][0]["label"], "ROC curve");
    assert_eq!(d["gallery"][0]["images"][0]["url"], "/files/done/eval/images/patch-000001-map.png");
    assert_eq!(d["report"], "/files/done/eval/report.html");
    assert!(!d.to_string().contains(tmp.path().to_str().unwrap()));

    let c = json_of(&app, "/api/curves?run=done&from=0").await;
    assert_eq!((c["next"].as_u64(), c["points"].as_array().unwrap().len()), (Some(2), 2));
    let c = json_of(&app, "/api/curves?run=done&from=1").await;
    assert_eq!(c["points"][0]["step"], 20);

    let (status, headers, body) = call(&app, get("/files/done/eval/report.html")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("ROC curve"));
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");

    let cmp = json_of(&app, "/api/compare?run=done&run=sweep%2Ftrials%2F1").await;
    let causes = cmp["diffs"][0]["causes"].as_array().unwrap();
    assert!(causes.iter().any(|c| c["key"] == "train.steps" && c["a"] == 20 && c["b"] == 30), "{causes:?}");
    let (status, _, _) = call(&app, get("/api/compare?run=done")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn names_that_leave_the_root_are_not_found() {
    let tmp = fixture();
    let sweep = app(&tmp.path().join("sweep"), None);
    for path in [
        "/api/run?run=..%2Fdone",
        "/api/run?run=%2Fetc",
        "/api/run?run=trials%2F..%2F..%2Fdone",
        "/api/curves?run=..%2Fdone",
        "/files/../done/eval/report.html",
        "/files/trials/1/eval/../manifest.json",
        "/files/trials/1/eval/%2E%2E/manifest.json",
    ] {
        let (status, _, body) = call(&sweep, get(path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {}", String::from_utf8_lossy(&body));
    }
    let app = app(tmp.path(), None);
    let (status, _, _) = call(&app, get("/api/run?run=link")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a link is not followed");
}

#[tokio::test]
async fn without_the_token_every_page_and_api_is_401() {
    let tmp = fixture();
    let app = app(tmp.path(), Some("s3cret"));
    let paths = [
        "/",
        "/assets/app.js",
        "/api/runs",
        "/api/run?run=done",
        "/api/curves?run=done",
        "/api/compare?run=done&run=live",
        "/files/done/eval/report.html",
        "/no/such/page",
    ];
    for p in paths {
        let (status, headers, body) = call(&app, get(p)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
        assert!(!String::from_utf8_lossy(&body).contains("s3cret"));
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let wrong = Request::get(p).header(header::AUTHORIZATION, "Bearer s3cre").body(Body::empty()).unwrap();
        assert_eq!(call(&app, wrong).await.0, StatusCode::UNAUTHORIZED, "{p}");
        let bearer = Request::get(p).header(header::AUTHORIZATION, "Bearer s3cret").body(Body::empty()).unwrap();
        let cookie = Request::get(p).header(header::COOKIE, "x=1; mammogan_lab=s3cret").body(Body::empty()).unwrap();
        let want = if p == "/no/such/page" { StatusCode::NOT_FOUND } else { StatusCode::OK };
        assert_eq!(call(&app, bearer).await.0, want, "{p} with the bearer token");
        assert_eq!(call(&app, cookie).await.0, want, "{p} with the cookie");
    }
    let upload = Request::post("/api/explain?run=done").body(Body::from("x".repeat(1000))).unwrap();
    assert_eq!(call(&app, upload).await.0, StatusCode::UNAUTHORIZED);
    // A browser gets the login page with its 401.
    let page = Request::get("/").header(header::ACCEPT, "text/html").body(Body::empty()).unwrap();
    let (status, _, body) = call(&app, page).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("action=\"/login\""));
    // Logging in: a wrong token sets nothing, the right one the cookie.
    let login = |t: &str| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={t}")))
            .unwrap()
    };
    let (status, headers, _) = call(&app, login("nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::SET_COOKIE).is_none());
    let (status, headers, _) = call(&app, login("s3cret")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let c = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
}

#[tokio::test]
async fn explain_refuses_bad_uploads_before_decoding() {
    let tmp = fixture();
    let app = app(tmp.path(), None);
    let post = |q: &str, body: Vec<u8>| Request::post(format!("/api/explain?{q}")).body(Body::from(body)).unwrap();
    // No exported model in the run, or no such run.
    assert_eq!(call(&app, post("run=done", b"x".to_vec())).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&app, post("run=nope", b"x".to_vec())).await.0, StatusCode::NOT_FOUND);
    // Over the body cap, declared or not.
    let big = Request::post("/api/explain?run=done")
        .header(header::CONTENT_LENGTH, (2u64 << 20).to_string())
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = call(&app, big).await;
    assert!(status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::BAD_REQUEST, "{status}");
}

/// Everything under `root`: each file's path, size, modification time and content.
fn snapshot(root: &Path) -> Vec<(String, u64, std::time::SystemTime, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            let content = if m.is_file() { std::fs::read(e.path()).unwrap() } else { Vec::new() };
            out.push((e.path().display().to_string(), m.len(), m.modified().unwrap(), content));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_lab_writes_nothing_into_a_run() {
    let tmp = fixture();
    let before = snapshot(tmp.path());
    let app = app(tmp.path(), Some("s3cret"));
    let auth = |r: axum::http::request::Builder| r.header(header::AUTHORIZATION, "Bearer s3cret");
    for p in [
        "/",
        "/api/runs",
        "/api/run?run=done",
        "/api/run?run=gone",
        "/api/curves?run=done",
        "/api/curves?run=live&from=5",
        "/api/compare?run=done&run=gone&run=broken",
        "/files/done/eval/report.html",
        "/files/done/eval/images/patch-000001-map.png",
    ] {
        let (status, _, _) = call(&app, auth(Request::get(p)).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{p}");
    }
    let _ = call(&app, auth(Request::post("/api/explain?run=done")).body(Body::from("garbage")).unwrap()).await;
    let _ = call(&app, Request::post("/login").body(Body::from("token=s3cret")).unwrap()).await;
    assert!(before == snapshot(tmp.path()), "a run's files changed");
}
