use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Result, bail};
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
    /// Require `Authorization: Bearer TOKEN` on /invocations (default: $MAMMOGAN_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// SageMaker mode: serve /opt/ml/model on 0.0.0.0:8080 without a token (also when no RUN is given and
    /// $SAGEMAKER_BASE_DIR is set or /opt/ml/model exists).
    #[arg(long)]
    sagemaker: bool,
    /// Largest request body in MiB (413 beyond it).
    #[arg(long, default_value_t = 256)]
    max_body_mb: usize,
    /// Tile stride as a fraction of the patch size.
    #[arg(long, default_value_t = 0.5)]
    stride: f64,
    /// auto, cpu, cuda or cuda:N.
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
    let token = args.token.clone().or_else(|| std::env::var("MAMMOGAN_TOKEN").ok()).filter(|t| !t.is_empty());
    let opts = mammo_serve::ServeOptions {
        addr: SocketAddr::new(host, port),
        token,
        sagemaker: sm.is_some(),
        max_body: args.max_body_mb.saturating_mul(1024 * 1024),
        stride: args.stride,
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
