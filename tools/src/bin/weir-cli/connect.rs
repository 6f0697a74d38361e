//! Connecting: options, credentials and TLS from the command line; what failed.

use super::*;

/// Why a command failed; printed on stderr.
#[derive(Debug)]
pub(crate) enum Failure {
    Client(ClientError),
    Connect { server: String, error: ClientError },
    NothingPublished,
    Stats(serde_json::Error),
    Stdin(io::Error),
    Stdout(io::Error),
    TimedOut { received: u64, wanted: u64 },
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure::Client(error)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Client(e) => write!(f, "{e}"),
            Failure::Connect { server, error } => write!(f, "cannot connect to {server}: {error}"),
            Failure::NothingPublished => write!(f, "nothing published: stdin had no lines"),
            Failure::Stats(e) => write!(f, "the server's stats report does not parse: {e}"),
            Failure::Stdin(e) => write!(f, "reading stdin: {e}"),
            Failure::Stdout(e) => write!(f, "writing stdout: {e}"),
            Failure::TimedOut { received, wanted } => {
                write!(f, "timed out after {received} of {wanted} messages")
            }
        }
    }
}

pub(crate) fn client_options(cli: &Cli) -> ClientOptions {
    ClientOptions {
        name: String::from("weir-cli"),
        inflight_window: 0,
        timeout: Some(cli.timeout.unwrap_or(DEFAULT_TIMEOUT)),
        // Checked in `main`.
        auth: credentials(cli).ok().flatten(),
        extensions: false,
    }
}

/// Credentials from `--user` and the environment (never from a flag value).
pub(crate) fn credentials(cli: &Cli) -> Result<Option<Credentials>, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(user) = &cli.user {
        let password = var("WEIR_PASSWORD")
            .ok_or_else(|| "--user needs the password in the WEIR_PASSWORD variable".to_owned())?;
        return Ok(Some(Credentials::password(user, &password)));
    }
    if let Some(token) = var("WEIR_TOKEN") {
        return Ok(Some(Credentials::token(&token)));
    }
    Ok(var("WEIR_SIGNED_TOKEN").map(|token| Credentials::signed_token(&token)))
}

/// TLS from `--tls-ca` and `--tls-name`, if asked for.
pub(crate) fn tls_options(cli: &Cli) -> Option<TlsOptions> {
    let ca = cli.tls_ca.as_ref()?;
    let name = cli
        .tls_name
        .clone()
        .unwrap_or_else(|| host_part(&cli.server).to_owned());
    Some(TlsOptions::ca_file(&name, ca))
}

/// "host" of "host:port" or "[v6]:port"; the whole text when there is no port.
pub(crate) fn host_part(server: &str) -> &str {
    let host = match server.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => server,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

pub(crate) fn connect(cli: &Cli) -> Result<Client, Failure> {
    let options = client_options(cli);
    let server = cli.server.as_str();
    match tls_options(cli) {
        Some(tls) => Client::connect_tls(server, &options, &tls),
        None => Client::connect(server, &options),
    }
    .map_err(|error| Failure::Connect {
        server: cli.server.clone(),
        error,
    })
}

/// A client for `pub` and `sub`: it reconnects and resumes after a cut, with the library's
/// default backoff and limits.
/// HELLO sets EXTENSIONS when `extensions` (groups, patterns, time
/// to live; an older server refuses the flag, so it is set only when asked for).
pub(crate) fn connect_reconnecting_with(
    cli: &Cli,
    extensions: bool,
) -> Result<ReconnectingClient, Failure> {
    let options = ReconnectOptions::default();
    let client_options = ClientOptions {
        extensions,
        ..client_options(cli)
    };
    let server = cli.server.as_str();
    match tls_options(cli) {
        Some(tls) => ReconnectingClient::connect_tls(server, &client_options, &tls, &options),
        None => ReconnectingClient::connect(server, &client_options, &options),
    }
    .map_err(|error| Failure::Connect {
        server: cli.server.clone(),
        error,
    })
}
