//! `tessella-node`: run a node (`run`), be PID 1 of the node's image
//! (`init`, also when started as PID 1 without a subcommand), or run a local
//! dev cluster (`dev`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tessella_attestation::clock::{Clock, SystemClock};
use tessella_attestation::dev::{DevPki, DevTd};
use tessella_attestation::provider::ConfigfsTsm;
use tessella_attestation::{CollateralStore, Policy, QuoteProvider, TicketIssuer, TrustedIssuer};
use tessella_node::config::{IdentityMode, NodeConfig};
use tessella_node::configid;
use tessella_node::devnet::{dev_policy, DevCluster, DevOptions, DEV_TD_NAME};
use tessella_node::discovery::DiscoveryOptions;
use tessella_node::network::Limits;
use tessella_node::pid1::{self, linux, LinuxSystem, System};
use tessella_node::{Identity, Node, NodeSpec, TicketSource};

#[derive(Parser)]
#[command(name = "tessella-node", version, about = "A tessella node")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node from a TOML config (production: TDX quotes via configfs-tsm).
    Run {
        /// The config file (every option can also be set as TESSELLA_<SECTION>_<KEY>).
        #[arg(long, short, env = "TESSELLA_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Be PID 1 of the node's image: mount, load modules, read the config
    /// (fw_cfg, else /etc/tessella/node.toml), bring the network up, then run
    /// the node. The default when the process is PID 1. Never exits.
    Init,
    /// Start a local dev-mode cluster with admin APIs until Ctrl-C (all
    /// nodes in this process, or only `--member I`).
    Dev {
        /// Number of nodes in the cluster.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Run only node I of the cluster, as this process (the others run
        /// as their own processes with the same command and another I).
        #[arg(long, value_name = "I")]
        member: Option<usize>,
        /// Where the shared dev files and each node's key go.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// First QUIC port; node I listens on P+I (default: free ports, or
        /// 7946 with --member).
        #[arg(long, default_value_t = 0)]
        base_port: u16,
        /// First admin API port; node I serves on A+I (default: free ports,
        /// or 9946 with --member).
        #[arg(long, default_value_t = 0)]
        admin_base_port: u16,
        /// Network name.
        #[arg(long, default_value = "tessella-dev")]
        network: String,
    },
    /// Print an example configuration file.
    ExampleConfig,
}

