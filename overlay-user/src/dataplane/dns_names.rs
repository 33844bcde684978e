//! Names the endpoint program answers DNS queries for: (network, name in
//! DNS wire form) -> up to `DNS_ADDRS_MAX` addresses. The engine keeps the
//! map equal to what the state says (`NameTable::kernel_entries`).

use std::collections::BTreeMap;

use overlay_common::{DNS_ADDRS_MAX, NameKey, NameValue};

use super::{Dataplane, DataplaneError, not_found};

impl Dataplane {
    /// Answers `key` with `value` (1..=`DNS_ADDRS_MAX` addresses).
    pub fn set_name(&mut self, key: &NameKey, value: &NameValue) -> Result<(), DataplaneError> {
        if value.count == 0 || value.count as usize > DNS_ADDRS_MAX {
            return Err(DataplaneError::InvalidUnderlay(
                "a name needs 1 to 4 addresses",
            ));
        }
        self.names
            .insert(key, value, 0)
            .map_err(DataplaneError::map(format!(
                "answering a name on VNI {}",
                key.vni
            )))
    }

    /// Stops answering `key` (absent is fine).
    pub fn remove_name(&mut self, key: &NameKey) -> Result<(), DataplaneError> {
        match self.names.remove(key) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(DataplaneError::map(format!(
                "removing a name on VNI {}",
                key.vni
            ))(e)),
        }
    }

    /// Every name answered.
    pub fn names(&self) -> Result<BTreeMap<NameKey, NameValue>, DataplaneError> {
        self.names
            .iter()
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(DataplaneError::map("listing names"))
    }
}
