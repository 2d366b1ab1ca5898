//! The `ssogate` command: serve the gateway, manage connections, keys and
//! configuration from the shell. The CLI works on the same store as the server.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ssogate::app::{self, App};
use ssogate::clock::Clock;
use ssogate::config::{Config, LogFormat};
use ssogate::connection::{export, ConnectionError, ConnectionPatch};
use ssogate::server;
use ssogate::store::ConnectionSort;
use ssogate::token::Alg;

/// ssogate: an identity federation gateway (SSO broker). Connect OIDC and SAML
/// identity providers, keep a directory of users and groups, and hand verified
/// sessions to your apps and your ingress.
///
/// Configuration comes from --config (TOML) and SSOGATE_* environment variables
/// (SSOGATE_STORE__URL sets store.url). With none, it runs on 127.0.0.1:8080 with a
/// SQLite file in ./data and a master key in ./certs.
#[derive(Parser, Debug)]
#[command(name = "ssogate", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, global = true, env = "SSOGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (the default when no command is given).
    Serve,
    /// List, show, create, import and export connections.
    #[command(subcommand)]
    Connections(ConnectionsCmd),
    /// The gateway's signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The admin token.
    #[command(subcommand, name = "admin-token")]
    AdminToken(AdminTokenCmd),
}

#[derive(Subcommand, Debug)]
enum ConnectionsCmd {
    /// The connections table: active, name, provider, protocol, id, last update.
    List {
        /// Sort column.
        #[arg(long, value_enum, default_value = "name")]
        sort: SortArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One connection, as the API shows it (no secrets).
    Show {
        /// Connection id.
        id: String,
    },
    /// Create a connection from a JSON or YAML file (the body of POST /connections); `-` reads stdin.
    Create {
        /// The file.
        file: PathBuf,
    },
    /// Import connections exported earlier: a JSON or YAML list. Existing ids are updated.
    Import {
        /// The file; `-` reads stdin.
        file: PathBuf,
    },
    /// Export every connection as the bodies that recreate them. Secrets are left out
    /// unless --include-secrets is given. `--format toml` writes `[[connections]]`
    /// tables to paste into the configuration file (declarative configuration; give each
    /// secret there as `client_secret_file` or `client_secret_env`).
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "yaml")]
        format: Format,
        /// Include client secrets and SP private keys in clear text.
        #[arg(long)]
        include_secrets: bool,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Generate a new signing key; the current one is retired but stays published.
    Generate {
        /// Algorithm.
        #[arg(long, value_enum, default_value = "ES256")]
        alg: Alg,
    },
    /// List signing keys.
    List,
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Load and validate the configuration; list every problem, or print the result.
    Check,
}