fn init_tracing(ansi: bool) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn main() -> ExitCode {
    // The kernel runs /init with no arguments (and passes it any command-line
    // word it does not know): as PID 1, anything but a valid subcommand is init.
    let command = match Cli::try_parse() {
        Ok(Cli {
            command: Some(command),
        }) => command,
        Ok(Cli { command: None }) if linux::is_pid1() => Command::Init,
        Err(e) if linux::is_pid1() => {
            let _ = writeln!(
                std::io::stderr(),
                "{}ignoring arguments ({})",
                pid1::CONSOLE_PREFIX,
                e.kind()
            );
            Command::Init
        }
        Ok(Cli { command: None }) => {
            eprintln!("tessella-node: a subcommand is required (see --help)");
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    if let Command::Init = command {
        if !linux::is_pid1() {
            eprintln!(
                "tessella-node: init is PID 1 of the node's image (it mounts file systems and \
                 configures the network) and refuses to run as process {}",
                std::process::id()
            );
            return ExitCode::from(2);
        }
        init_tracing(false);
        init_main();
    }
    init_tracing(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tessella-node: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match command {
            // Handled (and never returned from) before the runtime exists.
            Command::Init => Err(anyhow::anyhow!("init must start before the runtime")),
            Command::Run { config } => run(config).await,
            Command::Dev {
                nodes,
                member,
                data_dir,
                base_port,
                admin_base_port,
                network,
            } => {
                let defaults = DevOptions::default();
                dev(DevOptions {
                    nodes,
                    member,
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
    let total = opts.nodes;
    let member = opts.member;
    let cluster = DevCluster::start(opts).await?;
    match member {
        Some(i) => {
            println!("tessella dev cluster: member {i} of {total} (DEV MODE: dev PKI, not Intel)")
        }
        None => println!("tessella dev cluster: {total} nodes (DEV MODE: dev PKI, not Intel)"),
    }
    println!("data dir: {}", cluster.data_dir.display());
    for n in &cluster.nodes {
        println!(
            "node {}: id {} quic {} admin http://{}",
            n.index,
            n.node.node_id(),
            n.node.local_addr(),
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
        if first.group.is_some() {
            println!(
                "     curl -H \"Authorization: Bearer $(cat {}/admin.jwt)\" http://{}/v1/groups/{}",
                cluster.data_dir.display(),
                first.admin_addr,
                tessella_node::devnet::DEV_GROUP
            );
        }
    }
    println!("ready; Ctrl-C to stop");
    stop_signal().await?;
    println!("stopping");
    cluster.shutdown().await;
    Ok(())
}

/// PID 1: boot the guest, then serve the node; on any failure print it and
/// stay alive.
fn init_main() -> ! {
    let mut sys = LinuxSystem::new();
    let env = match NodeConfig::process_env() {
        Ok(env) => env,
        Err(e) => pid1::halt(&mut sys, &e),
    };
    let booted = match pid1::boot(&mut sys, &env) {
        Ok(b) => b,
        Err(e) => pid1::halt(&mut sys, &e),
    };
    sys.close_netlink();
    if let Err(e) = linux::spawn_reaper() {
        sys.console(&format!("warning: cannot start the zombie reaper: {e}"));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => pid1::halt(&mut sys, &format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(serve(booted.config, booted.config_bytes, Launch::Init));
    match result {
        Ok(()) => pid1::halt(&mut sys, &"the node stopped"),
        Err(e) => pid1::halt(&mut sys, &format!("{e:#}")),
    }
}

/// Who starts the node: `run` (production only) or PID 1 (`init`, where a
/// dev-mode config is allowed for dev images).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Launch {
    Run,
    Init,
}

impl Launch {
    /// A progress line: the console for PID 1, the log for `run`.
    fn say(self, line: &str) {
        match self {
            // PID 1 must not die of a failed console write (eprintln! panics).
            Launch::Init => {
                let _ = writeln!(std::io::stderr(), "{}{line}", pid1::CONSOLE_PREFIX);
            }
            Launch::Run => tracing::info!("{line}"),
        }
    }
}

async fn run(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    // The exact bytes parsed are the ones bound to MRCONFIGID.
    let (bytes, origin) = match &config_path {
        Some(path) => (
            std::fs::read(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
            path.clone(),
        ),
        None => (Vec::new(), PathBuf::from("(no config file)")),
    };
    let config = NodeConfig::load_bytes(&bytes, &origin, NodeConfig::process_env()?)?;
    serve(config, bytes, Launch::Run).await
}

/// The operator id of the dev boot's admin ticket (as `tessella-node dev`'s).
fn dev_operator_id() -> String {
    hex::encode(blake3::derive_key("tessella dev operator v1", b"admin"))
}

/// Start the node from a loaded config whose exact bytes are `config_bytes`,
/// and serve until stopped.
async fn serve(config: NodeConfig, config_bytes: Vec<u8>, launch: Launch) -> anyhow::Result<()> {
    for w in config.warnings() {
        tracing::warn!(key = w.key, "{}", w.message);
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config_bytes = Arc::new(config_bytes);
    let mut dev_issuer = None;
    let identity = match (config.identity.mode, launch) {
        (IdentityMode::Tdx, _) => {
            let provider = Arc::new(ConfigfsTsm::new());
            // Refuse before the node shows its quote to anyone.
            let binding = {
                let provider: Arc<dyn QuoteProvider> = provider.clone();
                let bytes = config_bytes.clone();
                tokio::task::spawn_blocking(move || {
                    configid::check_provider(&bytes, provider.as_ref())
                })
                .await
                .context("the MRCONFIGID check stopped")??
            };
            launch.say(&format!("config bound to MRCONFIGID {binding}"));
            Identity::Tdx(provider)
        }
        (IdentityMode::Dev, Launch::Run) => {
            bail!(
                "identity.mode = \"dev\" is for `tessella-node dev`; `run` is production and needs a TD"
            )
        }
        (IdentityMode::Dev, Launch::Init) => {
            launch.say("dev boot: config not bound to MRCONFIGID");
            let seed = DevOptions::default().seed;
            let pki = DevPki::generate(seed.as_bytes()).context("dev PKI")?;
            Identity::Dev {
                pki: Arc::new(pki),
                td: Box::new(DevTd::named(DEV_TD_NAME)),
            }
        }
    };
    let policy = match (&config.policy.file, config.identity.mode) {
        (Some(policy_file), _) => {
            let (policy, notes) = Policy::from_file(policy_file)
                .with_context(|| format!("policy.file {}", policy_file.display()))?;
            for note in notes {
                tracing::warn!("policy: {note}");
            }
            policy
        }
        (None, IdentityMode::Dev) => Policy::new(dev_policy()),
        (None, IdentityMode::Tdx) => bail!("policy.file is required"),
    };
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
    let issuers: Vec<TrustedIssuer> = match &config.tickets.trusted_issuers_file {
        Some(issuers_file) => {
            serde_json::from_slice(&std::fs::read(issuers_file).with_context(|| {
                format!("tickets.trusted_issuers_file {}", issuers_file.display())
            })?)
            .with_context(|| {
                format!(
                    "tickets.trusted_issuers_file {}: not a JSON list of issuers",
                    issuers_file.display()
                )
            })?
        }
        None if config.identity.mode == IdentityMode::Dev => {
            // A dev boot without issuers: one made now, its admin ticket on
            // the console (dev mode proves nothing; the token only guards
            // this dev node's admin API).
            let issuer = Arc::new(TicketIssuer::generate_es256("tessella-dev-guest")?);
            let claims = issuer
                .claims(
                    dev_operator_id(),
                    config.network.name.clone(),
                    clock.now_unix(),
                    7 * 24 * 3600,
                )
                .with_admin(true);
            launch.say(&format!("dev admin token {}", issuer.issue(&claims)?));
            let public = issuer.public_key();
            dev_issuer = Some(issuer);
            vec![public]
        }
        None => bail!("tickets.trusted_issuers_file is required"),
    };
    // The node's key (and so its id) is kept under data_dir, so a ticket
    // file issued for it keeps working across restarts of the same data dir
    // (in tdx mode the data dir is memory-backed: a TD reboot is a new id,
    // and the usual path is POST /v1/ticket once the node runs).
    let ticket = match (&config.tickets.ticket_file, dev_issuer) {
        (Some(file), _) => TicketSource::Static(
            std::fs::read_to_string(file)
                .with_context(|| format!("tickets.ticket_file {}", file.display()))?
                .trim()
                .to_string(),
        ),
        (None, Some(issuer)) => TicketSource::Issuer(issuer, 24 * 3600),
        (None, None) => TicketSource::Pending,
    };
    let mut spec = NodeSpec::new(
        config.network.name.clone(),
        identity,
        policy,
        ticket,
        issuers,
    );
    spec.collateral = store;
    spec.ticket_leeway = config.tickets.leeway_secs;
    spec.listen = config.network.listen;
    spec.bootstrap = config.network.bootstrap.clone();
    spec.data_dir = Some(config.data_dir.clone());
    spec.clock = clock.clone();
    spec.limits = Limits {
        max_frame: config.limits.max_frame_bytes as usize,
        max_peers: config.limits.max_peers,
        max_catalog: config.limits.max_catalog,
        event_queue: config.limits.queue_depth,
        ..Limits::default()
    };
    spec.cert_lifetime = config.identity.cert_lifetime_secs;
    spec.discovery = DiscoveryOptions {
        tags: config
            .network
            .tags
            .iter()
            .map(|t| tessella_node::id::Tag::from_name(t))
            .collect(),
        interval: config.discovery.gossip_interval(),
        peer_ttl: config.discovery.peer_ttl(),
        max_catalog: config.limits.max_catalog,
        event_queue: config.limits.queue_depth,
        ..DiscoveryOptions::default()
    };
    spec.admin = config.admin.enabled.then_some(config.admin.listen);
    spec.collections = config.collections.clone();
    let node = Node::start(spec).await.context("starting the node")?;
    if config.identity.mode == IdentityMode::Tdx {
        // The quote the node now shows its peers must carry the same register.
        if let Err(e) =
            configid::check_measurements(&config_bytes, node.network().own_measurements())
        {
            node.shutdown().await;
            return Err(e.into());
        }
    }
    match launch {
        Launch::Run => println!(
            "node {} listening on {} (network {:?})",
            node.node_id(),
            node.local_addr(),
            config.network.name
        ),
        Launch::Init => launch.say(&format!(
            "node {} listening on {} (network {:?}, identity {})",
            node.node_id(),
            node.local_addr(),
            config.network.name,
            config.identity.mode
        )),
    }
    if let Some(addr) = node.admin_addr() {
        tracing::info!(%addr, "admin API listening");
        if launch == Launch::Init {
            launch.say(&format!("admin API on {addr}"));
        }
    }
    if launch == Launch::Init {
        let _ = writeln!(std::io::stderr(), "{}", pid1::READY_LINE);
    }
    stop_signal().await?;
    node.shutdown().await;
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
