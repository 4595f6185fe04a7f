//! `mammogan serve`: HTTP inference on a run or an exported model (SageMaker's contract).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use mammo_serve::Limits;
use mammo_serve::sagemaker::{self, Paths};

#[derive(clap::Args)]
pub struct Args {
    /// A RUN directory (or an exported model directory such as /opt/ml/model). Left out in SageMaker
    /// mode: `$SAGEMAKER_BASE_DIR/model`, by default /opt/ml/model.
    run: Option<PathBuf>,
    /// Address to bind: 127.0.0.1 by default, 0.0.0.0 in SageMaker mode. Any non-loopback address needs
    /// a token outside SageMaker mode.
    #[arg(long)]
    host: Option<IpAddr>,
    /// Port (0: any free port). Default 8080 (in SageMaker mode `SAGEMAKER_BIND_TO_PORT` if set).
    #[arg(long)]
    port: Option<u16>,
    /// Require `Authorization: Bearer TOKEN` on /invocations, TOKEN read from this file (surrounding
    /// white space ignored). Or set $MAMMOGAN_TOKEN. Never on the command line, where `ps` shows it.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Gone: a token on the command line is visible to every user through `ps`.
    #[arg(long, hide = true)]
    token: Option<String>,
    /// SageMaker mode: serve /opt/ml/model on 0.0.0.0:8080 without a token (also when no RUN is given and
    /// $SAGEMAKER_BASE_DIR is set or /opt/ml/model exists). A token set anyway is ignored, with a warning:
    /// InvokeEndpoint forwards no Authorization header.
    #[arg(long)]
    sagemaker: bool,
    /// Largest request body in MiB (413 beyond it).
    #[arg(long, default_value_t = mammo_serve::server::DEFAULT_MAX_BODY / (1024 * 1024))]
    max_body_mb: usize,
    /// Most open connections (503 and closed beyond).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Most /invocations reading their body, decoding or inferring at once.
    #[arg(long, default_value_t = Limits::default().max_in_flight)]
    max_in_flight: usize,
    /// Most /invocations waiting for a place (503 with Retry-After beyond).
    #[arg(long, default_value_t = Limits::default().queue)]
    queue: usize,
    /// Seconds a client has to send a request head; also the keep-alive idle timeout.
    #[arg(long, default_value_t = Limits::default().header_timeout.as_secs_f64())]
    header_timeout_s: f64,
    /// Seconds a client has to send a request body (408 beyond).
    #[arg(long, default_value_t = Limits::default().body_timeout.as_secs_f64())]
    body_timeout_s: f64,
    /// Seconds a response may wait for a client that does not read it.
    #[arg(long, default_value_t = Limits::default().write_timeout.as_secs_f64())]
    write_timeout_s: f64,
    /// Seconds requests in progress get to finish after SIGTERM, before the server exits anyway.
    #[arg(long, default_value_t = Limits::default().grace.as_secs_f64())]
    grace_s: f64,
    /// Tile stride as a fraction of the patch size.
    #[arg(long, default_value_t = 0.5)]
    stride: f64,
    /// auto, cpu, cuda[:N] or wgpu[:N] (Vulkan; `mammogan env` lists the adapters).
    #[arg(long, default_value = "auto")]
    device: String,
    /// CPU threads for inference (0 = all usable cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    let sm = match &args.run {
        None => match Paths::serving_requested(args.sagemaker) {
            Some(p) => Some(p),
            None => bail!(
                "serve needs a RUN directory (or SageMaker mode: --sagemaker, $SAGEMAKER_BASE_DIR, or an existing \
                 /opt/ml/model)"
            ),
        },
        Some(_) if args.sagemaker => Some(Paths::from_env()),
        Some(_) => None,
    };
    let run = match (&args.run, &sm) {
        (Some(r), _) => r.clone(),
        (None, Some(p)) => p.model(),
        (None, None) => unreachable!("handled above"),
    };
    if !(args.stride > 0.0 && args.stride <= 1.0) {
        bail!("--stride {}: must be in (0, 1]", args.stride);
    }
    let host =
        args.host.unwrap_or(if sm.is_some() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv4Addr::LOCALHOST.into() });
    let port = match (args.port, &sm) {
        (Some(p), _) => p,
        (None, Some(_)) => match std::env::var("SAGEMAKER_BIND_TO_PORT") {
            Ok(v) => v.trim().parse().map_err(|_| anyhow::anyhow!("SAGEMAKER_BIND_TO_PORT={v}: not a port"))?,
            Err(_) => sagemaker::DEFAULT_PORT,
        },
        (None, None) => sagemaker::DEFAULT_PORT,
    };
    if args.token.is_some() {
        bail!("--token is gone: `ps` shows it to every user; use --token-file PATH or $MAMMOGAN_TOKEN");
    }
    let token = if sm.is_some() {
        // InvokeEndpoint forwards no Authorization header, so a token would turn every call into a 401;
        // AWS authenticates callers (SigV4, IAM) before anything reaches the container. Not even read: a
        // stale or blank MAMMOGAN_TOKEN left in an endpoint's environment must not stop it from starting.
        if let Some(source) = token_source(args.token_file.as_deref(), std::env::var_os("MAMMOGAN_TOKEN").is_some()) {
            tracing::warn!(
                "SageMaker mode: {source} ignored, no token is checked (InvokeEndpoint forwards no Authorization \
                 header; AWS authenticates the callers)"
            );
        }
        None
    } else {
        token(args.token_file.as_deref(), std::env::var_os("MAMMOGAN_TOKEN"))?
    };
    if args.max_body_mb == 0 {
        bail!("--max-body-mb 0: must be at least 1");
    }
    let limits = Limits {
        max_connections: positive("--max-connections", args.max_connections)?,
        max_in_flight: positive("--max-in-flight", args.max_in_flight)?,
        queue: args.queue,
        header_timeout: seconds("--header-timeout-s", args.header_timeout_s)?,
        body_timeout: seconds("--body-timeout-s", args.body_timeout_s)?,
        write_timeout: seconds("--write-timeout-s", args.write_timeout_s)?,
        grace: seconds("--grace-s", args.grace_s)?,
    };
    let opts = mammo_serve::ServeOptions {
        addr: SocketAddr::new(host, port),
        token,
        sagemaker: sm.is_some(),
        max_body: args.max_body_mb.saturating_mul(1024 * 1024),
        stride: args.stride,
        limits,
    };
    // Refused before the (slow) model load.
    mammo_serve::check_bind(&opts.addr, opts.token.as_deref(), opts.sagemaker).map_err(anyhow::Error::msg)?;
    let (device, info) = mammo_nn::select_device(&args.device, args.threads)?;
    let started = std::time::Instant::now();
    let models = mammo_nn::Models::load_on(&run, &device)?;
    tracing::info!(
        "model {} loaded in {:.2} s on {} ({} threads){}",
        run.display(),
        started.elapsed().as_secs_f64(),
        info.backend,
        info.threads,
        if sm.is_some() { "; SageMaker mode" } else { "" }
    );
    if !models.has_attribution() {
        tracing::warn!("no attribution model: highlight maps are the tile scores");
    }
    mammo_serve::serve(models, &opts, |addr| {
        println!("serving on {addr}");
        let _ = std::io::stdout().flush();
    })
}

