//! The `axon-spoa` binary: command line, configuration, logging; everything else is in the
//! library.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use axon_spoa::Config;
use axon_spoa::import::{self, ServiceDir};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Keeps HAProxy's server slots equal to ZooKeeper's healthy instances, without reloads.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The configuration file (TOML).
    config: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert Synapse's JSON configuration into axon-spoa's, and its services' HAProxy
    /// sections; what does not carry over is printed on stderr.
    ImportSynapse {
        /// Synapse's configuration file (JSON).
        synapse: PathBuf,
        /// Write axon-spoa's configuration here instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Write the services' HAProxy sections (backends, and frontends on Synapse's ports)
        /// here, to load after haproxy/axon.cfg.
        #[arg(long, value_name = "FILE")]
        haproxy_backends: Option<PathBuf>,
    },
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
    if let Some(Command::ImportSynapse { synapse, output, haproxy_backends }) = cli.command {
        return import_synapse(&synapse, output.as_deref(), haproxy_backends.as_deref());
    }
    let Some(file) = cli.config else {
        anyhow::bail!("no configuration file given (see --help)");
    };
    let config = Config::load(&file)?;
    if cli.check {
        println!("{}: ok ({} services)", file.display(), config.services.len());
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
    // thread of its own (spoe::server).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        axon_core::runtime::cancel_on_terminate(shutdown.clone()).context("installing signal handlers")?;
        // SIGHUP would otherwise end the process on the spot; axon-spoa has no reload.
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing signal handlers")?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::warn!(
                    "SIGHUP ignored: axon-spoa does not reload its configuration; restart it to apply a change"
                );
            }
        });
        axon_spoa::run(config, shutdown).await?;
        anyhow::Ok(())
    })
}

fn import_synapse(synapse: &Path, output: Option<&Path>, haproxy_backends: Option<&Path>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(synapse).with_context(|| format!("{}: cannot read", synapse.display()))?;
    let dir = import::service_conf_dir(&text)
        .map_or(ServiceDir::NotRead, |dir| axon_core::import::read_conf_dir(Path::new(&dir)));
    let imported = import::import(&synapse.display().to_string(), &text, &dir)?;
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    match haproxy_backends {
        Some(file) => {
            std::fs::write(file, &imported.haproxy).with_context(|| format!("{}: cannot write", file.display()))?
        }
        None if imported.backends > 0 => eprintln!(
            "note: the HAProxy sections of {} backends were not written: pass --haproxy-backends FILE",
            imported.backends
        ),
        None => {}
    }
    match output {
        Some(file) => std::fs::write(file, &imported.toml).with_context(|| format!("{}: cannot write", file.display())),
        None => std::io::stdout().write_all(imported.toml.as_bytes()).context("writing to stdout"),
    }
}
