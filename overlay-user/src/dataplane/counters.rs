//! Reading what the dataplane did and holds: counters (per CPU, summed),
//! per-program run statistics, every programmed entry, map memory.

use std::fs;

use overlay_common::{CONFIG_FLAG_READY, Counter, CounterValue, DropReason, maps::names, programs};

use super::{Counters, Dataplane, DataplaneError, State};

impl Dataplane {
    /// Snapshot of every programmed entry.
    pub fn state(&self) -> Result<State, DataplaneError> {
        let err = DataplaneError::map;
        let config = self.config.get(&0, 0).map_err(err("reading config"))?;
        let mut state = State {
            config: (config.flags & CONFIG_FLAG_READY != 0).then_some(config),
            networks: self
                .networks
                .iter()
                .collect::<Result<_, _>>()
                .map_err(err("listing networks"))?,
            subnets: self
                .subnets
                .iter()
                .map(|r| r.map(|(k, v)| ((k.prefix_len(), k.data()), v)))
                .collect::<Result<_, _>>()
                .map_err(err("listing subnets"))?,
            endpoints: self
                .endpoints
                .iter()
                .collect::<Result<_, _>>()
                .map_err(err("listing endpoints"))?,
            routes: self
                .routes
                .iter()
                .collect::<Result<_, _>>()
                .map_err(err("listing routes"))?,
            peers: self
                .peers
                .keys()
                .collect::<Result<_, _>>()
                .map_err(err("listing peers"))?,
            guards: self
                .guards
                .keys()
                .collect::<Result<_, _>>()
                .map_err(err("listing guarded destinations"))?,
        };
        state.guards.sort_unstable();
        state.networks.sort_by_key(|(k, _)| *k);
        state.subnets.sort_unstable();
        state.endpoints.sort_by_key(|(k, _)| *k);
        state
            .routes
            .sort_by_key(|(k, _)| (k.vni, u32::from_be(k.ip)));
        state.peers.sort_by_key(|k| (k.vni, u32::from_be(k.ip)));
        Ok(state)
    }

    /// Kernel memory of each pinned map (`memlock` in the map fd's fdinfo).
    pub fn map_memory(&self) -> Result<Vec<(&'static str, u64)>, DataplaneError> {
        names::ALL
            .iter()
            .map(|name| {
                let pin = self.pin_dir.join("maps").join(name);
                let info = aya::maps::MapInfo::from_pin(&pin)
                    .map_err(DataplaneError::map(format!("opening pinned map {name}")))?;
                let fd = info
                    .fd()
                    .map_err(DataplaneError::map(format!("map {name} fd")))?;
                let raw = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&fd));
                let fdinfo = format!("/proc/self/fdinfo/{raw}");
                let text = fs::read_to_string(&fdinfo).map_err(|source| DataplaneError::Io {
                    op: "read",
                    path: fdinfo.into(),
                    source,
                })?;
                let bytes = text
                    .lines()
                    .find_map(|l| l.strip_prefix("memlock:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                Ok((*name, bytes))
            })
            .collect()
    }

    // ---- counters ----------------------------------------------------------

    /// (program, runs, time spent) of every dataplane program attached
    /// under this pin directory, as the kernel counts them while run-time
    /// statistics are enabled (`aya::sys::enable_stats`). Read through the
    /// pinned links: the attached programs were loaded by whichever command
    /// attached them, not necessarily by this instance.
    pub fn program_run_stats(
        &self,
    ) -> Result<Vec<(&'static str, u64, std::time::Duration)>, DataplaneError> {
        let names = [
            programs::ENDPOINT_INGRESS,
            programs::UNDERLAY_XDP,
            programs::UNDERLAY_TC,
        ];
        let mut ids = std::collections::BTreeSet::new();
        for link in self.links() {
            let pin = self.pin_dir.join("links").join(&link);
            let info = aya::programs::links::FdLink::from(
                aya::programs::links::PinnedLink::from_pin(&pin).map_err(|source| {
                    DataplaneError::Link {
                        op: format!("opening {}", pin.display()),
                        source,
                    }
                })?,
            )
            .info()
            .map_err(|source| DataplaneError::Link {
                op: format!("reading {}", pin.display()),
                source,
            })?;
            ids.insert(info.program_id());
        }
        let mut totals: Vec<(&'static str, u64, std::time::Duration)> = names
            .iter()
            .map(|n| (*n, 0, std::time::Duration::ZERO))
            .collect();
        for prog in aya::programs::loaded_programs().flatten() {
            if !ids.contains(&prog.id()) {
                continue;
            }
            // The kernel keeps 15 bytes of a program's name.
            let name = prog.name_as_str().unwrap_or_default();
            if let Some(t) = totals
                .iter_mut()
                .find(|(n, _, _)| !name.is_empty() && n.starts_with(name))
            {
                t.1 += prog.run_count();
                t.2 += prog.run_time();
            }
        }
        Ok(totals)
    }

    /// Totals of network `vni` over all CPUs.
    pub fn network_counters(&self, vni: u32) -> Result<Counters, DataplaneError> {
        let slot = self.counter_slot(vni)?;
        if slot == 0 {
            return Err(DataplaneError::NoNetworkCounters(vni));
        }
        let per_cpu = self
            .net_counters
            .get(&slot, 0)
            .map_err(DataplaneError::map("reading network counters"))?;
        let total = |slot: u32| {
            per_cpu
                .iter()
                .filter_map(|c| c.slots.get(slot as usize))
                .fold(CounterValue::default(), |acc, v| CounterValue {
                    packets: acc.packets + v.packets,
                    bytes: acc.bytes + v.bytes,
                })
        };
        let mut out = Counters::default();
        for c in Counter::ALL {
            out.outcomes.insert(c.name(), total(c.index()));
        }
        for r in DropReason::ALL {
            out.drops.insert(r.name(), total(r.index()));
        }
        Ok(out)
    }

    /// Counter totals of the whole host, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, DataplaneError> {
        let read = |slot: u32| -> Result<CounterValue, DataplaneError> {
            let per_cpu = self
                .counters
                .get(&slot, 0)
                .map_err(DataplaneError::map("reading counters"))?;
            Ok(per_cpu
                .iter()
                .fold(CounterValue::default(), |acc, v| CounterValue {
                    packets: acc.packets + v.packets,
                    bytes: acc.bytes + v.bytes,
                }))
        };
        let mut out = Counters::default();
        for c in Counter::ALL {
            out.outcomes.insert(c.name(), read(c.index())?);
        }
        for r in DropReason::ALL {
            out.drops.insert(r.name(), read(r.index())?);
        }
        Ok(out)
    }
}
