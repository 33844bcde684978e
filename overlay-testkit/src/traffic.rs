//! Traffic checks between containers of a simulated topology.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use sha2::{Digest, Sha256};

use crate::netns::NetNs;

/// Deterministic pseudo-random bytes (xorshift64*), so a corrupted or
/// reordered byte changes the digest.
pub struct Stream(u64);

impl Stream {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Sends `bytes` over TCP from namespace `from` to `to_ip:port` served in
/// namespace `to`; returns (sent digest, received digest, received bytes).
pub fn tcp_transfer(
    from: &NetNs,
    to: &NetNs,
    to_ip: Ipv4Addr,
    port: u16,
    bytes: usize,
) -> ([u8; 32], [u8; 32], usize) {
    let listener = to
        .run(|| TcpListener::bind((to_ip, port)))
        .expect("enter server netns")
        .expect("bind server");
    std::thread::scope(|s| {
        let server = s.spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0;
            loop {
                let n = conn.read(&mut buf).expect("server read");
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                total += n;
            }
            (hash.finalize().into(), total)
        });
        let addr = SocketAddr::from((to_ip, port));
        let mut conn = from
            .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
            .expect("enter client netns")
            .expect("connect");
        conn.set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut stream = Stream::new(port.into());
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len());
            stream.fill(&mut buf[..n]);
            conn.write_all(&buf[..n]).expect("client write");
            hash.update(&buf[..n]);
            left -= n;
        }
        drop(conn);
        let (got, total): ([u8; 32], usize) = server.join().expect("server thread");
        (hash.finalize().into(), got, total)
    })
}

/// Sends `count` UDP datagrams of `size` bytes from `from` to
/// `to_ip:port` (served in `to`) and returns how many arrived.
pub fn udp_burst(
    from: &NetNs,
    to: &NetNs,
    to_ip: Ipv4Addr,
    port: u16,
    count: u32,
    size: usize,
) -> u32 {
    let rx = to
        .run(|| UdpSocket::bind((to_ip, port)))
        .expect("enter receiver netns")
        .expect("bind receiver");
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let tx = from
        .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
        .expect("enter sender netns")
        .expect("bind sender");
    let payload = vec![0x5a; size];
    let mut received = 0;
    let mut buf = vec![0u8; 65536];
    for _ in 0..count {
        tx.send_to(&payload, (to_ip, port)).expect("send");
        // Lockstep so no socket buffer can overflow and lose datagrams.
        if rx.recv(&mut buf).is_ok() {
            received += 1;
        }
    }
    received
}
