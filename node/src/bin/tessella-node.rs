//! `tessella-node`: run a node (`run`) or a local dev cluster (`dev`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tessella_attestation::clock::{Clock, SystemClock};
use tessella_attestation::provider::ConfigfsTsm;
use tessella_attestation::{CollateralStore, Policy, TicketValidator, TrustedIssuer};
use tessella_node::admin::{self, AdminAuth};
use tessella_node::config::{IdentityMode, NodeConfig};
use tessella_node::devnet::{DevCluster, DevOptions};
use tessella_node::network::Limits;
use tessella_node::status::NodeAdmin;
use tessella_node::{Identity, Network, TicketSource};

#[derive(Parser)]
#[command(name = "tessella-node", version, about = "A tessella node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node from a TOML config (production: TDX quotes via configfs-tsm).
    Run {
        /// The config file (every option can also be set as TESSELLA_<SECTION>_<KEY>).
        #[arg(long, short, env = "TESSELLA_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Start a local dev-mode cluster with admin APIs until Ctrl-C.
    Dev {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Where the generated dev PKI, policy, issuer and tokens go.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// First QUIC port (default: free ports).
        #[arg(long, default_value_t = 0)]
        base_port: u16,
        /// First admin API port (default: free ports).
        #[arg(long, default_value_t = 0)]
        admin_base_port: u16,
        /// Network name.
        #[arg(long, default_value = "tessella-dev")]
        network: String,
    },
    /// Print an example configuration file.
    ExampleConfig,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessella-node: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Dev {
                nodes,
                data_dir,
                base_port,
                admin_base_port,
                network,
            } => {
                let defaults = DevOptions::default();
                dev(DevOptions {
                    nodes,
                    network,
                    data_dir: data_dir.unwrap_or(defaults.data_dir.clone()),
                    base_port,
                    admin_base_port,
                    ..defaults
                })
                .await
            }
            Command::ExampleConfig => {
                print!("{}", NodeConfig::example_toml());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessella-node: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dev(opts: DevOptions) -> anyhow::Result<()> {
    if opts.nodes == 0 || opts.nodes > 64 {
        bail!("--nodes must be between 1 and 64");
    }
    let cluster = DevCluster::start(opts).await?;
    println!(
        "tessella dev cluster: {} nodes (DEV MODE: dev PKI, not Intel)",
        cluster.nodes.len()
    );
    println!("data dir: {}", cluster.data_dir.display());
    for (i, n) in cluster.nodes.iter().enumerate() {
        println!(
            "node {i}: id {} quic {} admin http://{}",
            n.network.node_id(),
            n.network.local_addr(),
            n.admin_addr
        );
    }
    println!("admin token: {}", cluster.admin_token);
    if let Some(first) = cluster.nodes.first() {
        println!(
            "try: curl -H \"Authorization: Bearer $(cat {}/admin.jwt)\" http://{}/v1/peers",
            cluster.data_dir.display(),
            first.admin_addr
        );
    }
    println!("ready; Ctrl-C to stop");
    stop_signal().await?;
    println!("stopping");
    cluster.shutdown().await;
    Ok(())
}

async fn run(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path.as_deref())?;
    for w in config.warnings() {
        tracing::warn!(key = w.key, "{}", w.message);
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let identity = match config.identity.mode {
        IdentityMode::Tdx => Identity::Tdx(Arc::new(ConfigfsTsm::new())),
        IdentityMode::Dev => {
            bail!(
                "identity.mode = \"dev\" is for `tessella-node dev`; `run` is production and needs a TD"
            )
        }
    };
    let policy_file = config
        .policy
        .file
        .as_ref()
        .context("policy.file is required")?;
    let (policy, notes) = Policy::from_file(policy_file)
        .with_context(|| format!("policy.file {}", policy_file.display()))?;
    for note in notes {
        tracing::warn!("policy: {note}");
    }
    let store = Arc::new(CollateralStore::new());
    let dir = config.collateral_dir();
    match store.load_dir(&dir) {
        Ok(outcomes) => {
            for o in outcomes {
                if let Err(e) = o.result {
                    tracing::warn!(path = %o.path.display(), error = %e, "collateral skipped");
                }
            }
        }
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "no collateral directory"),
    }
    let issuers_file = config
        .tickets
        .trusted_issuers_file
        .as_ref()
        .context("tickets.trusted_issuers_file is required")?;
    let issuers: Vec<TrustedIssuer> = serde_json::from_slice(
        &std::fs::read(issuers_file)
            .with_context(|| format!("tickets.trusted_issuers_file {}", issuers_file.display()))?,
    )
    .with_context(|| {
        format!(
            "tickets.trusted_issuers_file {}: not a JSON list of issuers",
            issuers_file.display()
        )
    })?;
    // The node's key (and so its id) is made at start: a ticket file only
    // works when the key is stable across restarts, which it is not; the
    // usual path is POST /v1/ticket once the node runs.
    let ticket = match &config.tickets.ticket_file {
        Some(file) => TicketSource::Static(
            std::fs::read_to_string(file)
                .with_context(|| format!("tickets.ticket_file {}", file.display()))?
                .trim()
                .to_string(),
        ),
        None => TicketSource::Pending,
    };
    let network = Network::builder(&config.network.name)
        .identity(identity)
        .policy(policy)
        .collateral(store)
        .ticket(ticket)
        .trusted_issuers(issuers.clone())
        .ticket_leeway(config.tickets.leeway_secs)
        .listen(config.network.listen)
        .bootstrap(config.network.bootstrap.clone())
        .tags(
            config
                .network
                .tags
                .iter()
                .map(|t| tessella_node::id::Tag::from_name(t))
                .collect(),
        )
        .clock(clock.clone())
        .limits(Limits {
            max_frame: config.limits.max_frame_bytes as usize,
            max_peers: config.limits.max_peers,
            max_catalog: config.limits.max_catalog,
            event_queue: config.limits.queue_depth,
        })
        .cert_lifetime(config.identity.cert_lifetime_secs)
        .gossip_interval(config.discovery.gossip_interval())
        .peer_ttl(config.discovery.peer_ttl())
        .build()
        .await
        .context("starting the node")?;
    let network = Arc::new(network);
    println!(
        "node {} listening on {} (network {:?})",
        network.node_id(),
        network.local_addr(),
        config.network.name
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let admin_task = if config.admin.enabled {
        let validator = Arc::new(TicketValidator::new(config.network.name.clone(), issuers)?);
        let listener = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("admin.listen {}", config.admin.listen))?;
        let router = admin::router(
            Arc::new(NodeAdmin(network.clone())),
            AdminAuth::new(validator, clock),
        );
        tracing::info!(addr = %config.admin.listen, "admin API listening");
        Some(tokio::spawn(async move {
            let _ = admin::serve(listener, router, async move {
                let _ = stop_rx.changed().await;
            })
            .await;
        }))
    } else {
        None
    };
    stop_signal().await?;
    let _ = stop_tx.send(true);
    network.shutdown().await;
    if let Some(t) = admin_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (how service managers and `timeout` stop a process).
async fn stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
