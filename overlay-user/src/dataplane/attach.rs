//! Attaching the programs: the decap program on the underlay NIC, the
//! endpoint program on each host-side veth. Every link is pinned under
//! `PIN_DIR/links`, so it outlives this process and is detached by
//! removing its pin. A link whose program is another build's is moved onto
//! this build's on load ([`Dataplane::upgrade_links`]).

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use aya::programs::{
    ProgramError, ProgramInfo, SchedClassifier, TcAttachType, XdpMode,
    links::{FdLink, LinkType, PinnedLink},
    tc::SchedClassifierLink,
    xdp::XdpLink,
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

/// What a program is, as far as an upgrade goes: its code and its maps.
#[derive(Debug, PartialEq, Eq)]
struct Build {
    /// The kernel's hash of the instructions (map references excluded, so
    /// two loads of one object over the same maps have one tag).
    tag: u64,
    /// The maps it uses, sorted.
    maps: Vec<u32>,
}

impl Build {
    fn of(info: &ProgramInfo) -> Result<Self, ProgramError> {
        let mut maps = info.map_ids()?.unwrap_or_default();
        maps.sort_unstable();
        Ok(Self {
            tag: info.tag(),
            maps,
        })
    }
}

/// What [`Dataplane::upgrade_links`] did.
#[derive(Debug, Default)]
pub struct LinkUpgrade {
    /// Links moved onto this build's programs.
    pub moved: Vec<String>,
    /// Links left as they were, and why.
    pub left: Vec<(String, DataplaneError)>,
}

/// Which of this build's programs the pinned link `name` (of kernel link
/// type `kind`) should run.
fn program_for(name: &str, kind: LinkType) -> Option<&'static str> {
    if name.starts_with("endpoint-") {
        Some(programs::ENDPOINT_INGRESS)
    } else if name.starts_with("underlay-") {
        match kind {
            LinkType::Tcx => Some(programs::UNDERLAY_TC),
            LinkType::Xdp => Some(programs::UNDERLAY_XDP),
            _ => None,
        }
    } else {
        None
    }
}

impl Dataplane {
    /// Moves every pinned link whose program is not this build's over the
    /// maps pinned now onto this load's program. A program keeps the maps
    /// it was loaded with, so after an upgrade that replaced a map (a slot
    /// array of a new layout) an older program would go on reading the old
    /// map, unwritten from then on. BPF_LINK_UPDATE swaps the program in
    /// place: no packet passes the interface without one. Links already
    /// running this build (same code, same maps) are left alone, so this
    /// costs a few syscalls a link on every load.
    ///
    /// Best effort, link by link: a link that cannot be read or moved (one
    /// whose interface is gone is defunct, and the kernel refuses to update
    /// it) is left as it is and named in the report; a repair pass removes
    /// the links of vanished interfaces.
    pub(super) fn upgrade_links(&mut self) -> Result<LinkUpgrade, DataplaneError> {
        let mut report = LinkUpgrade::default();
        let names = self.links();
        if names.is_empty() {
            return Ok(report);
        }
        let info_err = |name| {
            move |source| DataplaneError::Program {
                op: "reading",
                name,
                source,
            }
        };
        let mut ours = HashMap::new();
        for name in [
            programs::ENDPOINT_INGRESS,
            programs::UNDERLAY_TC,
            programs::UNDERLAY_XDP,
        ] {
            let prog = self
                .ebpf
                .program(name)
                .ok_or(DataplaneError::MissingProgram(name))?;
            let build = prog
                .info()
                .and_then(|i| Build::of(&i))
                .map_err(info_err(name))?;
            ours.insert(name, build);
        }
        let mut links = Vec::new();
        for name in names {
            let path = self.link_pin(&name);
            let link_err = |op: &str| {
                let op = format!("{op} {}", path.display());
                move |source| DataplaneError::Link { op, source }
            };
            let opened = PinnedLink::from_pin(&path)
                .map_err(link_err("opening"))
                .map(FdLink::from)
                .and_then(|link| {
                    let info = link.info().map_err(link_err("reading"))?;
                    let kind = info.link_type().map_err(link_err("typing"))?;
                    Ok((link, kind, info.program_id()))
                });
            match opened {
                Ok((link, kind, id)) => {
                    if let Some(prog) = program_for(&name, kind) {
                        links.push((name, link, prog, id));
                    }
                }
                Err(e) => report.left.push((name, e)),
            }
        }
        // The attached programs' builds, in one walk over the loaded
        // programs (aya has no lookup by id). One that cannot be read is
        // treated as another build's: running ours instead is always right.
        let wanted: HashSet<u32> = links.iter().map(|(_, _, _, id)| *id).collect();
        let attached: HashMap<u32, Build> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter(|info| wanted.contains(&info.id()))
            .filter_map(|info| Some((info.id(), Build::of(&info).ok()?)))
            .collect();
        for (name, link, prog, id) in links {
            if attached.get(&id) == ours.get(prog) {
                continue;
            }
            match self.move_link(&name, link, prog) {
                Ok(()) => report.moved.push(name),
                Err(e) => report.left.push((name, e)),
            }
        }
        Ok(report)
    }

    /// Moves pinned link `name` onto this load's program `prog`, in place.
    fn move_link(
        &mut self,
        name: &str,
        link: FdLink,
        prog: &'static str,
    ) -> Result<(), DataplaneError> {
        let update_err = |source| DataplaneError::Program {
            op: "moving a link onto",
            name: prog,
            source,
        };
        if prog == programs::UNDERLAY_XDP {
            let link = XdpLink::try_from(link).map_err(|source| DataplaneError::Link {
                op: format!("{name} as an XDP link"),
                source,
            })?;
            let xdp = self.xdp_program()?;
            let id = xdp.attach_to_link(link).map_err(update_err)?;
            // Closes this process's fd; the pin keeps the link.
            drop(xdp.take_link(id).map_err(update_err)?);
        } else {
            let link =
                SchedClassifierLink::try_from(link).map_err(|source| DataplaneError::Link {
                    op: format!("{name} as a tcx link"),
                    source,
                })?;
            let tc: &mut SchedClassifier = program(&mut self.ebpf, prog)?;
            let id = tc.attach_to_link(link).map_err(update_err)?;
            drop(tc.take_link(id).map_err(update_err)?);
        }
        Ok(())
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
