//! `overlay`: the command line. It parses the arguments ([`args`]), turns
//! a command into an API request, sends it to the daemon when one answers
//! on the socket or runs it here otherwise (the same handler, the same
//! transaction), and prints the response (`output.rs`). `run` and `exec`
//! start processes and always run here (`container.rs`).

pub mod args;
mod container;
mod monitor;
mod output;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, bail};
use clap::Parser as _;

use self::{
    args::{Cli, Command, EndpointCmd, Format, HostCmd, NetworkCmd, PeerCmd, TraceProtoArg},
    output::Display,
};
use crate::{
    api::{self, Request, Target},
    daemon,
    dataplane::Dataplane,
    engine::{Paths, TraceProto, transaction},
    host,
    model::{RuleError, rules},
};

/// Runs the command line; the exit code to end with.
pub fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("overlay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn paths(cli: &Cli) -> (Paths, PathBuf) {
    match &cli.root {
        Some(root) => (Paths::under(root), root.join("overlay.sock")),
        None => (
            Paths {
                state_dir: cli.state_dir.clone(),
                pin_dir: cli.pin_dir.clone(),
            },
            cli.socket.clone(),
        ),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must run as root (loads eBPF programs and changes network namespaces)");
    }
    if let Some(ns) = &cli.netns {
        // Still one thread: the whole process moves.
        host::netns::enter(ns)?;
    }
    let (paths, socket) = paths(&cli);
    let (command, display) = match cli.command {
        Command::Destroy => {
            Dataplane::destroy(&paths.pin_dir)
                .with_context(|| format!("removing {}", paths.pin_dir.display()))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Run(args) => return container::run(&paths, &args),
        Command::Exec { container, command } => {
            return container::exec(&paths, &container, &command);
        }
        Command::Monitor(args) => return monitor::run(&paths, &socket, &args),
        Command::Daemon(args) => {
            let options = daemon::Options {
                once: args.once,
                config: args.config.clone(),
                default_config: cli.root.is_none(),
                flags: args.settings(),
            };
            daemon::run(&paths, &socket, options)?;
            return Ok(ExitCode::SUCCESS);
        }
        other => request(other)?,
    };
    match call(&paths, &socket, command)? {
        Ok(response) => {
            if let Some(warning) = output::warning(&response) {
                eprintln!("overlay: warning: {warning}");
            }
            let text = output::render(&response, display)?;
            if !text.is_empty() {
                println!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!("overlay: {message}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Runs `command` through the daemon when one manages this state, else
/// here.
fn call(
    paths: &Paths,
    socket: &std::path::Path,
    command: api::Command,
) -> anyhow::Result<api::Reply> {
    let request = Request {
        target: Target {
            paths: paths.clone(),
            netns: host::netns::current_id()?,
        },
        command: command.clone(),
    };
    Ok(match daemon_reply(paths, socket, &request)? {
        Some(reply) => reply,
        None => transaction(paths, |engine| api::handler::execute(engine, command))
            .map_err(|e| api::error_chain(&e)),
    })
}

/// How long a command waits for a starting daemon to answer.
const DAEMON_STARTUP: std::time::Duration = std::time::Duration::from_secs(15);

/// The reply of the daemon that manages this state, if one runs: the one
/// at `socket`, or the one the state directory's lock names (whatever
/// socket it serves). A daemon that holds the state but does not answer
/// is an error: running the command here would race it.
fn daemon_reply(
    paths: &Paths,
    socket: &std::path::Path,
    request: &Request,
) -> anyhow::Result<Option<api::Reply>> {
    if let Some(reply) = api::client::call(socket, request)? {
        return Ok(Some(reply));
    }
    let Some(holder) = daemon::lock::holder(&paths.state_dir)? else {
        return Ok(None);
    };
    let Some(its_socket) = &holder.socket else {
        // `daemon --once`: one pass under the store's lock, which this
        // command waits for.
        return Ok(None);
    };
    // A daemon takes the lock before it binds its socket (it may first
    // reach the cluster store): give it that long.
    let deadline = std::time::Instant::now() + DAEMON_STARTUP;
    loop {
        if let Some(reply) = api::client::call(its_socket, request)? {
            return Ok(Some(reply));
        }
        if std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bail!(
        "a daemon ({holder}) manages {} but does not answer; not running this command beside it",
        paths.state_dir.display()
    )
}

/// The API command for a CLI command, with how to show its answer.
/// Argument-level rules (labels, options) are checked here, before
/// anything is sent.
fn request(command: Command) -> Result<(api::Command, Display), RuleError> {
    let plain = Display::default();
    Ok(match command {
        Command::Network(cmd) => network(cmd)?,
        Command::Ps { all, format } => (
            api::Command::Ps { all },
            Display {
                json: format == Format::Json,
                ..plain
            },
        ),
        Command::Stop { containers } => (api::Command::Stop { containers }, plain),
        Command::Rm { force, containers } => (api::Command::Rm { containers, force }, plain),
        Command::Rename { container, name } => (api::Command::Rename { container, name }, plain),
        Command::Attach {
            iface,
            underlay_ip,
            decap,
        } => (
            api::Command::Attach {
                iface,
                underlay_ip,
                decap: decap.into(),
            },
            plain,
        ),
        Command::Detach => (api::Command::Detach, plain),
        Command::Status => (api::Command::Status, plain),
        Command::Stats { network } => (api::Command::Stats { network }, plain),
        Command::Trace {
            from,
            to,
            proto,
            port,
            format,
        } => {
            let (proto, default_port) = match proto {
                TraceProtoArg::Icmp => (TraceProto::Icmp, 0),
                TraceProtoArg::Tcp => (TraceProto::Tcp, 80),
                TraceProtoArg::Udp => (TraceProto::Udp, 53),
            };
            if proto == TraceProto::Icmp && port.is_some() {
                return Err(RuleError::PortWithoutTransport);
            }
            (
                api::Command::Trace {
                    from,
                    to,
                    proto,
                    port: port.unwrap_or(default_port),
                },
                Display {
                    json: format == Format::Json,
                    ..plain
                },
            )
        }
        Command::Peer(PeerCmd::Add { remote, network }) => {
            (api::Command::PeerAdd { remote, network }, plain)
        }
        Command::Peer(PeerCmd::Rm { remote, network }) => {
            (api::Command::PeerRm { remote, network }, plain)
        }
        Command::Peer(PeerCmd::Ls) => (api::Command::PeerLs, plain),
        Command::Host(HostCmd::Ls) => (api::Command::HostLs, plain),
        Command::Host(HostCmd::Rm { hosts }) => (api::Command::HostRm { hosts }, plain),
        Command::Endpoint(EndpointCmd::Add {
            remote,
            network,
            ip,
            mac,
        }) => (
            api::Command::EndpointAdd {
                remote,
                network,
                ip,
                mac,
            },
            plain,
        ),
        Command::Endpoint(EndpointCmd::Rm { network, ip }) => {
            (api::Command::EndpointRm { network, ip }, plain)
        }
        Command::Run(_)
        | Command::Exec { .. }
        | Command::Monitor(_)
        | Command::Daemon(_)
        | Command::Destroy => {
            unreachable!("handled before a request is built")
        }
    })
}

fn network(cmd: NetworkCmd) -> Result<(api::Command, Display), RuleError> {
    let plain = Display::default();
    Ok(match cmd {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            vni,
            internal,
            opts,
            label,
            name,
        } => (
            api::Command::NetworkCreate(crate::engine::CreateNetwork {
                mtu: rules::parse_driver_options(&opts)?,
                labels: rules::parse_labels(&label)?,
                name,
                driver: driver.map(Into::into),
                subnets: subnet,
                gateway,
                ip_range,
                vni,
                internal,
                id: None,
                docker: false,
            }),
            plain,
        ),
        NetworkCmd::Ls {
            quiet,
            filter,
            format,
        } => (
            api::Command::NetworkLs {
                filters: filter
                    .iter()
                    .map(|f| {
                        f.split_once('=')
                            .map_or((f.clone(), String::new()), |(k, v)| (k.into(), v.into()))
                    })
                    .collect(),
            },
            Display {
                quiet,
                json: format == Format::Json,
            },
        ),
        NetworkCmd::Inspect { networks } => (api::Command::NetworkInspect { networks }, plain),
        NetworkCmd::Rm { networks } => (api::Command::NetworkRm { networks }, plain),
        NetworkCmd::Prune { force: _ } => (api::Command::NetworkPrune, plain),
        NetworkCmd::Connect {
            ip,
            gw_priority,
            alias,
            network,
            container,
        } => (
            api::Command::NetworkConnect {
                network,
                container,
                ip,
                gw_priority,
                aliases: alias,
            },
            plain,
        ),
        NetworkCmd::Disconnect { network, container } => (
            api::Command::NetworkDisconnect { network, container },
            plain,
        ),
    })
}
