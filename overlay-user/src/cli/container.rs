//! `run` and `exec`: the commands that start processes, so they run in the
//! CLI's own process (a daemon could not hand over a terminal).

use std::{
    os::unix::process::CommandExt as _,
    process::{Child, ExitCode, Stdio},
};

use anyhow::{Context as _, bail};

use super::args::RunArgs;
use crate::{
    engine::{ConnectOptions, Engine, Paths},
    host,
    model::rules::{self, DEFAULT_NETWORK},
};

/// The exit code of a process that ended with `status`.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1))
}

/// `run`: a container on its networks, its process started inside; with
/// `-d` the ID is printed, else the CLI waits and exits with the process's
/// code. The container is recorded only if the process started.
pub fn run(paths: &Paths, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let ports = args
        .publish
        .iter()
        .map(|p| rules::parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut engine = Engine::open(paths)?;
    let options = ConnectOptions {
        aliases: args.network_alias.clone(),
        ..ConnectOptions::default()
    };
    let mut networks: Vec<(String, ConnectOptions)> = args
        .network
        .iter()
        .map(|n| (n.clone(), options.clone()))
        .collect();
    if networks.is_empty() && !options.aliases.is_empty() {
        networks.push((DEFAULT_NETWORK.to_owned(), options));
    }
    let started = (|| -> anyhow::Result<(String, Child)> {
        let c = engine.create_container_on(args.name.as_deref(), &networks, &args.command)?;
        if !ports.is_empty() {
            engine.publish_ports(&c.name, &ports)?;
        }
        let mut process = host::process::command_in(&c.netns, &args.command)?;
        if args.detach {
            let logs = paths.log_dir();
            std::fs::create_dir_all(&logs)
                .with_context(|| format!("creating {}", logs.display()))?;
            let log = std::fs::File::create(logs.join(format!("{}.log", c.name)))?;
            process
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0);
        }
        let child = process
            .spawn()
            .with_context(|| format!("starting {:?}", args.command))?;
        engine.set_process(&c.name, host::process::identify(child.id()));
        Ok((c.id, child))
    })();
    let (id, mut child) = match started {
        Ok(started) => started,
        Err(e) => {
            engine.rollback();
            return Err(e);
        }
    };
    if let Err(e) = engine.commit() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.into());
    }
    if args.detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let status = child
        .wait()
        .context("waiting for the container's command")?;
    Ok(exit_code(status))
}

/// `exec`: a command inside a running container; exits with its code.
pub fn exec(paths: &Paths, key: &str, command: &[String]) -> anyhow::Result<ExitCode> {
    let netns = {
        let engine = Engine::open(paths)?;
        let c = engine.container(key)?;
        if c.owned_netns && !engine.is_running(c.process()) {
            bail!("container {} is not running", c.name);
        }
        engine.check_no_conflict(c)?;
        c.netns.clone()
        // The store is released here: the command may run for long.
    };
    let status = host::process::command_in(&netns, command)?
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    Ok(exit_code(status))
}
