//! The `axon-registrar` binary: command line, configuration, logging; everything else is in
//! the library.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use axon_registrar::import::{self, ServiceDir};
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
    /// Convert Nerve's JSON configuration into an axon-registrar configuration; what does not
    /// carry over is printed on stderr.
    ImportNerve {
        /// Nerve's configuration file (JSON).
        nerve: PathBuf,
        /// Write the configuration here instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
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
    if let Some(Command::ImportNerve { nerve, output }) = cli.command {
        import_nerve(&nerve, output.as_deref())?;
        return Ok(ExitCode::SUCCESS);
    }
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

fn import_nerve(nerve: &Path, output: Option<&Path>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(nerve).with_context(|| format!("{}: cannot read", nerve.display()))?;
    let dir = import::service_conf_dir(&text)
        .map_or(ServiceDir::NotRead, |dir| axon_core::import::read_conf_dir(Path::new(&dir)));
    let imported = import::import(&nerve.display().to_string(), &text, &dir)?;
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    match output {
        Some(file) => std::fs::write(file, &imported.toml).with_context(|| format!("{}: cannot write", file.display())),
        None => std::io::stdout().write_all(imported.toml.as_bytes()).context("writing to stdout"),
    }
}
