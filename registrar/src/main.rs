//! The `axon-registrar` binary: command line, configuration, logging; everything else is in
//! the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use axon_registrar::{Config, maintenance};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Health-checks local services and publishes the healthy ones to ZooKeeper.
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
    /// Take a service out of rotation (`on`), put it back (`off`), or show whether it is out.
    Maintenance {
        #[arg(value_parser = ["on", "off", "status"])]
        action: String,
        /// The service's name, as in the configuration.
        service: String,
        /// The registrar's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("axon-registrar: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Some(Command::Maintenance { action, service, config }) = cli.command {
        let config = Config::load(&config)?;
        let interval = config.service(&service).map(|s| s.check_interval);
        match action.as_str() {
            "status" => {
                let on = maintenance::is_on(&config, &service)?;
                println!("{service}: maintenance {}", if on { "on" } else { "off" });
            }
            action => {
                let path = maintenance::set(&config, &service, action == "on")?;
                println!(
                    "{service}: maintenance {action} ({}); the registrar applies it within {}",
                    path.display(),
                    interval.map(|i| format!("{i:?}")).unwrap_or_default()
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(file) = cli.config else {
        anyhow::bail!("no configuration file given (see --help)");
    };
    let config = Config::load(&file)?;
    if cli.check {
        println!("{}: ok ({} services)", file.display(), config.services.len());
        return Ok(ExitCode::SUCCESS);
    }
    axon_core::runtime::init_tracing();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        axon_core::runtime::cancel_on_terminate(shutdown.clone()).context("installing signal handlers")?;
        axon_registrar::run(config, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
