//! The `axon-spoa` binary: command line, configuration, logging; everything else is in the
//! library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use axon_spoa::Config;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Keeps HAProxy's server slots equal to ZooKeeper's healthy instances, without reloads.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The configuration file (TOML).
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("axon-spoa: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.config)?;
    if cli.check {
        println!("{}: ok ({} services)", cli.config.display(), config.services.len());
        for warning in config.warnings() {
            println!("warning: {warning}");
        }
        println!("{}", axon_spoa::hostmap::describe(&config));
        for service in config.services.iter() {
            if let Some(backend) = &service.backend {
                let line = axon_spoa::sync::slots::template_line(backend, &service.slot_prefix, 10);
                println!("backend {backend}: {line}");
            }
        }
        return Ok(());
    }
    axon_core::runtime::init_tracing();
    // One thread for discovery, the sync and the status endpoint; the SPOE agent runs on a
    // thread of its own (spop::server).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        axon_core::runtime::cancel_on_terminate(shutdown.clone()).context("installing signal handlers")?;
        axon_spoa::run(config, shutdown).await?;
        anyhow::Ok(())
    })
}
