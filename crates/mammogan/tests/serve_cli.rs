//! `mammogan serve` end to end: a tiny model trained through the SageMaker contract, served from
//! `$SAGEMAKER_BASE_DIR/model` on a free loopback port; `/ping` answers 200 at once, `/invocations` takes a
//! DICOM and a PNG mammogram, bad input gets a 4xx JSON error and the server stays up; the token rule.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn exe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mammogan"));
    // The pseudonym key in the build's scratch folder, not the user's home.
    c.arg("--quiet").env("MAMMOGAN_KEY_FILE", Path::new(env!("CARGO_TARGET_TMPDIR")).join("pseudonym.key"));
    c
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Phantom, a model trained on it through the SageMaker contract (base dir), shared by the tests.
fn trained() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static DATA: std::sync::OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let ph = tmp.path().join("phantom");
        let base = tmp.path().join("opt-ml");
        let s = |p: &Path| p.to_str().unwrap().to_string();
        ok(exe()
            .args(["phantom", "--out", &s(&ph), "--cases", "40", "--seed", "3", "--width-mm", "80"])
            .args(["--spacing-mm", "0.4"]));
        let ds = base.join("input/data/training");
        ok(exe().args(["prepare", "--format", "phantom", "--input", &s(&ph), "--out", &s(&ds), "--patch-size", "32"]));
        std::fs::create_dir_all(base.join("input/config")).unwrap();
        let hp = serde_json::json!({
            "train.steps": "3", "train.batch_size": "8", "train.checkpoint_every": "3",
            "attribution.gen_channels": "4", "attribution.critic_channels": "4", "threads": "2",
        });
        std::fs::write(base.join("input/config/hyperparameters.json"), hp.to_string()).unwrap();
        ok(exe().arg("train").env("SAGEMAKER_BASE_DIR", &base));
        (tmp, ph, base)
    })
}