#[derive(Subcommand, Debug)]
enum AdminTokenCmd {
    /// Replace the admin token with a new one and print it once.
    Reset,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum SortArg {
    Name,
    Active,
    Provider,
    Protocol,
    Id,
    UpdatedAt,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Format {
    Json,
    Yaml,
    Toml,
}

fn load_config(cli: &Cli) -> Result<Config> {
    // vars_os: a variable that is not Unicode must not crash the start; ours are ASCII.
    let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    Config::load(cli.config.as_deref(), env).map_err(|e| anyhow::anyhow!("{e}"))
}

fn init_logs(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = load_config(&cli)?;
    init_logs(&config);
    match cli.command.as_ref().unwrap_or(&Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Config(ConfigCmd::Check) => {
            println!("configuration is valid");
            println!("  listen      {}", config.listen);
            println!("  public_url  {}", config.public_url);
            println!("  store       {}", app::redact_url(&config.store_url()));
            let d = &config.declared;
            if !(d.connections.is_empty() && d.groups.is_empty() && d.clients.is_empty()) {
                println!("  declared    {} connection(s), {} group(s), {} client(s); secrets read", d.connections.len(), d.groups.len(), d.clients.len());
            }
            Ok(())
        }
        Command::Connections(cmd) => connections(config, cmd).await,
        Command::Keys(cmd) => keys(config, cmd).await,
        Command::AdminToken(AdminTokenCmd::Reset) => {
            if config.admin_token.is_some() {
                bail!("the admin token comes from SSOGATE_ADMIN_TOKEN (or admin_token in the config file), which always wins: change it there instead");
            }
            let (app, _) = start(config).await?;
            let token = app::reset_admin_token(app.store.as_ref(), app.clock.now(), "cli").await?;
            println!("{}", token.expose());
            eprintln!("the new admin token is above; it is shown only now. Running gateways take it, and refuse the old one, within a second.");
            Ok(())
        }
    }
}

async fn start(config: Config) -> Result<(App, app::Startup)> {
    App::start(config, Clock::system()).await.map_err(|e| anyhow::anyhow!("{e}"))
}

async fn serve(config: Config) -> Result<()> {
    let listen = config.listen;
    // Before anything can be seen from outside: a SIGTERM from now on is a graceful stop.
    let shutdown = shutdown_signal();
    let (app, startup) = start(config).await?;
    if startup.master_key_created {
        tracing::warn!(path = %app.config.certs_dir.join("master.key").display(), "created a new master key; back it up: stored secrets cannot be read without it");
    }
    if let Some(token) = &startup.admin_token_generated {
        // Printed once, to the terminal, never to the log.
        println!("\nssogate admin token (shown once; keep it, only its hash is stored):\n\n    {}\n", token.expose());
        println!("use it as: curl -H 'Authorization: Bearer <token>' {}/api/v1/admin/connections\n", app.config.public_base());
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("could not listen on {listen} (set listen or SSOGATE_LISTEN)"))?;
    tracing::info!(listen = %listener.local_addr()?, public_url = %app.config.public_url, "ssogate is serving");
    let app = std::sync::Arc::new(app);
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = match app.config.metrics.listen.filter(|_| app.config.metrics.enabled) {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("could not listen on {addr} for metrics (metrics.listen)"))?;
            tracing::info!(listen = %l.local_addr()?, "metrics at /metrics");
            let stopped = async {
                let _ = metrics_stopped.await;
            };
            Some(tokio::spawn(server::serve_metrics(l, app.clone(), stopped)))
        }
        None => None,
    };
    let reload = reload_on_hangup(app.clone());
    server::serve(listener, app, shutdown).await?;
    reload.abort();
    let _ = metrics_stop.send(());
    if let Some(m) = metrics {
        let _ = m.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: reads the configuration file again and reconciles the connections, groups and
/// clients it declares (nothing else of the file changes until a restart).
fn reload_on_hangup(app: std::sync::Arc<App>) -> tokio::task::JoinHandle<()> {
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let Ok(mut hangups) = hangups else {
                tracing::warn!("could not listen for SIGHUP: the configuration is read at start only");
                return;
            };
            while hangups.recv().await.is_some() {
                tracing::info!(file = ?app.config.file, "SIGHUP: applying the configuration file's declarations");
                let env: Vec<(String, String)> = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
                if let Ok(report) = ssogate::declare::reload(&app, env).await {
                    tracing::info!(changes = report.changes.len(), failures = report.failures.len(), "configuration reloaded");
                }
            }
        }
        #[cfg(not(unix))]
        let _ = app;
    })
}

/// The stop signals (SIGTERM, Ctrl-C), registered when this is called, not when the
/// future is first polled: a SIGTERM that arrives before the server first waits for it
/// must stop the gateway gracefully, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (mut term, mut int) = signals;
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let (term, int) = (term.take(), int.take());
            tokio::select! { () = wait(term) => {}, () = wait(int) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}

fn read_input(file: &PathBuf) -> Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("could not read {}", file.display()))
    }
}

fn parse_doc<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    if text.trim_start().starts_with(['{', '[']) {
        serde_json::from_str(text).context("the file is not valid JSON for this command")
    } else {
        yaml_serde::from_str(text).context("the file is not valid YAML for this command")
    }
}

fn explain(e: ConnectionError) -> anyhow::Error {
    match e {
        ConnectionError::Invalid(fields) => {
            let lines: Vec<String> = fields.iter().map(|f| format!("  - {}: {}", f.field, f.message)).collect();
            anyhow::anyhow!("the connection is not valid:\n{}", lines.join("\n"))
        }
        other => anyhow::anyhow!("{other}"),
    }
}

