//! `tessella-node`: run a node (`run`), be PID 1 of the node's image
//! (`init`, also when started as PID 1 without a subcommand), or run a local
//! dev cluster (`dev`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tessella_node::config::NodeConfig;
use tessella_node::devnet::{DevCluster, DevOptions};
use tessella_node::launch::{self, Launch};
use tessella_node::pid1::{self, linux, LinuxSystem, System};

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

/// Start the node from a loaded config whose exact bytes are `config_bytes`,
/// and serve until stopped.
async fn serve(config: NodeConfig, config_bytes: Vec<u8>, launch: Launch) -> anyhow::Result<()> {
    let node = launch::start(&config, config_bytes, launch).await?;
    match launch {
        Launch::Run => println!(
            "node {} listening on {} (network {:?})",
            node.node_id(),
            node.local_addr(),
            config.network.name
        ),
        Launch::Init => {
            let _ = writeln!(std::io::stderr(), "{}", pid1::READY_LINE);
        }
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
