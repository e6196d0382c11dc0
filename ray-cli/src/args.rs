//! Command-line arguments (DESIGN.md section 6; keep these names).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{CliError, Result};
use crate::membership::Resources;
use crate::tempdir::DEFAULT_TEMP_DIR;

/// The default port of a node's listener.
pub const DEFAULT_PORT: u16 = 6380;

/// The default port of the head's dashboard (Ray's).
pub const DEFAULT_DASHBOARD_PORT: u16 = 8265;

/// ray-rs: start, stop and inspect a ray-rs cluster.
#[derive(Debug, Parser)]
#[command(name = "ray-rs", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a node: the head (`--head`) or one joining a cluster (`--address`).
    Start(StartArgs),
    /// Stop the node daemon started under a temp dir (and its etcd).
    Stop(StopArgs),
    /// Show the cluster's nodes and their resources.
    Status(StatusArgs),
    /// List what runs on the cluster's nodes: nodes, actors, tasks, objects or workers (Ray's
    /// `ray list`).
    List(ListArgs),
    /// Count tasks, actors or objects by name and state (Ray's `ray summary`).
    Summary(SummaryArgs),
    /// Write every task and actor call the nodes remember as Chrome trace events (Ray's
    /// `ray timeline`; open the file in Perfetto or chrome://tracing).
    Timeline(TimelineArgs),
    /// What fills the object stores: each node's use, and the largest objects with where they
    /// are and who holds them (Ray's `ray memory`).
    Memory(MemoryArgs),
    /// What a worker printed: the worker of an actor, of a task, or a worker pid (Ray's
    /// `ray logs`). Its stdout lines go to stdout, its stderr lines to stderr.
    Logs(LogsArgs),
}

/// `ray-rs logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// An actor id, a task id, or a worker's pid (`ray-rs list actors|tasks|workers` show them).
    #[arg(value_name = "ACTOR_ID|TASK_ID|PID")]
    pub target: String,
    /// Keep printing new lines as the worker writes them, until it exits (or Ctrl-C).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// The node the pid is on, when pids of several nodes match.
    #[arg(long, value_name = "NODE_ID")]
    pub node: Option<u32>,
    /// The cluster.
    #[command(flatten)]
    pub attach: Attach,
}

/// `ray-rs memory`.
#[derive(Debug, Clone, Args)]
pub struct MemoryArgs {
    /// How many objects to show, largest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// The cluster.
    #[command(flatten)]
    pub attach: Attach,
}

/// Which cluster a `list`, `summary` or `timeline` asks.
#[derive(Debug, Clone, Args)]
pub struct Attach {
    /// A node's HOST:PORT (default: RAY_ADDRESS, else the node started under --temp-dir).
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
    /// The temp dir of a node on this machine (for its address, token and CA).
    #[arg(long, default_value = DEFAULT_TEMP_DIR)]
    pub temp_dir: PathBuf,
}

/// Output formats of `list` and `summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// A table.
    Table,
    /// JSON.
    Json,
}

/// `ray-rs list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// What to list: nodes, actors, tasks, objects or workers.
    pub kind: String,
    /// Only rows whose field KEY equals VALUE (`KEY!=VALUE`: differs); repeatable.
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// At most this many rows (default 100).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// The cluster.
    #[command(flatten)]
    pub attach: Attach,
}

/// `ray-rs summary`.
#[derive(Debug, Clone, Args)]
pub struct SummaryArgs {
    /// What to count: tasks, actors or objects.
    pub kind: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// The cluster.
    #[command(flatten)]
    pub attach: Attach,
}

/// `ray-rs timeline`.
#[derive(Debug, Clone, Args)]
pub struct TimelineArgs {
    /// The file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// The cluster.
    #[command(flatten)]
    pub attach: Attach,
}

