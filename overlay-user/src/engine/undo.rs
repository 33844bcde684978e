//! The undo log: every kernel or cluster change a command makes is
//! recorded with how to take it back, and a failing command takes them
//! back newest first.

use std::net::Ipv4Addr;

use overlay_common::{NameKey, NameValue};

use super::{Datapath, DefaultRoute, HostNet};
use crate::{
    cluster::ClusterStore,
    dataplane::{DataplaneError, Guard, LocalEndpoint, Network, RemoteEndpoint, Underlay},
    model::{AttachedMode, Claim, NetworkRecord},
};

/// A change made by the running command, and how to take it back.
#[derive(Debug)]
pub(super) enum Undo {
    Network(u32),
    /// A removed network, re-added on rollback with the remote endpoints
    /// and peers its removal took from the maps.
    RemovedNetwork {
        net: Network,
        remotes: Vec<RemoteEndpoint>,
        peers: Vec<Ipv4Addr>,
    },
    /// An endpoint's program link and map entries on a host-side ifindex.
    Endpoint(u32),
    /// An endpoint taken out of the dataplane: its entries added again on
    /// rollback, and its program attached again if it was.
    RemovedEndpoint {
        ep: LocalEndpoint,
        linked: bool,
    },
    /// An endpoint program detached from a host-side ifindex.
    Detached(u32),
    /// An endpoint's map entries (not its program) on a host-side ifindex.
    EndpointEntry(u32),
    /// A host-side interface.
    Link(String),
    /// A named network namespace.
    Netns(String),
    Peer(Ipv4Addr, u32),
    /// A removed peer, added again on rollback.
    RemovedPeer(Ipv4Addr, u32),
    Remote(u32, Ipv4Addr),
    /// A removed static remote endpoint, added again on rollback.
    RemovedRemote(RemoteEndpoint),
    /// The decap program attached to an underlay NIC (and the config).
    AttachedUnderlay(u32),
    /// The decap program detached from an underlay NIC, attached again on
    /// rollback with the config it had.
    DetachedUnderlay {
        underlay: Underlay,
        mode: AttachedMode,
    },
    /// A destination guarded from containers.
    Guard(Guard),
    /// A guard lifted, put back on rollback.
    RemovedGuard(Guard),
    /// The gateway address added to `lo`.
    GatewayAddr(Ipv4Addr),
    /// A gateway address removed from `lo`, added again on rollback.
    RemovedGatewayAddr(Ipv4Addr),
    /// A network created in the cluster store.
    ClusterNetwork(NetworkRecord),
    /// A network removed from the cluster store, re-created on rollback.
    ClusterRemovedNetwork(NetworkRecord),
    /// An address claimed in the cluster store: network id, address,
    /// this host's underlay address.
    ClusterClaim(String, Ipv4Addr, Ipv4Addr),
    /// An address released in the cluster store, claimed again on rollback.
    ClusterReleased(Claim),
    /// A container's default route changed; `previous` goes back.
    DefaultRoute {
        netns: String,
        previous: Option<DefaultRoute>,
    },
    /// A name answered in the kernel changed; `previous` goes back (none:
    /// the name is removed).
    Name {
        key: NameKey,
        previous: Option<NameValue>,
    },
    /// A container's resolv.conf changed; `previous` goes back.
    ResolvConf {
        netns: String,
        previous: Option<String>,
    },
}

impl Undo {
    /// Takes the change back. Best effort: the state being restored
    /// existed a moment ago, and one failure must not stop the others.
    pub(super) fn apply(
        self,
        dp: &mut dyn Datapath,
        host: &mut dyn HostNet,
        cluster: Option<&mut ClusterStore>,
    ) {
        let _ = match self {
            Self::Network(vni) => dp.remove_network(vni).map_err(drop),
            Self::RemovedNetwork {
                net,
                remotes,
                peers,
            } => dp.add_network(&net).map_err(drop).map(|()| {
                for r in &remotes {
                    let _ = dp.add_remote_endpoint(r);
                }
                for p in peers {
                    let _ = dp.add_peer(p, net.vni);
                }
            }),
            Self::Endpoint(ifindex) => {
                let _ = dp.detach_endpoint(ifindex);
                // Absent when the failure came between attach and map.
                match dp.remove_local_endpoint(ifindex) {
                    Ok(()) | Err(DataplaneError::UnknownEndpoint(_)) => Ok(()),
                    Err(_) => Err(()),
                }
            }
            Self::RemovedEndpoint { ep, linked } => {
                if linked {
                    let _ = dp.attach_endpoint(ep.host_ifindex);
                }
                dp.add_local_endpoint(&ep).map_err(drop)
            }
            Self::Detached(ifindex) => dp.attach_endpoint(ifindex).map_err(drop),
            Self::EndpointEntry(ifindex) => dp.remove_local_endpoint(ifindex).map_err(drop),
            Self::Link(name) => host.delete_link(&name).map_err(drop),
            Self::Netns(name) => host.delete_netns(&name).map_err(drop),
            Self::Peer(ip, vni) => dp.remove_peer(ip, vni).map_err(drop),
            Self::RemovedPeer(ip, vni) => dp.add_peer(ip, vni).map_err(drop),
            Self::Remote(vni, ip) => dp.remove_remote_endpoint(vni, ip).map_err(drop),
            Self::RemovedRemote(ep) => dp.add_remote_endpoint(&ep).map_err(drop),
            Self::AttachedUnderlay(ifindex) => dp.detach_underlay(ifindex).map_err(drop),
            Self::DetachedUnderlay { underlay, mode } => dp
                .attach_underlay(underlay.ifindex, mode.reattach())
                .and_then(|_| dp.set_underlay(&underlay))
                .map_err(drop),
            Self::Guard(g) => dp.remove_guard(g).map_err(drop),
            Self::RemovedGuard(g) => dp.add_guard(g).map_err(drop),
            Self::GatewayAddr(gw) => host.remove_gateway_address(gw).map_err(drop),
            Self::RemovedGatewayAddr(gw) => host.add_gateway_address(gw).map(drop).map_err(drop),
            Self::ClusterNetwork(n) => match cluster {
                Some(c) => c.remove_network(&n).map_err(drop),
                None => Ok(()),
            },
            Self::ClusterRemovedNetwork(n) => match cluster {
                Some(c) => c.create_network(&n).map_err(drop),
                None => Ok(()),
            },
            Self::ClusterClaim(net, ip, host) => match cluster {
                Some(c) => c.release_address(&net, ip, host).map(drop).map_err(drop),
                None => Ok(()),
            },
            Self::ClusterReleased(claim) => match cluster {
                Some(c) => c.put_claim(&claim).map(drop).map_err(drop),
                None => Ok(()),
            },
            Self::DefaultRoute { netns, previous } => host
                .set_default_route(&netns, previous.as_ref())
                .map_err(drop),
            Self::Name { key, previous } => match previous {
                Some(v) => dp.set_name(&key, &v).map_err(drop),
                None => dp.remove_name(&key).map_err(drop),
            },
            Self::ResolvConf { netns, previous } => host
                .set_resolv_conf(&netns, previous.as_deref())
                .map_err(drop),
        };
    }
}
