//! The typed, validating front of the kernel programs and maps: load and
//! pin ([`Dataplane::load`]), attach (`attach.rs`), and one module per map
//! family (`networks.rs`, `endpoints.rs` with routes and peers, `underlay.rs`
//! with the next-hop cache, `counters.rs`). Every entry is checked against
//! [`crate::model::rules`] before a map is touched.

mod attach;
pub mod bpffs;
mod counters;
mod dns_names;
mod endpoints;
mod error;
pub mod events;
pub mod features;
mod guards;
mod networks;
mod slots;
mod trace;
mod types;
mod underlay;

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader, include_bytes_aligned,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray},
    programs::{SchedClassifier, Xdp},
};
use overlay_common::{
    Config, CounterValue, EndpointInfo, GuardKey, GuardValue, NetworkInfo, NextHop, PathMtu,
    PeerKey, PeerValue, RouteKey, RouteValue, maps::names, programs,
};

pub use self::{
    error::DataplaneError,
    guards::Guard,
    trace::ProgRun,
    types::{Counters, LocalEndpoint, Network, RemoteEndpoint, RouteTarget, State, Underlay},
};

/// The eBPF object built by `build.rs` (aya-build) for this binary.
pub static EBPF_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/overlay"));

/// Loaded programs plus typed handles on every (pinned) map.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    endpoints: HashMap<MapData, u32, EndpointInfo>,
    ep_slots: slots::SlotTable<overlay_common::EndpointSlot>,
    /// Kept with `routes` and `peers` by [`slots`].
    route_slots: slots::SlotTable<overlay_common::RouteSlot>,
    peer_slots: slots::SlotTable<overlay_common::PeerSlot>,
    routes: HashMap<MapData, RouteKey, RouteValue>,
    peers: HashMap<MapData, PeerKey, PeerValue>,
    networks: HashMap<MapData, u32, NetworkInfo>,
    subnets: LpmTrie<MapData, u32, u32>,
    config: Array<MapData, Config>,
    counters: PerCpuArray<MapData, CounterValue>,
    net_counters: PerCpuArray<MapData, overlay_common::NetCounters>,
    nexthops: PerCpuArray<MapData, NextHop>,
    hosts: HashMap<MapData, u32, overlay_common::HostSlot>,
    host_gens: Array<MapData, u32>,
    path_mtus: HashMap<MapData, u32, PathMtu>,
    guards: HashMap<MapData, GuardKey, GuardValue>,
    names: HashMap<MapData, overlay_common::NameKey, overlay_common::NameValue>,
    monitor: PerCpuArray<MapData, overlay_common::MonitorState>,
    monitor_on: Array<MapData, u32>,
}

/// Maps made anew when a pin's layout (value size, flags) is from another
/// build, rather than failing the load as a changed state map must: caches
/// the programs fill on their own, and the slot arrays, which are filled
/// again from their hash maps ([`Dataplane::fill_slots`]).
const REBUILDABLE: [(&str, usize, u32); 5] = [
    (names::NEXTHOPS, std::mem::size_of::<NextHop>(), 0),
    (names::PATH_MTUS, std::mem::size_of::<PathMtu>(), 0),
    (
        names::ENDPOINT_SLOTS,
        std::mem::size_of::<overlay_common::EndpointSlot>(),
        BPF_F_MMAPABLE,
    ),
    (
        names::ROUTE_SLOTS,
        std::mem::size_of::<overlay_common::RouteSlot>(),
        BPF_F_MMAPABLE,
    ),
    (
        names::PEER_SLOTS,
        std::mem::size_of::<overlay_common::PeerSlot>(),
        BPF_F_MMAPABLE,
    ),
];

