//! Packet rate between two containers that are not a lab's (Docker's, in
//! [`crate::docker`]): the same generator and sink, one measurement at a
//! time, so the caller alternates paths round by round.

use std::net::Ipv4Addr;

use overlay_testkit::NetNs;

use super::{
    RateOptions,
    generator::{Generator, udp_frame},
    search::{
        Injection, iteration_ns, measure, no_drop_rate, set_rps_masks, split_cpus, steer_devices,
    },
};
use crate::{BenchError, traffic::Ends};

/// Two containers and where the client's frames land first.
pub(crate) struct Pair<'a> {
    pub ends: Ends<'a>,
    pub client_ip: Ipv4Addr,
    /// The host end of the client's veth (in the host's namespace): GRO on
    /// for the generator's XDP_TX frames, and RPS steering in the search.
    pub first_receiver: (&'a NetNs, String),
}

impl Pair<'_> {
    fn injection(&self, size: usize) -> Result<Injection<'_>, BenchError> {
        let client_mac = self.ends.client.mac("eth0")?;
        let server_mac = self.ends.server.mac("eth0")?;
        Ok(Injection {
            ns: self.ends.client,
            frame: udp_frame(
                size,
                server_mac.0,
                client_mac.0,
                self.client_ip,
                self.ends.server_ip,
            ),
        })
    }

    fn receivers(&self) -> [(&NetNs, &str); 1] {
        [(self.first_receiver.0, self.first_receiver.1.as_str())]
    }
}

/// The generator; a sink sits in the server only while its pair is
/// measured (it drops everything, TCP included).
pub(crate) struct PairMeter {
    generator: Generator,
    iteration_ns: Option<f64>,
}

impl PairMeter {
    pub(crate) fn new(flows: u32, pairs: &[Pair<'_>]) -> Result<Self, BenchError> {
        let generator = Generator::new(flows)?;
        for p in pairs {
            let (ns, ifname) = &p.first_receiver;
            ns.run(|| overlay_user::host::ethtool::enable_gro(ifname))??;
        }
        Ok(Self {
            generator,
            iteration_ns: None,
        })
    }

    /// Flat out: (Mpps delivered, share delivered, CPU ns per packet).
    pub(crate) fn rate(
        &mut self,
        pair: &Pair<'_>,
        size: usize,
        frames: u32,
    ) -> Result<(f64, f64, f64), BenchError> {
        let sink = self.generator.attach_sink(pair.ends.server)?;
        let measured = measure(&mut self.generator, &pair.injection(size)?, frames, None);
        self.generator.detach_sink(sink)?;
        measured
    }

    /// The no-drop rate (Mpps, loss, generator-bound), or `None` on a
    /// machine without a CPU for the generator and one for the path.
    pub(crate) fn no_drop(
        &mut self,
        pair: &Pair<'_>,
        size: usize,
        opts: &RateOptions,
    ) -> Result<Option<(f64, f64, bool)>, BenchError> {
        if opts.search_steps == 0 || !split_cpus() {
            return Ok(None);
        }
        let inj = pair.injection(size)?;
        let per_iteration = match self.iteration_ns {
            Some(ns) => ns,
            None => *self
                .iteration_ns
                .insert(iteration_ns(&mut self.generator, &inj)?),
        };
        let sink = self.generator.attach_sink(pair.ends.server)?;
        let masks = steer_devices(&pair.receivers())?;
        let found = no_drop_rate(&mut self.generator, &inj, opts, per_iteration);
        set_rps_masks(&pair.receivers(), &masks)?;
        self.generator.detach_sink(sink)?;
        found.map(Some)
    }
}
