//! `mammogan lab`: the browser lab over a directory of runs.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub struct Args {
    /// The directory of runs (searched recursively; a sweep's trials too).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Address to bind: 127.0.0.1 by default. Any non-loopback address needs a token.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 8090)]
    port: u16,
    /// Require the token read from this file (surrounding white space ignored): browsers log in once
    /// (an HttpOnly cookie), scripts send `Authorization: Bearer TOKEN`. Or set $MAMMOGAN_TOKEN. Never on
    /// the command line, where `ps` shows it.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Refused: a token on the command line is visible to every user through `ps`.
    #[arg(long, hide = true)]
    token: Option<String>,
    /// Largest explain upload in MiB (413 beyond it).
    #[arg(long, default_value_t = mammo_serve::server::DEFAULT_MAX_BODY / (1024 * 1024))]
    max_body_mb: usize,
    /// For explain: auto, cpu, cuda[:N] or wgpu[:N] (Vulkan; `mammogan env` lists the adapters).
    #[arg(long, default_value = "auto")]
    device: String,
    /// CPU threads for explain (0 = all usable cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    if args.max_body_mb == 0 {
        bail!("--max-body-mb 0: must be at least 1");
    }
    if args.token.is_some() {
        bail!("--token: `ps` shows it to every user; use --token-file PATH or $MAMMOGAN_TOKEN");
    }
    let token = super::serve::token(args.token_file.as_deref(), std::env::var_os("MAMMOGAN_TOKEN"))?;
    let opts = mammo_lab::LabOptions {
        root: args.dir,
        addr: SocketAddr::new(args.host, args.port),
        token,
        max_body: args.max_body_mb.saturating_mul(1024 * 1024),
        device: args.device,
        threads: args.threads,
    };
    mammo_lab::serve(&opts, |addr| {
        println!("lab on http://{addr}/");
        let _ = std::io::stdout().flush();
    })
}
