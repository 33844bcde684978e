//! Containers: a named network namespace (ours, or one adopted by its
//! `ip netns` name or its process's PID), maybe running a process.

use std::net::Ipv4Addr;

use super::{ConnectOptions, Engine, EngineError, undo::Undo};
use crate::model::{
    ContainerRecord, ProcessRef, ids,
    rules::{self, DEFAULT_NETWORK},
};

/// A Docker container's sandbox is Docker's to change.
pub(super) fn refuse_docker(c: &ContainerRecord) -> Result<(), EngineError> {
    if c.docker {
        return Err(EngineError::DockerOwned(c.name.clone()));
    }
    Ok(())
}

impl Engine {
    /// `run` without the process: a new namespace on `networks`, each at
    /// the address given with it or the next free one.
    pub fn create_container(
        &mut self,
        name: Option<&str>,
        networks: &[(String, Option<Ipv4Addr>)],
        command: &[String],
    ) -> Result<ContainerRecord, EngineError> {
        let networks: Vec<(String, ConnectOptions)> = networks
            .iter()
            .map(|(n, ip)| (n.clone(), ConnectOptions::at(*ip)))
            .collect();
        self.create_container_on(name, &networks, command)
    }

    /// [`Self::create_container`] with every option of `network connect`
    /// per network (`run --network-alias`).
    pub fn create_container_on(
        &mut self,
        name: Option<&str>,
        networks: &[(String, ConnectOptions)],
        command: &[String],
    ) -> Result<ContainerRecord, EngineError> {
        let id = ids::new_id();
        let name = name.map_or_else(|| format!("c{}", &id[..12]), str::to_owned);
        rules::check_name(&name)?;
        if self.state.containers.contains_key(&name) {
            return Err(EngineError::DuplicateContainer(name));
        }
        if self.host.netns_exists(&name) {
            if !self.state.pending_netns.contains(&name) {
                return Err(EngineError::DuplicateContainer(name));
            }
            // Left by a `run` that crashed half-way: ours, and garbage.
            self.host.delete_netns(&name)?;
        }
        let networks = if networks.is_empty() {
            vec![(DEFAULT_NETWORK.to_owned(), ConnectOptions::default())]
        } else {
            networks.to_vec()
        };
        for (n, _) in &networks {
            self.network(n)?;
        }
        self.mark_pending_netns(&name)?;
        self.host.create_netns(&name)?;
        self.undo.push(Undo::Netns(name.clone()));
        self.state.containers.insert(
            name.clone(),
            ContainerRecord {
                id,
                name: name.clone(),
                netns: name.clone(),
                owned_netns: true,
                attached_netns: false,
                command: command.to_vec(),
                pid: None,
                pid_start: None,
                created: ids::now_rfc3339(),
                endpoints: Vec::new(),
                docker: false,
            },
        );
        for (n, options) in networks {
            self.connect(&n, &name, options)?;
        }
        self.state.pending_netns.remove(&name);
        Ok(self.state.containers[&name].clone())
    }

    /// A known container, or a namespace adopted as one: an `ip netns`
    /// name, or a PID whose namespace is then named `pid<PID>`.
    pub(super) fn container_or_adopt(&mut self, key: &str) -> Result<String, EngineError> {
        if let Ok(c) = self.container(key) {
            return Ok(c.name.clone());
        }
        let mut attached = false;
        let netns = if rules::check_name(key).is_ok() && self.host.netns_exists(key) {
            key.to_owned()
        } else if let Ok(pid) = key.parse::<u32>()
            && self.host.pid_has_netns(pid)
        {
            let name = format!("pid{pid}");
            if !self.host.netns_exists(&name) {
                self.host.attach_netns(&name, pid)?;
                self.undo.push(Undo::Netns(name.clone()));
                attached = true;
            }
            name
        } else {
            return Err(EngineError::NoSuchContainer(key.to_owned()));
        };
        self.state.containers.insert(
            netns.clone(),
            ContainerRecord {
                id: ids::new_id(),
                name: netns.clone(),
                netns: netns.clone(),
                owned_netns: false,
                attached_netns: attached,
                command: Vec::new(),
                pid: None,
                pid_start: None,
                created: ids::now_rfc3339(),
                endpoints: Vec::new(),
                docker: false,
            },
        );
        Ok(netns)
    }

    /// Records the container's main process.
    pub fn set_process(&mut self, name: &str, process: Option<ProcessRef>) {
        if let Some(c) = self.state.containers.get_mut(name) {
            c.pid = process.map(|p| p.pid);
            c.pid_start = process.map(|p| p.start);
        }
    }

    /// `stop`: ends the container's process; returns its name.
    pub fn stop_container(&mut self, key: &str) -> Result<String, EngineError> {
        let c = self.container(key)?.clone();
        refuse_docker(&c)?;
        self.host.stop(c.process());
        self.set_process(&c.name, None);
        Ok(c.name)
    }

    /// `rm`: removes interfaces, addresses and the namespace it created,
    /// and (with `force`) stops its process. What cannot be undone (veths,
    /// the namespace, the process) goes last.
    pub fn remove_container(&mut self, key: &str, force: bool) -> Result<String, EngineError> {
        let c = self.container(key)?.clone();
        refuse_docker(&c)?;
        let running = self.host.is_running(c.process());
        if running && !force {
            return Err(EngineError::Running(c.name));
        }
        for ep in &c.endpoints {
            self.release_claim(&c.name, ep)?;
            self.unprogram_endpoint(ep)?;
        }
        for ep in &c.endpoints {
            self.host.delete_link(&ep.host_ifname)?;
        }
        if c.owned_netns || c.attached_netns {
            // For an adopted PID this only detaches the name.
            self.host.delete_netns(&c.netns)?;
        }
        if running {
            self.host.stop(c.process());
        }
        self.state.containers.remove(&c.name);
        Ok(c.name)
    }

    /// `rename`: the container answers to `new` from now on, in `ps` and
    /// in every network's names (other hosts' too, through its claims).
    /// Its namespace keeps its `ip netns` name.
    pub fn rename_container(&mut self, key: &str, new: &str) -> Result<(), EngineError> {
        let c = self.container(key)?.clone();
        refuse_docker(&c)?;
        rules::check_name(new)?;
        if c.name == new {
            return Err(EngineError::Invalid(format!(
                "container {new} already has that name"
            )));
        }
        if self.state.containers.contains_key(new) {
            return Err(EngineError::DuplicateContainer(new.to_owned()));
        }
        for ep in &c.endpoints {
            self.rename_claim(&c.name, new, ep)?;
        }
        let mut renamed = self.state.containers.remove(&c.name).expect("found above");
        renamed.name = new.to_owned();
        self.state.containers.insert(new.to_owned(), renamed);
        Ok(())
    }
}
