//! Builds the two-host lab and keeps it until stdin closes, for poking at
//! by hand: `cargo run -p overlay-testkit --example lab -- [xdp|xdp-generic|tc|kernel]`
//! (`kernel`: both hosts on the kernel's vxlan + bridge, for comparison).

use std::{io::Read, net::Ipv4Addr};

use overlay_testkit::lab::{HostKind, Lab};
use overlay_user::model::DecapRequest;

fn main() {
    let kind = match std::env::args().nth(1).as_deref() {
        Some("tc") => HostKind::Ebpf(DecapRequest::Tc),
        Some("xdp-generic") => HostKind::Ebpf(DecapRequest::XdpGeneric),
        Some("kernel") => HostKind::Kernel,
        _ => HostKind::Ebpf(DecapRequest::Xdp),
    };
    let mut lab = Lab::new(&[kind, kind]).expect("lab");
    lab.add_network(100, "10.10.0.0/24").expect("net");
    let ip = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
    lab.add_container(0, "a1", &[(100, ip("10.10.0.2"))])
        .expect("a1");
    lab.add_container(1, "b1", &[(100, ip("10.10.0.4"))])
        .expect("b1");
    for h in &lab.hosts {
        println!("host {} decap {:?}", h.ns.name(), h.decap);
    }
    for c in &lab.containers {
        println!("container {}", c.ns.name());
    }
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
