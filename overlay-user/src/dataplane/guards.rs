//! Guarded destinations: what containers may not reach through their host
//! (beyond any host's VXLAN port, which the endpoint program always
//! refuses): the cluster store's client endpoints.

use std::net::SocketAddrV4;

use overlay_common::{GUARD_CLUSTER_STORE, GuardKey, GuardValue};

use super::{Dataplane, DataplaneError, be, not_found, v4};
use crate::model::rules;

/// A guarded TCP endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Guard(pub SocketAddrV4);

/// IP protocol number of TCP.
const TCP: u8 = 6;

fn key(guard: Guard) -> GuardKey {
    GuardKey {
        ip: be(*guard.0.ip()),
        port: guard.0.port().to_be(),
        proto: TCP,
        _pad0: 0,
    }
}

impl Dataplane {
    /// Containers may no longer reach `guard` through this host.
    pub fn add_guard(&mut self, guard: Guard) -> Result<(), DataplaneError> {
        rules::check_host_address(*guard.0.ip())?;
        if guard.0.port() == 0 {
            return Err(DataplaneError::InvalidUnderlay("guarded port 0"));
        }
        let value = GuardValue {
            flags: GUARD_CLUSTER_STORE,
        };
        self.guards
            .insert(&key(guard), &value, 0)
            .map_err(DataplaneError::map(format!("guarding {}", guard.0)))
    }

    /// Lifts a guard (absent is fine).
    pub fn remove_guard(&mut self, guard: Guard) -> Result<(), DataplaneError> {
        match self.guards.remove(&key(guard)) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(DataplaneError::map(format!("unguarding {}", guard.0))(e)),
        }
    }

    /// Every guarded destination, sorted.
    pub fn guards(&self) -> Result<Vec<Guard>, DataplaneError> {
        let mut out = self
            .guards
            .keys()
            .map(|k| k.map(|k| Guard(SocketAddrV4::new(v4(k.ip), u16::from_be(k.port)))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataplaneError::map("listing guarded destinations"))?;
        out.sort_unstable();
        Ok(out)
    }
}