/// The token from `--token-file` or `$MAMMOGAN_TOKEN` (not both: which one counts would be a guess).
/// A blank one is refused rather than taken as "no token": it would look set while guarding nothing.
/// `lab` reads its token through this too.
pub fn token(file: Option<&Path>, env: Option<std::ffi::OsString>) -> Result<Option<String>> {
    let (source, raw) = match (file, env) {
        (Some(_), Some(_)) => bail!("--token-file and $MAMMOGAN_TOKEN are both set: give one"),
        (Some(f), None) => {
            let text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            (f.display().to_string(), text)
        }
        (None, Some(v)) => {
            let v = v.into_string().map_err(|_| anyhow::anyhow!("$MAMMOGAN_TOKEN: not valid UTF-8"))?;
            ("$MAMMOGAN_TOKEN".to_string(), v)
        }
        (None, None) => return Ok(None),
    };
    let t = raw.trim();
    mammo_serve::check_token(t).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    if let Some(f) = file {
        warn_if_readable_by_others(f);
    }
    Ok(Some(t.to_string()))
}

/// Which token setting is present, for the SageMaker-mode warning.
fn token_source(file: Option<&Path>, env: bool) -> Option<String> {
    match (file, env) {
        (Some(f), true) => Some(format!("--token-file {} and $MAMMOGAN_TOKEN", f.display())),
        (Some(f), false) => Some(format!("--token-file {}", f.display())),
        (None, true) => Some("$MAMMOGAN_TOKEN".into()),
        (None, false) => None,
    }
}

fn warn_if_readable_by_others(f: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let open = std::fs::metadata(f).is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
    if open {
        tracing::warn!("{}: readable by other users (chmod 600 it)", f.display());
    }
}

fn positive(flag: &str, n: usize) -> Result<usize> {
    if n == 0 {
        bail!("{flag} 0: must be at least 1");
    }
    Ok(n)
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
        bail!("{flag} {s}: must be a number of seconds in (0, 86400]");
    }
    Ok(Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(token(Some(&f), None).unwrap().as_deref(), Some("s3cret"));
        assert_eq!(token(None, Some("  s3cret ".into())).unwrap().as_deref(), Some("s3cret"));
        assert_eq!(token(None, None).unwrap(), None);
        assert!(token(Some(&f), Some("x".into())).unwrap_err().to_string().contains("both"));
        std::fs::write(&f, " \n\t").unwrap();
        let e = token(Some(&f), None).unwrap_err().to_string();
        assert_eq!(e, format!("{}: the token is empty or blank", f.display()));
        assert_eq!(
            token(None, Some("".into())).unwrap_err().to_string(),
            "$MAMMOGAN_TOKEN: the token is empty or blank"
        );
        assert!(token(Some(&dir.path().join("missing")), None).unwrap_err().to_string().contains("missing"));
    }
}
