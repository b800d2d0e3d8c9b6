//! The `moat` command line: run the daemon, check or plan a config, and talk
//! to a running daemon (status, devices, decisions, events) over its socket.
#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use moat_policy::Config;

/// Exit code for an invalid config (documented in docs/configuration.md).
const EXIT_CONFIG: u8 = 2;
const EXIT_RUNTIME: u8 = 1;
const DEFAULT_CONFIG: &str = "/etc/moat/moat.toml";

#[derive(Parser, Debug)]
#[command(
    name = "moat",
    version,
    about = "Protects a home's IoT devices from the gateway",
    after_help = "Exit codes: 0 done, 1 failed, 2 invalid config or request, 3 daemon not running, 4 permission denied."
)]
struct Cli {
    /// The running daemon's control socket.
    #[arg(long, global = true, env = "MOAT_SOCKET", default_value = moat::cli::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the daemon's JSON answer instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enforce the config on this gateway until SIGTERM.
    Run {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config; print `file:line:col: problem` for each error (exit 2).
    Check {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the nftables ruleset and device table the running daemon
    /// enforces, or (with --config) that a config file compiles to.
    Plan {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    #[command(flatten)]
    Api(moat::cli::ApiCommand),
    /// Print a shell completion script (e.g. `moat completions bash > /etc/bash_completion.d/moat`).
    Completions { shell: clap_complete::Shell },
    /// Take enforcement down on purpose: delete moat's nft tables and the
    /// pinned classifier (which detaches it). Stop the daemon first.
    Stop {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Required: removing protection is never implicit.
        #[arg(long)]
        remove: bool,
    },
    /// Delete everything moat holds about a device: its inventory rows and its
    /// counters, while the daemon is stopped (running: `moat device X forget`).
    Forget {
        /// The device's MAC address.
        mac: String,
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Manufacturer Usage Descriptions (RFC 8520).
    Mud {
        #[command(subcommand)]
        command: MudCommand,
    },
    /// The gateway's MQTT broker for devices.
    Mqtt {
        #[command(subcommand)]
        command: MqttCommand,
    },
}

#[derive(Subcommand, Debug)]
enum MqttCommand {
    /// Make a device's MQTT password (shown once, stored hashed) and print it
    /// with the CA file devices must trust. Refuses to replace an existing
    /// password unless --rotate.
    Credentials {
        /// The device's name (or MAC) from the config.
        device: String,
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Replace the device's current password (the old one stops working).
        #[arg(long)]
        rotate: bool,
        /// Also issue a client certificate (mTLS) into this directory.
        #[arg(long, value_name = "DIR")]
        certificate: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum MudCommand {
    /// Turn a MUD file into a moat policy and device entry (TOML). Anything
    /// that does not translate is listed, on stderr and in the TOML.
    Import {
        /// The MUD JSON file.
        file: PathBuf,
        /// The device's MAC address.
        #[arg(long)]
        device: String,
        /// The device's name (default: the MAC).
        #[arg(long)]
        name: Option<String>,
        /// Write the TOML here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|diags| {
        eprintln!("{diags}");
        eprintln!("{}: {} error(s)", path.display(), diags.0.len());
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = moat::cli::Opts { socket: cli.socket, json: cli.json };
    match cli.command {
        Command::Api(cmd) => moat::cli::run(&cmd, &opts),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "moat", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Plan { config: None } => moat::cli::plan(&opts),
        Command::Check { config } => match load(&config) {
            Ok(cfg) => {
                println!("{}: ok ({} devices, {} policies)", config.display(), cfg.devices.len(), cfg.policies.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Plan { config: Some(config) } => match load(&config) {
            Ok(cfg) => {
                print!("{}", moat::plan::render(&cfg));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Mud { command: MudCommand::Import { file, device, name, output } } => {
            mud_import(&file, &device, name.as_deref(), output.as_deref())
        }
        Command::Mqtt { command: MqttCommand::Credentials { device, config, rotate, certificate } } => {
            match load(&config) {
                Ok(cfg) => mqtt_credentials(&cfg, &device, rotate, certificate.as_deref()),
                Err(code) => code,
            }
        }
        Command::Stop { config, remove } => {
            if !remove {
                eprintln!("moat stop only takes enforcement down, and only with --remove (stop the daemon with systemctl or SIGTERM)");
                return ExitCode::from(EXIT_CONFIG);
            }
            match load(&config) {
                Ok(cfg) => {
                    moat::logging::init(&cfg.log);
                    moat::run::remove_enforcement(std::path::Path::new(&cfg.gateway.pin_dir));
                    println!("removed moat's nft tables and pinned classifier ({})", cfg.gateway.pin_dir);
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::Forget { mac, config } => match load(&config) {
            Ok(cfg) => forget(&cfg, &mac),
            Err(code) => code,
        },
        Command::Run { config } => {
            let cfg = match load(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            moat::logging::init(&cfg.log);
            run(cfg, config)
        }
    }
}

fn run(cfg: Config, path: PathBuf) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "starting the runtime");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match rt.block_on(moat::run::run(cfg, path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = e.to_string();
            tracing::error!(error = %text, "moat stopped");
            // EPERM from bpf(2), tc or nft: say which privileges, not just "not permitted".
            if text.contains("Operation not permitted") {
                tracing::error!(
                    "moat lacks a privilege: it needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON \
                     (docs/capabilities.md); run it from systemd/moat.service or as root"
                );
            }
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn mud_import(file: &std::path::Path, device: &str, name: Option<&str>, output: Option<&std::path::Path>) -> ExitCode {
    let mac: moat_policy::MacAddr = match device.parse() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("--device {device:?}: bad MAC address: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let json = match std::fs::read_to_string(file) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let name = name.map_or_else(|| mac.to_string(), str::to_string);
    let imported = match moat_policy::mud::import(&json, mac, &name) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for u in &imported.unsupported {
        eprintln!("warning: not translated: {u}");
    }
    match output {
        Some(path) => match std::fs::write(path, &imported.toml) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ExitCode::from(EXIT_RUNTIME)
            }
        },
        None => {
            print!("{}", imported.toml);
            ExitCode::SUCCESS
        }
    }
}

fn mqtt_credentials(cfg: &Config, device: &str, rotate: bool, cert_dir: Option<&std::path::Path>) -> ExitCode {
    match moat::mqtt::cli::credentials(cfg, device, rotate, cert_dir) {
        Ok(i) => {
            println!("device:   {}", i.device);
            println!("username: {}", i.device);
            println!("password: {}", i.password);
            println!("ca:       {}", i.ca.display());
            if let Some((c, k)) = &i.cert_files {
                println!("cert:     {}\nkey:      {}", c.display(), k.display());
            }
            eprintln!("The password is shown only now; moat keeps a hash of it.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("moat mqtt credentials: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn forget(cfg: &Config, mac: &str) -> ExitCode {
    let mac: moat_policy::MacAddr = match mac.parse() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{mac:?}: bad MAC address: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let db = moat::run::inventory_path(std::path::Path::new(&cfg.gateway.state_dir));
    let rows = match moat::inventory::Inventory::open(&db).and_then(|mut inv| inv.forget(&mac.to_string())) {
        Ok(known) => known,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let state_dir = std::path::Path::new(&cfg.gateway.state_dir);
    match moat::decisions::Decisions::open(state_dir) {
        Ok(mut decisions) => {
            if decisions.by_mac.remove(&mac).is_some() {
                match decisions.save() {
                    Ok(()) => println!("{mac}: decision removed"),
                    Err(e) => eprintln!("{mac}: removing its decision failed: {e}"),
                }
            }
        }
        Err(e) => eprintln!("{mac}: decisions not read: {e}"),
    }
    if let Some(d) = cfg.devices.iter().find(|d| d.mac == mac) {
        match moat::mqtt::cli::revoke(cfg, &d.name) {
            Ok(true) => println!("{mac}: MQTT password removed"),
            Ok(false) => {}
            Err(e) => eprintln!("{mac}: removing its MQTT password failed: {e}"),
        }
    }
    let counters = match cfg.devices.iter().find(|d| d.mac == mac) {
        Some(d) => moat::forget::zero_pinned_counters(std::path::Path::new(&cfg.gateway.pin_dir), d.id),
        None => Ok(false),
    };
    match counters {
        Ok(zeroed) => {
            println!(
                "{mac}: inventory {}, counters {}",
                if rows { "deleted" } else { "had nothing" },
                if zeroed { "zeroed" } else { "not pinned" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{mac}: inventory deleted, but zeroing its counters failed: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
