//! Attaching the programs: the decap program on the underlay NIC, the
//! endpoint program on each host-side veth. Every link is pinned under
//! `PIN_DIR/links`, so it outlives this process and is detached by
//! removing its pin.

use std::path::{Path, PathBuf};

use aya::programs::{
    SchedClassifier, TcAttachType, XdpMode,
    links::{FdLink, PinnedLink},
};
use overlay_common::{Config, programs};

use super::{Dataplane, DataplaneError, program};
use crate::{
    host,
    model::{AttachedMode, DecapMode},
};

impl Dataplane {
    /// Attaches the decap program to the underlay NIC `ifindex` (in the
    /// calling thread's network namespace) and pins the link.
    ///
    /// Also enables IPv4 forwarding on that NIC: the kernel's
    /// `bpf_fib_lookup`, which picks the encap next hop, refuses to answer
    /// for a device that does not forward.
    pub fn attach_underlay(
        &mut self,
        ifindex: u32,
        mode: DecapMode,
    ) -> Result<AttachedMode, DataplaneError> {
        if ifindex == 0 {
            return Err(DataplaneError::InvalidIfindex);
        }
        let iface = host::link::name_of(ifindex).map_err(|source| DataplaneError::Host {
            iface: ifindex.to_string(),
            source,
        })?;
        host::sysctl::enable_iface_forwarding(&iface).map_err(|source| DataplaneError::Host {
            iface: iface.clone(),
            source,
        })?;
        let pin = self.link_pin(&format!("underlay-{ifindex}"));
        unpin_link(&pin)?;
        let (fd_link, attached) = match mode {
            DecapMode::Tc => (
                self.attach_tcx(programs::UNDERLAY_TC, ifindex)?,
                AttachedMode::Tcx,
            ),
            DecapMode::Xdp | DecapMode::XdpGeneric | DecapMode::XdpNative => {
                let xdp = self.xdp_program()?;
                let native = match mode {
                    DecapMode::Xdp => xdp.attach(ifindex, XdpMode::Driver).ok(),
                    DecapMode::XdpNative => {
                        Some(xdp.attach(ifindex, XdpMode::Driver).map_err(|_| {
                            DataplaneError::Unsupported {
                                feature: "native (driver) XDP",
                                on: iface.clone(),
                                hint: "use --decap xdp (native where possible), xdp-generic or tc",
                            }
                        })?)
                    }
                    _ => None,
                };
                let (id, attached) = match native {
                    Some(id) => (id, AttachedMode::XdpNative),
                    None => (
                        xdp.attach(ifindex, XdpMode::Skb).map_err(|source| {
                            DataplaneError::Program {
                                op: "attaching",
                                name: programs::UNDERLAY_XDP,
                                source,
                            }
                        })?,
                        AttachedMode::XdpGeneric,
                    ),
                };
                let link = xdp
                    .take_link(id)
                    .map_err(|source| DataplaneError::Program {
                        op: "taking the link of",
                        name: programs::UNDERLAY_XDP,
                        source,
                    })?;
                let fd_link = FdLink::try_from(link).map_err(|source| DataplaneError::Link {
                    op: "xdp as bpf_link".into(),
                    source,
                })?;
                (fd_link, attached)
            }
        };
        fd_link
            .pin(&pin)
            .map_err(|source| DataplaneError::Pin { path: pin, source })?;
        Ok(attached)
    }

    /// Detaches the decap program from `ifindex` and clears the underlay
    /// config: encap and decap stop (packets are then counted as not ready
    /// or passed). Absent pieces are fine.
    pub fn detach_underlay(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        unpin_link(&self.link_pin(&format!("underlay-{ifindex}")))?;
        self.config
            .set(0, &Config::default(), 0)
            .map_err(DataplaneError::map("clearing the underlay config"))?;
        self.flush_next_hops()
    }

    /// Attaches the endpoint program at tcx ingress of the host-side veth
    /// `ifindex` (calling thread's namespace) and pins the link.
    pub fn attach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        if ifindex == 0 {
            return Err(DataplaneError::InvalidIfindex);
        }
        let pin = self.link_pin(&format!("endpoint-{ifindex}"));
        unpin_link(&pin)?;
        let fd_link = self.attach_tcx(programs::ENDPOINT_INGRESS, ifindex)?;
        fd_link
            .pin(&pin)
            .map_err(|source| DataplaneError::Pin { path: pin, source })?;
        Ok(())
    }

    /// Detaches the endpoint program from `ifindex` (a no-op if absent).
    pub fn detach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        unpin_link(&self.link_pin(&format!("endpoint-{ifindex}")))
    }

    /// True when the endpoint program's link on `ifindex` is pinned.
    pub fn endpoint_linked(&self, ifindex: u32) -> bool {
        self.link_pin(&format!("endpoint-{ifindex}")).exists()
    }

    /// True when the decap program's link on `ifindex` is pinned.
    pub fn underlay_linked(&self, ifindex: u32) -> bool {
        self.link_pin(&format!("underlay-{ifindex}")).exists()
    }

    /// Names of the pinned links (`endpoint-<ifindex>`, `underlay-<ifindex>`).
    pub fn links(&self) -> Vec<String> {
        std::fs::read_dir(self.pin_dir.join("links"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn link_pin(&self, name: &str) -> PathBuf {
        self.pin_dir.join("links").join(name)
    }

    fn attach_tcx(&mut self, name: &'static str, ifindex: u32) -> Result<FdLink, DataplaneError> {
        let prog: &mut SchedClassifier = program(&mut self.ebpf, name)?;
        let id = prog
            .attach(ifindex, TcAttachType::Ingress)
            .map_err(|source| DataplaneError::Program {
                op: "attaching",
                name,
                source,
            })?;
        let link = prog
            .take_link(id)
            .map_err(|source| DataplaneError::Program {
                op: "taking the link of",
                name,
                source,
            })?;
        FdLink::try_from(link).map_err(|source| DataplaneError::Link {
            op: format!("{name} as bpf_link"),
            source,
        })
    }
}

/// Removes a pinned link, which detaches it (no process holds its fd).
fn unpin_link(path: &Path) -> Result<(), DataplaneError> {
    if !path.exists() {
        return Ok(());
    }
    let link = PinnedLink::from_pin(path).map_err(|source| DataplaneError::Link {
        op: format!("opening {}", path.display()),
        source,
    })?;
    link.unpin().map(drop).map_err(|source| DataplaneError::Io {
        op: "unpin",
        path: path.to_path_buf(),
        source,
    })
}
