//! A dnsmasq (Debian's `dnsmasq-base`) answering fixed names from a
//! namespace: the LAN's resolver in the names tests, the plain local
//! resolver of the DNS benchmark. Stopped on drop.

use std::{
    net::Ipv4Addr,
    process::{Child, Stdio},
};

use crate::{LabError, NetNs};

/// A running dnsmasq.
pub struct Dnsmasq(Child);

impl Dnsmasq {
    /// Serves, at `listen` (an address of `ns`), the A records `answers`
    /// (name, address); every other name does not exist (NXDOMAIN rather
    /// than REFUSED, after which a client would try its next server).
    pub fn start(
        ns: &NetNs,
        listen: Ipv4Addr,
        answers: &[(&str, Ipv4Addr)],
    ) -> Result<Self, LabError> {
        let mut cmd = ns.command("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--address=/#/",
        ])
        .arg(format!("--listen-address={listen}"));
        for (name, ip) in answers {
            cmd.arg(format!("--address=/{name}/{ip}"));
        }
        cmd.stdout(Stdio::null())
            .spawn()
            .map(Self)
            .map_err(|source| LabError::Spawn {
                cmd: "dnsmasq (apt package dnsmasq-base)".into(),
                source,
            })
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
