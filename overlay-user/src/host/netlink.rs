//! A synchronous rtnetlink socket: one request at a time, answered by an
//! acknowledgement, an error (errno), or a dump of messages.
//!
//! A socket acts in the network namespace it was opened in, whichever
//! thread uses it later: [`Netlink::open`] binds it to the calling thread's
//! namespace, [`Netlink::open_in`] to a named one.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::{HostError, netns};

/// How a request treats an object that exists already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Fail with EEXIST.
    New,
    /// Replace it (`ip ... replace`).
    Replace,
}

impl Create {
    const fn flags(self) -> u16 {
        match self {
            Self::New => NLM_F_CREATE | NLM_F_EXCL,
            Self::Replace => NLM_F_CREATE | NLM_F_REPLACE,
        }
    }
}

/// An open rtnetlink socket.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, HostError> {
        let io = |source| HostError::Io {
            op: "opening",
            what: "a netlink socket".into(),
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io)?;
        socket.bind_auto().map_err(io)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(io)?;
        Ok(Self { socket, seq: 0 })
    }

    /// A socket in namespace `name` (an `ip netns` name).
    pub fn open_in(name: &str) -> Result<Self, HostError> {
        netns::run_in(name, Self::open)?
    }

    /// Creates (or replaces) an object; true when it was created, false
    /// when `Create::New` found it there already (EEXIST).
    pub fn create(
        &mut self,
        message: RouteNetlinkMessage,
        mode: Create,
        op: impl FnOnce() -> String,
    ) -> Result<bool, HostError> {
        match self.request(message, mode.flags(), op) {
            Ok(_) => Ok(true),
            Err(e) if mode == Create::New && e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Changes or deletes an object; errors carry the kernel's errno.
    pub fn change(
        &mut self,
        message: RouteNetlinkMessage,
        op: impl FnOnce() -> String,
    ) -> Result<(), HostError> {
        self.request(message, 0, op).map(drop)
    }

    /// Every object of a kind (`RTM_GET*` with `NLM_F_DUMP`).
    pub fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        op: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, HostError> {
        self.request(message, NLM_F_DUMP, op)
    }

    /// One object (`RTM_GET*` without dump), or the kernel's errno.
    pub fn get(
        &mut self,
        message: RouteNetlinkMessage,
        op: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, HostError> {
        self.request(message, 0, op)
    }

    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, HostError> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        request.finalize();
        let mut buf = vec![0u8; request.buffer_len()];
        request.serialize(&mut buf);
        let io = |source| HostError::Io {
            op: "talking to",
            what: "the kernel over netlink".into(),
            source,
        };
        self.socket.send(&buf, 0).map_err(io)?;
        let mut replies = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(io)?;
            let mut offset = 0;
            while offset < datagram.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[offset..])
                    .map_err(|e| HostError::Decode(e.to_string()))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(HostError::Decode("zero-length netlink message".into()));
                }
                offset += len.next_multiple_of(4);
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        // An acknowledgement ends a request without dump.
                        None => return Ok(replies),
                        Some(code) => {
                            return Err(HostError::Netlink {
                                op: op(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            });
                        }
                    },
                    NetlinkPayload::Done(_) => return Ok(replies),
                    // Requests without dump end with the acknowledgement
                    // NLM_F_ACK asks for, after any reply.
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }
}