struct Server {
    child: Child,
    addr: SocketAddr,
    listening: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` and reads its "serving on ADDR" line.
fn start(mut cmd: Command) -> Server {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let listening = Instant::now();
    let addr =
        line.trim().strip_prefix("serving on ").unwrap_or_else(|| panic!("first line: {line:?}")).parse().unwrap();
    Server { child, addr, listening }
}

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body; a reset while writing is fine then.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply { status, headers: head.to_ascii_lowercase(), body: raw[split + 4..].to_vec() }
}

fn first_image(ph: &Path) -> PathBuf {
    std::fs::read_dir(ph.join("images")).unwrap().map(|e| e.unwrap().path()).min().unwrap()
}

#[test]
fn serves_ping_and_invocations_from_the_sagemaker_model_dir() {
    let (tmp, ph, base) = trained();
    let mut cmd = exe();
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0", "--max-body-mb", "1"]).env("SAGEMAKER_BASE_DIR", base);
    let server = start(cmd);
    // Ready when listening: the first ping already answers 200, well within 2 s.
    let ping = http(server.addr, "GET", "/ping", &[], b"");
    assert_eq!(ping.status, 200);
    assert!(server.listening.elapsed() < Duration::from_secs(2));

    let dicom = std::fs::read(first_image(ph)).unwrap();
    let r = http(server.addr, "POST", "/invocations", &[("Content-Type", "application/dicom")], &dicom);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let score = v["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{v}");
    let original = mammo_io::read_image(&first_image(ph)).unwrap();
    assert_eq!(v["width"].as_u64(), Some(original.width as u64));
    assert_eq!(v["height"].as_u64(), Some(original.height as u64));
    let regions = v["regions"].as_array().unwrap();
    assert!(!regions.is_empty());
    for k in ["x", "y", "w", "h", "score"] {
        assert!(regions[0].get(k).is_some(), "{k}: {v}");
    }
    // base64 of a PNG starts with the PNG magic's encoding.
    assert!(v["heatmap_png_base64"].as_str().unwrap().starts_with("iVBORw0KGgo"), "{v}");
    assert!(v["heatmap_max"].as_f64().unwrap() > 0.0);
    // map_max is explain's: the largest highlight value, the top of the heatmap's scale.
    let (map_max, heatmap_max) = (v["map_max"].as_f64().unwrap(), v["heatmap_max"].as_f64().unwrap());
    assert!(map_max > 0.0 && (map_max - heatmap_max).abs() <= 1e-5 * heatmap_max, "{map_max} vs {heatmap_max}");
    // No identifying attribute of the phantom's header in the answer.
    let text = String::from_utf8_lossy(&r.body);
    for n in (0..10).flat_map(|p| mammo_phantom::fake_identity(p).values()) {
        assert!(!text.contains(&n), "{n} leaked");
    }

    // The same mammogram as a 16-bit PNG (no spacing in the file: given as a query parameter).
    let png = tmp.path().join("image.png");
    ok(exe().args(["convert", first_image(ph).to_str().unwrap(), png.to_str().unwrap()]));
    let body = std::fs::read(&png).unwrap();
    let r = http(server.addr, "POST", "/invocations?spacing_mm=0.4", &[("Content-Type", "image/png")], &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!((r.json()["score"].as_f64().unwrap() - score).abs() < 1e-6, "same pixels, same spacing, same score");

    // Accept: image/png gives the overlay itself.
    let r = http(server.addr, "POST", "/invocations", &[("Accept", "image/png")], &dicom);
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(r.headers.contains("x-mammogan-score:"), "{}", r.headers);

    // Bad input: 4xx with a JSON error, and the server stays up.
    let r = http(server.addr, "POST", "/invocations", &[], b"this is no mammogram");
    assert_eq!(r.status, 400);
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("request body") && e.contains("DICOM"), "{e}");
    assert!(!e.contains("/tmp"), "no temporary path in the message: {e}");
    assert_eq!(http(server.addr, "POST", "/invocations", &[], b"").status, 400);
    assert_eq!(http(server.addr, "POST", "/invocations?spacing_mm=x", &[], &dicom).status, 400);
    let r = http(server.addr, "POST", "/invocations", &[], &vec![0u8; 2 * 1024 * 1024]);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].is_string());
    let r = http(server.addr, "GET", "/nope", &[], b"");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    assert_eq!(http(server.addr, "GET", "/invocations", &[], b"").status, 405);
    assert_eq!(http(server.addr, "GET", "/ping", &[], b"").status, 200);

    // SIGTERM stops it cleanly.
    let mut server = server;
    assert!(Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn token_rule() {
    let (_, ph, base) = trained();
    let model = base.join("model");
    // A non-loopback address without a token is refused before anything is bound.
    let out = exe()
        .args(["serve", model.to_str().unwrap(), "--host", "0.0.0.0", "--port", "0"])
        .env_remove("MAMMOGAN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("token") && stderr.lines().count() == 1, "{stderr}");
    // `serve` with neither a RUN nor SageMaker mode says what it needs.
    let out = exe().arg("serve").env_remove("SAGEMAKER_BASE_DIR").output().unwrap();
    assert!(!out.status.success());

    // A token, when set, is required on /invocations (not on /ping).
    let mut cmd = exe();
    cmd.args(["serve", model.to_str().unwrap(), "--port", "0"]).env("MAMMOGAN_TOKEN", "s3cret");
    let server = start(cmd);
    assert_eq!(http(server.addr, "GET", "/ping", &[], b"").status, 200);
    let dicom = std::fs::read(first_image(ph)).unwrap();
    assert_eq!(http(server.addr, "POST", "/invocations", &[], &dicom).status, 401);
    assert_eq!(http(server.addr, "POST", "/invocations", &[("Authorization", "Bearer nope")], &dicom).status, 401);
    let r = http(server.addr, "POST", "/invocations", &[("Authorization", "Bearer s3cret")], &dicom);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