/// `BPF_F_MMAPABLE` (uapi/linux/bpf.h): the slot arrays are mapped into
/// this process.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Unpins rebuildable maps under `map_dir` whose layout differs from this
/// build's.
fn drop_stale_layouts(map_dir: &Path) -> Result<(), DataplaneError> {
    for (name, value_size, flags) in REBUILDABLE {
        let path = map_dir.join(name);
        let Ok(info) = aya::maps::MapInfo::from_pin(&path) else {
            continue;
        };
        if info.value_size() as usize != value_size || info.map_flags() != flags {
            fs::remove_file(&path).map_err(|source| DataplaneError::Io {
                op: "remove",
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// A lookup or delete of an absent key: aya reports lookups as
/// `KeyNotFound` and deletes as the syscall's ENOENT.
fn not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DataplaneError> {
    ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name))
}

/// Slot array `name` (of `len` slots), mapped into this process.
fn slot_table<S: slots::Slot>(
    ebpf: &mut Ebpf,
    map_dir: &Path,
    name: &'static str,
    len: u32,
) -> Result<slots::SlotTable<S>, DataplaneError> {
    let aya::maps::Map::Array(data) = take_map(ebpf, name)? else {
        return Err(DataplaneError::MissingMap(name));
    };
    slots::SlotTable::new(data, len).map_err(|source| DataplaneError::Io {
        op: "mapping",
        path: map_dir.join(name),
        source,
    })
}

fn v4(ip: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(ip))
}

fn be(ip: Ipv4Addr) -> u32 {
    u32::from(ip).to_be()
}

impl Dataplane {
    /// Loads the programs and opens the maps pinned under `pin_dir`
    /// (creating them on first use). Pinned state from an earlier load is
    /// reused, so this also reopens a running dataplane.
    pub fn load(pin_dir: impl AsRef<Path>) -> Result<Self, DataplaneError> {
        features::check_kernel()?;
        let pin_dir = pin_dir.as_ref().to_path_buf();
        let map_dir = pin_dir.join("maps");
        bpffs::ensure_dir(&pin_dir)?;
        bpffs::ensure_dir(&map_dir)?;
        fs::create_dir_all(pin_dir.join("links")).map_err(|source| DataplaneError::Io {
            op: "create",
            path: pin_dir.join("links"),
            source,
        })?;
        drop_stale_layouts(&map_dir)?;
        // Slot maps made by this load next to hash maps pinned before them
        // (an upgrade) are filled from the hash maps once.
        let new_slots = [names::ENDPOINT_SLOTS, names::ROUTE_SLOTS, names::PEER_SLOTS]
            .iter()
            .any(|name| !map_dir.join(name).exists());
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&map_dir)
            .load(EBPF_OBJECT)
            .map_err(|e| match e {
                EbpfError::MapError(aya::maps::MapError::IncompatiblePinnedMap { .. }) => {
                    DataplaneError::IncompatiblePins {
                        dir: map_dir.clone(),
                        source: Box::new(e),
                    }
                }
                e => DataplaneError::Load(e),
            })?;
        for name in [programs::ENDPOINT_INGRESS, programs::UNDERLAY_TC] {
            let prog: &mut SchedClassifier = program(&mut ebpf, name)?;
            prog.load().map_err(|source| DataplaneError::Program {
                op: "loading",
                name,
                source,
            })?;
        }
        let xdp: &mut Xdp = program(&mut ebpf, programs::UNDERLAY_XDP)?;
        xdp.load().map_err(|source| DataplaneError::Program {
            op: "loading",
            name: programs::UNDERLAY_XDP,
            source,
        })?;

        let conv = |name: &'static str| {
            move |source| DataplaneError::Map {
                op: format!("opening map {name}"),
                source,
            }
        };
        let endpoints = HashMap::try_from(take_map(&mut ebpf, names::ENDPOINTS)?)
            .map_err(conv(names::ENDPOINTS))?;
        let ep_slots = slot_table(
            &mut ebpf,
            &map_dir,
            names::ENDPOINT_SLOTS,
            overlay_common::capacity::ENDPOINT_SLOTS,
        )?;
        let routes =
            HashMap::try_from(take_map(&mut ebpf, names::ROUTES)?).map_err(conv(names::ROUTES))?;
        let peers =
            HashMap::try_from(take_map(&mut ebpf, names::PEERS)?).map_err(conv(names::PEERS))?;
        let route_slots = slot_table(
            &mut ebpf,
            &map_dir,
            names::ROUTE_SLOTS,
            overlay_common::capacity::ROUTE_SLOTS,
        )?;
        let peer_slots = slot_table(
            &mut ebpf,
            &map_dir,
            names::PEER_SLOTS,
            overlay_common::capacity::PEER_SLOTS,
        )?;
        let networks = HashMap::try_from(take_map(&mut ebpf, names::NETWORKS)?)
            .map_err(conv(names::NETWORKS))?;
        let subnets = LpmTrie::try_from(take_map(&mut ebpf, names::SUBNETS)?)
            .map_err(conv(names::SUBNETS))?;
        let config =
            Array::try_from(take_map(&mut ebpf, names::CONFIG)?).map_err(conv(names::CONFIG))?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, names::COUNTERS)?)
            .map_err(conv(names::COUNTERS))?;
        let net_counters = PerCpuArray::try_from(take_map(&mut ebpf, names::NET_COUNTERS)?)
            .map_err(conv(names::NET_COUNTERS))?;
        let nexthops = PerCpuArray::try_from(take_map(&mut ebpf, names::NEXTHOPS)?)
            .map_err(conv(names::NEXTHOPS))?;
        let hosts =
            HashMap::try_from(take_map(&mut ebpf, names::HOSTS)?).map_err(conv(names::HOSTS))?;
        let host_gens = Array::try_from(take_map(&mut ebpf, names::HOST_GENERATIONS)?)
            .map_err(conv(names::HOST_GENERATIONS))?;
        let path_mtus = HashMap::try_from(take_map(&mut ebpf, names::PATH_MTUS)?)
            .map_err(conv(names::PATH_MTUS))?;
        let guards =
            HashMap::try_from(take_map(&mut ebpf, names::GUARDS)?).map_err(conv(names::GUARDS))?;
        let dns_names =
            HashMap::try_from(take_map(&mut ebpf, names::NAMES)?).map_err(conv(names::NAMES))?;
        let monitor = PerCpuArray::try_from(take_map(&mut ebpf, names::MONITOR)?)
            .map_err(conv(names::MONITOR))?;
        let monitor_on = Array::try_from(take_map(&mut ebpf, names::MONITOR_ON)?)
            .map_err(conv(names::MONITOR_ON))?;
        let mut dp = Self {
            ebpf,
            pin_dir,
            endpoints,
            ep_slots,
            routes,
            peers,
            route_slots,
            peer_slots,
            networks,
            subnets,
            config,
            counters,
            net_counters,
            nexthops,
            hosts,
            host_gens,
            path_mtus,
            guards,
            names: dns_names,
            monitor,
            monitor_on,
        };
        if new_slots {
            dp.fill_slots()
                .map_err(DataplaneError::map("filling the slot arrays"))?;
        }
        // Never fails the load: what is not moved keeps working as it was.
        match dp.upgrade_links() {
            Ok(report) => {
                if !report.moved.is_empty() {
                    tracing::info!(links = ?report.moved, "attached programs moved onto this build");
                }
                for (link, e) in &report.left {
                    tracing::warn!(%link, error = %crate::api::error_chain(e), "left on its program");
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::api::error_chain(&e), "attached programs not checked");
            }
        }
        Ok(dp)
    }

    /// Where maps (`maps/`) and links (`links/`) are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Removes every pin under `pin_dir`: maps are freed and pinned links
    /// detach once no process holds them any more. Refuses a directory that
    /// is not a bpffs holding this project's pins (and so removes nothing
    /// else); an absent one is fine.
    pub fn destroy(pin_dir: impl AsRef<Path>) -> Result<(), DataplaneError> {
        let pin_dir = pin_dir.as_ref();
        if !pin_dir.exists() {
            return Ok(());
        }
        bpffs::check_ours(pin_dir, &names::ALL)?;
        bpffs::remove_dir(pin_dir)
    }

    /// The loaded program `name`, for attaching or BPF_PROG_RUN tests.
    pub fn tc_program(
        &mut self,
        name: &'static str,
    ) -> Result<&mut SchedClassifier, DataplaneError> {
        program(&mut self.ebpf, name)
    }

    /// The loaded XDP program.
    pub fn xdp_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        program(&mut self.ebpf, programs::UNDERLAY_XDP)
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DataplaneError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::MissingProgram(name))?;
    prog.try_into().map_err(|source| DataplaneError::Program {
        op: "typing",
        name,
        source,
    })
}
