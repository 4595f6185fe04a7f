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

/// Phantom, a model trained on it through the SageMaker contract (base dir), shared by the tests. nextest
/// runs each test in its own process, so the result is kept on disk beside the test binary, keyed by the
/// mammogan binary it was made with; made in a temporary sibling and renamed, so concurrent tests never
/// see half of it.
fn trained() -> &'static (PathBuf, PathBuf, PathBuf) {
    static DATA: std::sync::OnceLock<(PathBuf, PathBuf, PathBuf)> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let bin = std::fs::metadata(env!("CARGO_BIN_EXE_mammogan")).unwrap();
        let stamp = bin.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-model-{stamp:x}-{:x}", bin.len()));
        if !cache.join("done").exists() {
            let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let ph = tmp.path().join("phantom");
            let base = tmp.path().join("opt-ml");
            let s = |p: &Path| p.to_str().unwrap().to_string();
            ok(exe()
                .args(["phantom", "--out", &s(&ph), "--cases", "40", "--seed", "3", "--width-mm", "80"])
                .args(["--spacing-mm", "0.4"]));
            let ds = base.join("input/data/training");
            ok(exe().args([
                "prepare",
                "--format",
                "phantom",
                "--input",
                &s(&ph),
                "--out",
                &s(&ds),
                "--patch-size",
                "32",
            ]));
            std::fs::create_dir_all(base.join("input/config")).unwrap();
            let hp = serde_json::json!({
                "train.steps": "3", "train.batch_size": "8", "train.checkpoint_every": "3",
                "attribution.gen_channels": "4", "attribution.critic_channels": "4", "threads": "2",
            });
            std::fs::write(base.join("input/config/hyperparameters.json"), hp.to_string()).unwrap();
            ok(exe().arg("train").env("SAGEMAKER_BASE_DIR", &base));
            std::fs::write(tmp.path().join("done"), b"").unwrap();
            // Another test may have won the race: then its copy is used and this one dropped.
            let kept = tmp.keep();
            if std::fs::rename(&kept, &cache).is_err() {
                let _ = std::fs::remove_dir_all(&kept);
            }
            // Models of earlier binaries are stale: one cache, not one per build.
            for e in std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with("serve-model-") && e.path() != cache {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        (cache.clone(), cache.join("phantom"), cache.join("opt-ml"))
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
fn start(cmd: Command) -> Server {
    start_logging(cmd, Stdio::inherit())
}

/// `start` with the server's stderr (its log) going to `stderr`.
fn start_logging(mut cmd: Command, stderr: Stdio) -> Server {
    let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
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
    let (_, ph, base) = trained();
    let tmp = tempfile::tempdir().unwrap();
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

// ---- Hostile clients (issue 11) ----

/// `serve` on the shared model, on a free loopback port, with `args` and `envs` (no token unless given).
fn serve_with(args: &[&str], envs: &[(&str, &str)]) -> Server {
    let model = trained().2.join("model");
    let mut cmd = exe();
    cmd.args(["serve", model.to_str().unwrap(), "--port", "0"]).args(args).env_remove("MAMMOGAN_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    start(cmd)
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Reads a response head from `s`: its status and lower-cased head, or None if the connection ended
/// (or `s`'s read timeout passed) first.
fn read_head(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    Some((head.split(' ').nth(1)?.parse().ok()?, head))
}

/// Whether the server closes `s` (EOF or reset, after whatever it answers) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

fn post_head(len: usize, extra: &str) -> String {
    format!("POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n{extra}\r\n")
}

fn sigterm(server: &Server) {
    assert!(Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap().success());
}

/// Row 5: a 250 MB body without the token is answered 401 from its headers; the server reads none of
/// it (its peak memory does not move) and closes the connection instead of draining it.
#[test]
fn unauthenticated_body_is_refused_unread() {
    // A body limit above 250 MB, so that only the token check can refuse it early.
    let server = serve_with(&["--max-body-mb", "512"], &[("MAMMOGAN_TOKEN", "s3cret")]);
    assert_eq!(http(server.addr, "GET", "/ping", &[], b"").status, 200);
    let pid = server.child.id();
    let before = proc_kib(pid, "VmHWM");

    let total: usize = 250_000_000;
    let mut s = connect(server.addr);
    s.write_all(post_head(total, "").as_bytes()).unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (mut w, sent2) = (s.try_clone().unwrap(), std::sync::Arc::clone(&sent));
    let writer = std::thread::spawn(move || {
        let chunk = vec![0u8; 1 << 20];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            if w.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
            sent2.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let started = Instant::now();
    let (status, head) = read_head(&mut s).expect("an answer");
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(closed_within(&mut s, Duration::from_secs(5)), "the server closes the connection");
    writer.join().unwrap();
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < total / 4, "the server drained the body: {sent} of {total} bytes went through");
    let grew = proc_kib(pid, "VmHWM").saturating_sub(before);
    assert!(grew < 32 * 1024, "peak memory grew by {grew} KiB for a refused body");
    assert_eq!(http(server.addr, "GET", "/ping", &[], b"").status, 200);
}

/// The token's smaller rows: the scheme is case-insensitive; a blank token, or one on the command line,
/// is refused at start (one line, exit 1); `--token-file` works.
#[test]
fn token_sources_and_scheme() {
    let (_, ph, base) = trained();
    let model = base.join("model");
    let dir = tempfile::tempdir().unwrap();
    let refused = |args: &[&str], env: Option<&str>| {
        let mut cmd = exe();
        cmd.args(["serve", model.to_str().unwrap(), "--port", "0"]).args(args).env_remove("MAMMOGAN_TOKEN");
        if let Some(v) = env {
            cmd.env("MAMMOGAN_TOKEN", v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };
    assert!(refused(&[], Some("   ")).contains("$MAMMOGAN_TOKEN: the token is empty or blank"));
    assert!(refused(&[], Some("")).contains("empty or blank"));
    let blank = dir.path().join("blank");
    std::fs::write(&blank, " \n\t\n").unwrap();
    assert!(refused(&["--token-file", blank.to_str().unwrap()], None).contains("the token is empty or blank"));
    assert!(refused(&["--token", "s3cret"], None).contains("--token-file"));

    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let server = serve_with(&["--token-file", file.to_str().unwrap()], &[]);
    let dicom = std::fs::read(first_image(ph)).unwrap();
    let r = http(server.addr, "POST", "/invocations", &[], &dicom);
    assert_eq!(r.status, 401);
    assert!(r.headers.contains("www-authenticate: bearer"), "{}", r.headers);
    for auth in ["bearer s3cret", "BEARER s3cret", "Bearer s3cret"] {
        let r = http(server.addr, "POST", "/invocations", &[("Authorization", auth)], &dicom);
        assert_eq!(r.status, 200, "{auth}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(http(server.addr, "POST", "/invocations", &[("Authorization", "bearer s3cre")], &dicom).status, 401);
}

/// Row 6: 300 connections holding half a header do not stop `/ping`; they, a trickled body and an idle
/// keep-alive connection are all closed after their timeouts.
#[test]
fn stalled_clients_time_out_while_ping_answers() {
    let server = serve_with(&["--header-timeout-s", "2", "--body-timeout-s", "2"], &[]);
    let started = Instant::now();
    let mut halves: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect(server.addr);
            s.write_all(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Le").unwrap();
            s
        })
        .collect();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(http(server.addr, "GET", "/ping", &[], b"").status, 200);
        assert!(t.elapsed() < Duration::from_secs(1), "ping took {:?}", t.elapsed());
    }

    // A body of 1000 bytes, one byte every 200 ms: 408 after the 2 s body timeout, not 200 s later.
    let mut trickle = connect(server.addr);
    trickle.write_all(post_head(1000, "").as_bytes()).unwrap();
    let mut w = trickle.try_clone().unwrap();
    let dripping = std::thread::spawn(move || {
        for _ in 0..1000 {
            if w.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let t = Instant::now();
    let (status, head) = read_head(&mut trickle).expect("an answer to the trickled body");
    assert_eq!(status, 408, "{head}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(closed_within(&mut trickle, Duration::from_secs(3)));
    dripping.join().unwrap();

    // An idle keep-alive connection is closed after the header timeout.
    let mut idle = connect(server.addr);
    idle.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_head(&mut idle).map(|h| h.0), Some(200));
    let t = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(6)), "idle connection still open");
    assert!(t.elapsed() >= Duration::from_millis(1500), "closed before the timeout: {:?}", t.elapsed());

    // The half heads were all dropped by now (the header timeout is 2 s).
    assert!(started.elapsed() >= Duration::from_secs(2));
    for (i, s) in halves.iter_mut().enumerate() {
        assert!(closed_within(s, Duration::from_secs(3)), "half-header connection {i} still open");
    }
    assert_eq!(http(server.addr, "GET", "/ping", &[], b"").status, 200);
}

/// Row 7: on SIGTERM the request in progress is finished, and the server exits within the grace period
/// although clients hold a half-sent head and a half-sent body.
#[test]
fn sigterm_finishes_work_and_drops_stalled_clients() {
    let (_, ph, _) = trained();
    let dicom = std::fs::read(first_image(ph)).unwrap();
    let mut server = serve_with(&["--grace-s", "3"], &[]);
    let mut half_head = connect(server.addr);
    half_head.write_all(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Le").unwrap();
    let mut half_body = connect(server.addr);
    half_body.write_all(post_head(1000, "").as_bytes()).unwrap();
    half_body.write_all(&[0u8; 10]).unwrap();
    // A real request, half sent before the signal and finished after it.
    let mut working = connect(server.addr);
    working.write_all(post_head(dicom.len(), "").as_bytes()).unwrap();
    working.write_all(&dicom[..dicom.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let t = Instant::now();
    sigterm(&server);
    std::thread::sleep(Duration::from_millis(200));
    working.write_all(&dicom[dicom.len() / 2..]).unwrap();
    let (status, head) = read_head(&mut working).expect("the request in progress is answered");
    assert_eq!(status, 200, "{head}");
    let exited = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(t.elapsed() < Duration::from_secs(6), "still running {:?} after SIGTERM", t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exited.success(), "{exited}");
    assert!(t.elapsed() < Duration::from_secs(5), "exit took {:?} (grace 3 s)", t.elapsed());
    assert!(closed_within(&mut half_head, Duration::from_secs(1)));
    assert!(closed_within(&mut half_body, Duration::from_secs(1)));
}

/// Row 11: request bodies never reach the disk. With $TMPDIR pointing at a folder that does not exist,
/// requests still work (the old server answered 500: it could not write its temporary file), and
/// nothing creates the folder, also when the server is killed mid-request.
#[test]
fn request_bodies_never_touch_the_disk() {
    let (_, ph, _) = trained();
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent");
    let mut server = serve_with(&[], &[("TMPDIR", absent.to_str().unwrap())]);
    let dicom = std::fs::read(first_image(ph)).unwrap();
    let r = http(server.addr, "POST", "/invocations", &[], &dicom);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = http(server.addr, "POST", "/invocations", &[], b"P5 garbage");
    assert_eq!(r.status, 400);
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.starts_with("request body: "), "{e}");
    let mut half = connect(server.addr);
    half.write_all(post_head(dicom.len(), "").as_bytes()).unwrap();
    half.write_all(&dicom[..dicom.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(!absent.exists(), "something was written under $TMPDIR");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Bounded concurrency: with one place and no queue, a second request gets 503 with Retry-After while
/// the first is in progress, and 200 after. One connection over the cap gets 503 and is closed.
#[test]
fn requests_beyond_the_limits_get_503() {
    let (_, ph, _) = trained();
    let dicom = std::fs::read(first_image(ph)).unwrap();
    let server = serve_with(&["--max-in-flight", "1", "--queue", "0", "--max-connections", "3"], &[]);
    let mut first = connect(server.addr);
    first.write_all(post_head(dicom.len(), "").as_bytes()).unwrap();
    first.write_all(&dicom[..dicom.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = http(server.addr, "POST", "/invocations", &[], &dicom);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body[..r.body.len().min(300)]));
    assert!(r.headers.contains("retry-after: 1"), "{}", r.headers);
    assert!(r.json()["error"].as_str().unwrap().contains("busy"));
    first.write_all(&dicom[dicom.len() / 2..]).unwrap();
    assert_eq!(read_head(&mut first).map(|h| h.0), Some(200));
    drop(first);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(http(server.addr, "POST", "/invocations", &[], &dicom).status, 200);

    // Three idle connections fill the cap: the fourth is answered 503 and closed, not queued. Each
    // held connection proves it has a place by a keep-alive /ping answered 200; one that meets the
    // cap first (the server may not yet have seen the client above close its connection) is retried.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            for _ in 0..50 {
                let mut s = connect(server.addr);
                s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                if read_head(&mut s).map(|h| h.0) == Some(200) {
                    return s;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("no place for an idle connection");
        })
        .collect();
    let mut over = connect(server.addr);
    let (status, head) = read_head(&mut over).expect("an answer over the cap");
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(http(server.addr, "GET", "/ping", &[], b"").status, 200);
}

/// Rows 3 and 4 as the server meets them: a 389-byte PNG declaring 20000 x 20000 is refused from its
/// header, a 41 MP PGM from its header too, an absurd spacing before anything is read;
/// each a 400 naming the request body, quickly, with the server's memory far from what they declare.
#[test]
fn oversized_images_and_spacings_are_refused() {
    let (_, ph, _) = trained();
    let server = serve_with(&[], &[]);
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&20000u32.to_be_bytes());
    png.extend_from_slice(&20000u32.to_be_bytes());
    png.extend_from_slice(&[16, 0, 0, 0, 0, 0, 0, 0, 0]);
    let t = Instant::now();
    let r = http(server.addr, "POST", "/invocations", &[], &png);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "request body: image of 20000 x 20000 pixels (more than 40000000)");
    let mut pgm = b"P5 6400 6400 255\n".to_vec();
    pgm.resize(pgm.len() + 6400 * 6400, 7);
    let r = http(server.addr, "POST", "/invocations", &[], &pgm);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "request body: image of 6400 x 6400 pixels (more than 40000000)");
    let dicom = std::fs::read(first_image(ph)).unwrap();
    for bad in ["1000", "1e300", "0", "-0.1", "nan"] {
        let r = http(server.addr, "POST", &format!("/invocations?spacing_mm={bad}"), &[], &dicom);
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].as_str().unwrap().contains("0.01 to 1 mm"), "{bad}");
    }
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    // The PGM's pixels (82 MB as 16-bit samples) were decoded, never explained (that takes several times more).
    let peak = proc_kib(server.child.id(), "VmHWM");
    assert!(peak < 400 * 1024, "peak {peak} KiB");
    assert_eq!(http(server.addr, "POST", "/invocations?spacing_mm=0.4", &[], &dicom).status, 200);
}

// ---- What SageMaker's InvokeEndpoint forwards (issue 12) ----

/// An endpoint as SageMaker runs it: SageMaker mode from the model directory, the port from
/// `SAGEMAKER_BIND_TO_PORT`, a `MAMMOGAN_TOKEN` left in the environment (ignored, with a warning), and
/// requests carrying only what InvokeEndpoint forwards: the body, Content-Type, Accept and
/// `X-Amzn-SageMaker-Custom-Attributes`; no query string, no Authorization. The score comes back in the
/// response's custom attributes, the one header InvokeEndpoint returns, for JSON and PNG answers alike.
#[test]
fn invocations_carry_only_what_invoke_endpoint_forwards() {
    let (_, ph, base) = trained();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("serve.log");
    let mut cmd = exe();
    cmd.args(["serve", "--host", "127.0.0.1"])
        .env("SAGEMAKER_BASE_DIR", base)
        .env("SAGEMAKER_BIND_TO_PORT", "0")
        .env("MAMMOGAN_TOKEN", "s3cret");
    let mut server = start_logging(cmd, Stdio::from(std::fs::File::create(&log).unwrap()));
    // Port 0 from SAGEMAKER_BIND_TO_PORT, not the default 8080.
    assert_ne!(server.addr.port(), 8080);
    const ATTRS: &str = "X-Amzn-SageMaker-Custom-Attributes";
    let score_attr = |r: &Reply| -> f64 {
        let line = r.headers.lines().find_map(|l| l.strip_prefix("x-amzn-sagemaker-custom-attributes: "));
        let v = line.unwrap_or_else(|| panic!("no custom attributes in the answer: {}", r.headers));
        v.trim().strip_prefix("score=").unwrap_or_else(|| panic!("{v}")).parse().unwrap()
    };

    // No Authorization header, yet 200: the token is not checked in SageMaker mode.
    let dicom = std::fs::read(first_image(ph)).unwrap();
    let r = http(server.addr, "POST", "/invocations", &[("Content-Type", "application/dicom")], &dicom);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let score = r.json()["score"].as_f64().unwrap();
    assert!((score_attr(&r) - score).abs() <= 5e-7, "{} vs {score}", score_attr(&r));

    // A PNG carries no spacing: it comes in the custom attributes (the phantom's is 0.4 mm), and the
    // score equals the DICOM's.
    let png = tmp.path().join("image.png");
    ok(exe().args(["convert", first_image(ph).to_str().unwrap(), png.to_str().unwrap()]));
    let png = std::fs::read(&png).unwrap();
    let r =
        http(server.addr, "POST", "/invocations", &[("Content-Type", "image/png"), (ATTRS, "spacing_mm=0.4")], &png);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["spacing_mm"].as_f64(), Some(0.4), "{v}");
    assert!((v["score"].as_f64().unwrap() - score).abs() < 1e-6, "same pixels, same spacing, same score: {v}");
    // Accept: image/png: the overlay is the body, and the score still reaches the caller.
    let headers = [("Content-Type", "image/png"), ("Accept", "image/png"), (ATTRS, "spacing_mm=0.4")];
    let r = http(server.addr, "POST", "/invocations", &headers, &png);
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!((score_attr(&r) - score).abs() <= 5e-7, "{} vs {score}", score_attr(&r));

    // A misspelt or out-of-range attribute is a 400 naming the header, never a silent default.
    for (bad, why) in [("spacing=0.4", "unknown key"), ("spacing_mm=4", "0.01 to 1 mm")] {
        let r = http(server.addr, "POST", "/invocations", &[(ATTRS, bad)], &png);
        assert_eq!(r.status, 400, "{bad}");
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.starts_with(ATTRS) && e.contains(why), "{bad}: {e}");
    }
    let r = http(server.addr, "POST", "/invocations?spacing_mm=0.4", &[(ATTRS, "spacing_mm=0.4")], &png);
    assert_eq!(r.status, 400);

    sigterm(&server);
    assert!(server.child.wait().unwrap().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("SageMaker mode: $MAMMOGAN_TOKEN ignored"), "{log}");
}
