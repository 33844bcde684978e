//! Kernel features the dataplane cannot work without, checked before
//! anything is loaded so that an old kernel gets one clear line instead of a
//! verifier log or an EINVAL from a link create; and which decap mode a NIC
//! can carry correctly.

use super::DataplaneError;

/// (major, minor), the same as text, and what needs it; newest first.
const REQUIRED: &[((u32, u32), &str, &str)] = &[
    // bpf_link-based TC attachment, used for every TC program.
    ((6, 6), "6.6", "tcx links (BPF_TCX_INGRESS)"),
    // bpf_redirect_peer, bpf_redirect_neigh, bpf_skb_adjust_room ENCAP flags.
    ((5, 10), "5.10", "bpf_redirect_peer"),
];

/// `major.minor` of a kernel release string (`6.12.38+deb13-amd64`).
fn version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Checks a release string; unknown formats pass (the load then reports
/// whatever is really missing).
pub fn check_release(release: &str) -> Result<(), DataplaneError> {
    let Some(found) = version(release) else {
        return Ok(());
    };
    match REQUIRED.iter().find(|(need, _, _)| found < *need) {
        Some((_, need, feature)) => Err(DataplaneError::KernelTooOld {
            found: release.trim().to_owned(),
            feature,
            need,
        }),
        None => Ok(()),
    }
}

/// Checks the running kernel.
pub fn check_kernel() -> Result<(), DataplaneError> {
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => check_release(&release),
        Err(_) => Ok(()),
    }
}

/// Drivers of virtual devices. Their frames may arrive checksum-partial
/// (a veth's peer, a tap fed by a VM), state that XDP cannot carry: after
/// XDP decap the container would see TCP and UDP with unfinished checksums
/// and drop them. TC decap keeps the skb's state.
pub const VIRTUAL_DRIVERS: &[&str] = &[
    "veth",
    "tun",
    "bridge",
    "bonding",
    "team",
    "vxlan",
    "geneve",
    "dummy",
    "macvlan",
    "ipvlan",
    "vrf",
    "macsec",
    "wireguard",
    "nlmon",
    "ifb",
];

/// What `auto` decides for a NIC from its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoDecap {
    /// Native XDP, should the driver take it (else TC).
    NativeXdp,
    /// TC, and why.
    Tc(String),
}

/// The decap mode that is correct on a NIC driven by `driver` (`None`:
/// the device does not say).
pub fn auto_decap(driver: Option<&str>) -> AutoDecap {
    match driver {
        Some(d) if VIRTUAL_DRIVERS.contains(&d) => AutoDecap::Tc(format!(
            "{d} is a virtual device that hands over checksum-partial packets, which XDP cannot carry"
        )),
        None => AutoDecap::Tc("the device names no driver (a virtual device)".into()),
        Some(_) => AutoDecap::NativeXdp,
    }
}

/// Why an explicit XDP mode is wrong on a NIC driven by `driver`, if it is.
pub fn xdp_warning(driver: Option<&str>) -> Option<String> {
    match auto_decap(driver) {
        AutoDecap::Tc(why) => Some(format!(
            "{why}: TCP through XDP decap may fail here; --decap auto (or tc) is correct"
        )),
        AutoDecap::NativeXdp => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_tc_on_virtual_devices() {
        assert!(matches!(auto_decap(Some("veth")), AutoDecap::Tc(_)));
        assert!(matches!(auto_decap(Some("bridge")), AutoDecap::Tc(_)));
        assert!(matches!(auto_decap(None), AutoDecap::Tc(_)));
        assert_eq!(auto_decap(Some("mlx5_core")), AutoDecap::NativeXdp);
        assert_eq!(auto_decap(Some("virtio_net")), AutoDecap::NativeXdp);
        assert!(xdp_warning(Some("veth")).is_some());
        assert!(xdp_warning(Some("ixgbe")).is_none());
    }

    #[test]
    fn old_kernels_are_named_with_what_they_lack() {
        let cases: &[(&str, Option<&str>)] = &[
            ("6.12.38+deb13-amd64", None),
            ("6.6.0", None),
            ("7.0.1-arch1", None),
            (
                "6.5.13-generic",
                Some("Linux 6.5.13-generic lacks tcx links"),
            ),
            ("5.15.0-91-generic", Some("needs Linux >= 6.6")),
            ("4.19.0", Some("Linux 4.19.0 lacks tcx links")),
            ("not-a-version", None),
        ];
        for (release, want) in cases {
            let got = check_release(release).err().map(|e| e.to_string());
            match (want, &got) {
                (None, None) => {}
                (Some(w), Some(g)) if g.contains(w) => {}
                _ => panic!("{release}: want {want:?}, got {got:?}"),
            }
        }
    }
}
