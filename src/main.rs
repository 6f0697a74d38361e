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
    /// Validate the configuration, including that TLS files are readable and parse, and exit
    /// (0 if valid, 78 if not).
    #[arg(short = 't', long = "check-config")]
    check_config: bool,
    /// Print the effective configuration as TOML and exit (secrets not shown, unset optional
    /// keys commented out).
    #[arg(long = "print-config")]
    print_config: bool,
    /// Write the server's process id to this file once it listens; removed at a clean exit
    /// (for `kill -HUP "$(cat PATH)"`).
    #[arg(long = "pid-file", value_name = "PATH", env = "WEIR_PID_FILE")]
    pid_file: Option<PathBuf>,
    /// Read a password from stdin (one line), print its `password_hash` for [[users]], exit.
    #[arg(long = "hash-password")]
    hash_password: bool,
    /// Sign a token payload (JSON: subject, exp, publish, subscribe, admin) with the config's
    /// token_signing_key, print the token, exit.
    #[arg(long = "sign-token", value_name = "JSON")]
    sign_token: Option<String>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if args.hash_password {
        return hash_password_from_stdin();
    }
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
    if let Some(payload) = &args.sign_token {
        let Some(key) = &config.token_signing_key else {
            eprintln!("weir-server: --sign-token needs token_signing_key in the config (-c)");
            return ExitCode::from(EXIT_CONFIG);
        };
        let token = weir::credentials::parse_signing_key(key)
            .and_then(|key| weir::credentials::sign_token(&key, payload));
        return match token {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("weir-server: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = config.check_files() {
        eprintln!("weir-server: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if args.check_config {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    let mut server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("weir-server: cannot start: {e}");
            return ExitCode::from(start_failure_status(&e));
        }
    };
    if let Some(path) = args.config.clone() {
        let listen = args.listen;
        server.reload_with(move || {
            let mut config = weir::config::reload::load_file(&path)?;
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
    if let Some(path) = &args.pid_file {
        if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
            eprintln!(
                "weir-server: cannot write --pid-file {}: {e}",
                path.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let result = server.run();
    if let Some(path) = &args.pid_file {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status when binding fails: 78 (bad configuration, so systemd's
/// `RestartPreventExitStatus=78` does not restart in a loop) when the configuration cannot
/// work on this machine as it stands: a TLS file or setting refused, an address that is not
/// this machine's, a port it may not use. 1 for what may pass (an address in use).
fn start_failure_status(error: &std::io::Error) -> u8 {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidInput
        | ErrorKind::InvalidData
        | ErrorKind::NotFound
        | ErrorKind::AddrNotAvailable
        | ErrorKind::PermissionDenied => EXIT_CONFIG,
        _ => 1,
    }
}

/// `--hash-password`: one line from stdin (without its line ending) → `password_hash`.
fn hash_password_from_stdin() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("weir-server: cannot read the password from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("weir-server: empty password");
        return ExitCode::from(2);
    }
    match weir::credentials::hash_password(password.as_bytes()) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weir-server: OS random source failed: {e}");
            ExitCode::FAILURE
        }
    }
}
