//! weir-server: CLI → Config → Server::run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use weir::config::Config;
use weir::server::Server;

/// Exit status for a bad configuration (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// Weir message-queue server. With no arguments it listens on 127.0.0.1:7400 with the
/// embedded default configuration (see weir.toml for every key).
#[derive(Debug, Parser)]
#[command(name = "weir-server", version)]
struct Args {
    /// Config file (TOML); keys it omits keep their defaults.
    #[arg(short = 'c', long = "config", env = "WEIR_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, replacing the listeners of the config file.
    #[arg(short = 'l', long = "listen", env = "WEIR_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Validate the configuration and exit (0 if valid, 78 if not).
    #[arg(short = 't', long = "check-config")]
    check_config: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long = "print-config")]
    print_config: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("weir-server: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        // One address on the command line replaces every configured listener.
        config.listen = listen;
        config.listeners.clear();
    }
    if let Err(e) = config.validate() {
        eprintln!("weir-server: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if args.check_config {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    let mut server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("weir-server: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = args.config.clone() {
        let listen = args.listen;
        server.reload_with(move || {
            let mut config = Config::from_file(&path)?;
            if let Some(listen) = listen {
                config.listen = listen;
                config.listeners.clear();
            }
            config.validate()?;
            Ok(config)
        });
    }
    if let Err(e) = server.handle_signals() {
        eprintln!("weir-server: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-server: {e}");
            ExitCode::FAILURE
        }
    }
}