async fn connections(config: Config, cmd: &ConnectionsCmd) -> Result<()> {
    let (app, _) = start(config).await?;
    let base = app.config.public_base();
    match cmd {
        ConnectionsCmd::List { sort, json } => {
            let sort = match sort {
                SortArg::Name => ConnectionSort::Name,
                SortArg::Active => ConnectionSort::Active,
                SortArg::Provider => ConnectionSort::Provider,
                SortArg::Protocol => ConnectionSort::Protocol,
                SortArg::Id => ConnectionSort::Id,
                SortArg::UpdatedAt => ConnectionSort::UpdatedAt,
            };
            let list = app.registry.list(sort, false).await.map_err(explain)?;
            if *json {
                let views: Vec<_> = list.iter().map(|c| c.view(&base)).collect();
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                println!("{:<7} {:<30} {:<10} {:<9} {:<22} LAST UPDATE", "ACTIVE", "NAME", "PROVIDER", "PROTOCOL", "ID");
                for c in list {
                    println!(
                        "{:<7} {:<30} {:<10} {:<9} {:<22} {}",
                        if c.active { "yes" } else { "no" },
                        c.display_name,
                        c.provider,
                        c.protocol(),
                        c.id,
                        ssogate::clock::rfc3339(c.updated_at)
                    );
                }
            }
        }
        ConnectionsCmd::Show { id } => {
            let c = app.registry.get(id).await.map_err(explain)?;
            println!("{}", serde_json::to_string_pretty(&c.view(&base))?);
        }
        ConnectionsCmd::Create { file } => {
            let patch: ConnectionPatch = parse_doc(&read_input(file)?)?;
            let c = app.registry.create(&patch, "cli").await.map_err(explain)?;
            println!("created connection {} ({})", c.id, c.display_name);
        }
        ConnectionsCmd::Import { file } => {
            let items: Vec<ConnectionPatch> = parse_doc(&read_input(file)?)?;
            let (mut created, mut updated, mut failed) = (0, 0, 0);
            for (i, item) in items.iter().enumerate() {
                let label = item.display_name.clone().unwrap_or_else(|| format!("item {i}"));
                let existing = match &item.id {
                    Some(id) => app.registry.get(id).await.ok(),
                    None => None,
                };
                let result = match existing {
                    Some(c) => {
                        let mut p = item.clone();
                        p.id = None;
                        p.protocol = None;
                        p.discover = Some(false);
                        app.registry.update_admission(&c.id, &p, None, "cli").await.map(|(c, admission_changed)| (c, false, admission_changed))
                    }
                    None => app.registry.create(item, "cli").await.map(|c| (c, true, false)),
                };
                match result {
                    Ok((c, true, _)) => {
                        created += 1;
                        eprintln!("created {} ({})", c.id, c.display_name);
                    }
                    Ok((c, false, admission_changed)) => {
                        updated += 1;
                        eprintln!("updated {} ({})", c.id, c.display_name);
                        // Turned off, or who may sign in changed: its sessions end, as
                        // through the API (reaching the servers' only when the state is
                        // shared, in Redis; in memory they are the server's own).
                        if !c.active || admission_changed {
                            if let Err(e) = app.sessions.remove_connection(&c.id).await {
                                failed += 1;
                                eprintln!("{}: turned off or changed who may sign in, but its sessions could not be ended: {e}", c.id);
                            }
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("{label}: {}", explain(e));
                    }
                }
            }
            eprintln!("{created} created, {updated} updated, {failed} failed");
            if failed > 0 {
                bail!("{failed} connection(s) could not be imported");
            }
        }
        ConnectionsCmd::Export { format, include_secrets } => {
            if matches!(format, Format::Toml) && *include_secrets {
                bail!("the configuration file takes secrets by reference only (client_secret_file, client_secret_env): export without --include-secrets");
            }
            let list = app.registry.list(ConnectionSort::Name, false).await.map_err(explain)?;
            let items: Vec<ConnectionPatch> = list.iter().map(|c| export(c, *include_secrets)).collect();
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&items)?),
                Format::Yaml => print!("{}", yaml_serde::to_string(&items)?),
                Format::Toml => {
                    #[derive(serde::Serialize)]
                    struct File<'a> {
                        connections: &'a [ConnectionPatch],
                    }
                    print!("{}", toml::to_string(&File { connections: &items })?);
                }
            }
        }
    }
    Ok(())
}

async fn keys(config: Config, cmd: &KeysCmd) -> Result<()> {
    let (app, _) = start(config).await?;
    match cmd {
        KeysCmd::Generate { alg } => {
            let k = ssogate::token::rotate(app.store.as_ref(), &app.cipher, *alg, app.clock.now(), "cli").await?;
            println!("generated {} key {}; it signs from now on, older keys stay published", k.alg, k.kid);
        }
        KeysCmd::List => {
            for k in app.store.signing_key_list().await? {
                let state = match k.retired_at {
                    None => "active".to_string(),
                    Some(at) => format!("retired {}", ssogate::clock::rfc3339(at)),
                };
                println!("{}  {}  created {}  {}", k.kid, k.alg, ssogate::clock::rfc3339(k.created_at), state);
            }
        }
    }
    Ok(())
}