/// `ray-rs start`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["head", "address"])))]
pub struct StartArgs {
    /// Start the head node (and etcd, unless --etcd is given).
    #[arg(long)]
    pub head: bool,
    /// Join the cluster whose head listens at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
    /// Port of this node's listener (0: any free port).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// The address other nodes use to reach this one (default: the head's first non-loopback
    /// IPv4 address; a joining node's address towards the head).
    #[arg(long, value_name = "IP")]
    pub node_ip: Option<IpAddr>,
    /// CPUs this node offers (default: the machine's).
    #[arg(long)]
    pub num_cpus: Option<f64>,
    /// GPUs this node offers (default: detected).
    #[arg(long)]
    pub num_gpus: Option<f64>,
    /// Custom resources: name=amount[,name=amount...].
    #[arg(long, value_name = "NAME=AMOUNT,...")]
    pub resources: Option<String>,
    /// Directory for the node's pid files, logs, certificates, token, binary cache and spill.
    #[arg(long, default_value = DEFAULT_TEMP_DIR)]
    pub temp_dir: PathBuf,
    /// Stay in the foreground (containers, systemd, tests).
    #[arg(long)]
    pub block: bool,
    /// Use this etcd (http://H:P) instead of starting one (head only).
    #[arg(long, value_name = "URL")]
    pub etcd: Option<String>,
    /// This node's certificate (PEM), instead of one issued by the head.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// Seconds of silence after which a node is declared dead (its etcd lease's TTL).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_ttl: u64,
    /// Serve the dashboard on the head (`--include-dashboard false`: do not).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub include_dashboard: bool,
    /// The address the head's dashboard listens on (every request needs the cluster token).
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub dashboard_host: IpAddr,
    /// The head's dashboard port (0: any free port).
    #[arg(long, default_value_t = DEFAULT_DASHBOARD_PORT)]
    pub dashboard_port: u16,
    /// The address this node's Prometheus `/metrics` listener binds (token required).
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub metrics_host: IpAddr,
    /// This node's metrics port (0: any free port; the URL is in `<temp-dir>/metrics_url`).
    #[arg(long, default_value_t = 0)]
    pub metrics_port: u16,
    /// Internal: the pipe on which a daemonized node reports readiness.
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

/// `ray-rs stop`.
#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// The temp dir the node was started with.
    #[arg(long, default_value = DEFAULT_TEMP_DIR)]
    pub temp_dir: PathBuf,
}

/// Output formats of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table.
    Text,
    /// JSON.
    Json,
}

/// `ray-rs status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// A node's HOST:PORT (default: RAY_ADDRESS, else the node started under --temp-dir).
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
    /// The temp dir of a node on this machine (for its address, token and CA).
    #[arg(long, default_value = DEFAULT_TEMP_DIR)]
    pub temp_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

const RESOURCES_FORM: &str = "expected name=amount[,name=amount...] with a non-negative number, e.g. --resources ssd=1,zone_b=0.5";

/// Parses `--resources a=1,b=2`.
pub fn parse_resources(text: &str) -> Result<Resources> {
    let mut out = Resources::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |reason: &str| CliError::BadArg {
            flag: "--resources",
            value: pair.to_string(),
            reason: format!("{reason}; {RESOURCES_FORM}"),
        };
        let (name, amount) = pair.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let name = name.trim();
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
        {
            return Err(bad("bad resource name (letters, digits and _-.:/ only)"));
        }
        if name == "CPU" || name == "GPU" {
            return Err(bad("use --num-cpus / --num-gpus for CPU and GPU"));
        }
        let amount: f64 = amount
            .trim()
            .parse()
            .map_err(|_| bad(&format!("`{}` is not a number", amount.trim())))?;
        if !amount.is_finite() || amount < 0.0 {
            return Err(bad("the amount must be a finite non-negative number"));
        }
        if out.insert(name.to_string(), amount).is_some() {
            return Err(bad("resource given twice"));
        }
    }
    Ok(out)
}

/// Checks a `--num-cpus` / `--num-gpus` amount.
pub fn check_amount(flag: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(CliError::BadArg {
            flag,
            value: v.to_string(),
            reason: "expected a finite non-negative number".into(),
        })
    }
}

/// Resolves `HOST:PORT` to one socket address.
pub fn resolve(flag: &'static str, text: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let bad = |reason: String| CliError::BadArg {
        flag,
        value: text.to_string(),
        reason,
    };
    if !text.contains(':') {
        return Err(bad("expected HOST:PORT, e.g. 10.0.0.1:6380".into()));
    }
    text.to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve it: {e}; expected HOST:PORT")))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources() {
        let r = parse_resources("a=1, b=2.5,zone_b=0").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r["b"], 2.5);
        let e = parse_resources("a=1,b=x").unwrap_err().to_string();
        assert!(e.contains("`b=x`") && e.contains("name=amount"), "{e}");
        assert!(
            parse_resources("a")
                .unwrap_err()
                .to_string()
                .contains("`a`")
        );
        assert!(parse_resources("a=-1").is_err());
        assert!(parse_resources("a=inf").is_err());
        assert!(parse_resources("CPU=1").is_err());
        assert!(parse_resources("a=1,a=2").is_err());
        assert!(parse_resources("").unwrap().is_empty());
    }

    #[test]
    fn cli_shape() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["ray-rs", "start", "--head", "--port", "0"]).unwrap();
        assert!(matches!(c.command, Command::Start(ref s) if s.head && s.port == 0));
        assert!(Cli::try_parse_from(["ray-rs", "start"]).is_err());
        assert!(Cli::try_parse_from(["ray-rs", "start", "--head", "--address", "a:1"]).is_err());
        assert!(Cli::try_parse_from(["ray-rs", "start", "--head", "--tls-cert", "x"]).is_err());
        assert!(resolve("--address", "nohost").is_err());
        assert_eq!(resolve("--address", "127.0.0.1:5").unwrap().port(), 5);
    }
}
