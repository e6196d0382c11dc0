//! Sessions across machines: a driver attaching to a node (and, next, nodes talking to each
//! other), versioned with a handshake.
//!
//! Every such connection runs over TLS and starts with ray-net's handshake (protocol version,
//! cluster id, role, and a proof of the cluster token bound to the TLS session). Then the
//! connecting side sends [`NodeMessage::Hello`] for the session it wants, carrying this
//! protocol's [`PROTOCOL_VERSION`]; the node answers [`NodeMessage::Welcome`] or
//! [`NodeMessage::Refused`] saying which check failed. A driver whose executable the node does
//! not have is asked for it ([`NodeMessage::NeedBinary`]) and sends it in chunks, verified by
//! its SHA-256 before anything runs. After the welcome, a driver speaks the worker protocol
//! ([`super::worker`]) like a worker that has no shared memory: values travel inline.
//!
//! [`Handshake`] is the node's side of the session set-up as a state machine without I/O.

use super::PROTOCOL_VERSION;
use crate::ids::{JobId, NodeId, ProcId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Who is connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PeerRole {
    /// Another node manager.
    Node,
    /// A driver joining the cluster.
    Driver,
    /// A driver of another node opening a direct session to call one actor here
    /// ([`NodeMessage::DirectHello`]).
    Direct,
}

/// A driver's program, as it introduces itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DriverInfo {
    /// Its build fingerprint (what its workers must match).
    pub fingerprint: u64,
    /// SHA-256 of its executable.
    pub sha256: [u8; 32],
    /// Size of its executable in bytes.
    pub size: u64,
    /// Its process id on its machine (for messages).
    pub pid: u32,
    /// Its program's name (the executable's file name; shown by `ray-rs status`; at most
    /// [`DRIVER_NAME_MAX`] bytes are kept).
    pub name: String,
    /// Its job's namespace for actor names (`Config::namespace`), if it set one.
    pub namespace: Option<String>,
}

/// Longest driver name a node keeps.
pub(crate) const DRIVER_NAME_MAX: usize = 128;

impl DriverInfo {
    /// Its name as a node shows it: printable characters only, at most [`DRIVER_NAME_MAX`]
    /// bytes.
    pub(crate) fn shown_name(&self) -> String {
        let mut out = String::new();
        for c in self.name.chars().filter(|c| !c.is_control()) {
            if out.len() + c.len_utf8() > DRIVER_NAME_MAX {
                break;
            }
            out.push(c);
        }
        out
    }
}

/// Why a peer was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum NodeRefusal {
    WrongVersion {
        ours: u32,
        theirs: u32,
    },
    OtherCluster,
    NoHello,
    /// The executable it sent does not match the hash it announced, or could not be stored.
    BadBinary {
        reason: String,
    },
    /// The node cannot take this session (e.g. shutting down).
    Unavailable {
        reason: String,
    },
    /// The hello names an incarnation of `node` that the receiver has not seen registered in
    /// etcd (yet): a restarted node may reach a peer before that peer's watch of etcd shows its
    /// new record, and a hello alone must not make the receiver take the node it knew for
    /// dead. The sender asks again for a while.
    NotRegistered {
        node: crate::ids::NodeId,
        incarnation: u64,
    },
}

impl fmt::Display for NodeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRefusal::WrongVersion { ours, theirs } => {
                write!(f, "protocol version {theirs}, expected {ours}")
            }
            NodeRefusal::OtherCluster => f.write_str("the peer belongs to another cluster"),
            NodeRefusal::NoHello => f.write_str("the first message was not Hello"),
            NodeRefusal::BadBinary { reason } => write!(f, "the executable was refused: {reason}"),
            NodeRefusal::Unavailable { reason } => write!(f, "the node is unavailable: {reason}"),
            NodeRefusal::NotRegistered { node, incarnation } => write!(
                f,
                "incarnation {incarnation} of {node} is not (yet) among the registrations \
                 in etcd that the refusing node has seen"
            ),
        }
    }
}

/// Session set-up messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum NodeMessage {
    Hello {
        version: u32,
        cluster_id: String,
        role: PeerRole,
        /// For a driver: its program.
        driver: Option<DriverInfo>,
        /// For a node: its id, and whether this is its data session (bulk transfers) rather
        /// than its control session.
        node: Option<(NodeId, bool)>,
        /// For a node: its incarnation (1 at first registration, +1 each time it rejoins
        /// after being declared dead). A node refuses sessions of an incarnation it knows is
        /// dead or superseded, and of one it has not seen registered in etcd (yet).
        incarnation: u64,
        /// For a node's control session: its id (chosen by the opening node), whether this
        /// connection resumes it (else it is new), and how many frames the opening node
        /// received on it so far (see `node_manager/session.rs`).
        session: u64,
        resume: bool,
        received: u64,
    },
    /// The session is open. For a driver: its process id on the node and its job.
    Welcome {
        node: NodeId,
        proc: Option<ProcId>,
        job: Option<JobId>,
        /// For a resumed control session: how many frames this node received on it.
        received: u64,
    },
    Refused {
        reason: NodeRefusal,
    },
    /// The node does not have the driver's executable: send it.
    NeedBinary,
    /// A piece of the executable, in order.
    BinaryChunk(bytes::Bytes),
    /// The whole executable was sent.
    BinaryDone,
    /// A remote driver's hello for a direct session to call `actor` here, with the ticket
    /// its home node `home` sent this node (`docs/direct-actor-calls.md`).
    DirectHello {
        version: u32,
        cluster_id: String,
        home: NodeId,
        driver: ProcId,
        job: JobId,
        actor: crate::ids::ActorId,
        ticket: super::Ticket,
    },
}

/// The node's side of a session's set-up.
#[derive(Debug, PartialEq)]
pub(crate) enum Handshake {
    /// Waiting for the peer's `Hello`.
    AwaitingHello,
    /// The peer is in: messages other than the set-up's may flow.
    Established { role: PeerRole },
    /// The peer was refused; nothing it sends is handled.
    Refused(NodeRefusal),
}

impl Handshake {
    /// Checks the peer's first message: `Ok` with its role and driver info if it may open a
    /// session, `Err` with the refusal to send otherwise.
    pub(crate) fn receive(
        &mut self,
        msg: &NodeMessage,
        cluster_id: &str,
    ) -> Result<(PeerRole, Option<DriverInfo>), NodeRefusal> {
        if !matches!(self, Handshake::AwaitingHello) {
            return Err(NodeRefusal::NoHello);
        }
        let outcome = match msg {
            NodeMessage::Hello { version, .. } | NodeMessage::DirectHello { version, .. }
                if *version != PROTOCOL_VERSION =>
            {
                Err(NodeRefusal::WrongVersion {
                    ours: PROTOCOL_VERSION,
                    theirs: *version,
                })
            }
            NodeMessage::Hello {
                cluster_id: theirs, ..
            }
            | NodeMessage::DirectHello {
                cluster_id: theirs, ..
            } if theirs != cluster_id => Err(NodeRefusal::OtherCluster),
            NodeMessage::DirectHello { .. } => Ok((PeerRole::Direct, None)),
            NodeMessage::Hello {
                role: PeerRole::Direct,
                ..
            } => Err(NodeRefusal::NoHello),
            NodeMessage::Hello {
                role: PeerRole::Driver,
                driver: None,
                ..
            }
            | NodeMessage::Hello {
                role: PeerRole::Node,
                node: None,
                ..
            } => Err(NodeRefusal::NoHello),
            NodeMessage::Hello { role, driver, .. } => Ok((*role, driver.clone())),
            _ => Err(NodeRefusal::NoHello),
        };
        *self = match &outcome {
            Ok((role, _)) => Handshake::Established { role: *role },
            Err(r) => Handshake::Refused(r.clone()),
        };
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u32, cluster: &str) -> NodeMessage {
        NodeMessage::Hello {
            version,
            cluster_id: cluster.into(),
            role: PeerRole::Node,
            driver: None,
            node: Some((NodeId(3), false)),
            incarnation: 1,
            session: 1,
            resume: false,
            received: 0,
        }
    }

    #[test]
    fn a_peer_with_the_right_version_and_cluster_is_welcomed_once() {
        let mut h = Handshake::AwaitingHello;
        assert_eq!(
            h.receive(&hello(PROTOCOL_VERSION, "c1"), "c1"),
            Ok((PeerRole::Node, None))
        );
        assert_eq!(
            h,
            Handshake::Established {
                role: PeerRole::Node
            }
        );
        assert!(h.receive(&hello(PROTOCOL_VERSION, "c1"), "c1").is_err());
    }

    #[test]
    fn wrong_version_other_cluster_and_no_hello_are_refused_saying_which() {
        let driverless = NodeMessage::Hello {
            version: PROTOCOL_VERSION,
            cluster_id: "c1".into(),
            role: PeerRole::Driver,
            driver: None,
            node: None,
            incarnation: 0,
            session: 0,
            resume: false,
            received: 0,
        };
        let cases = [
            (
                hello(PROTOCOL_VERSION + 1, "c1"),
                NodeRefusal::WrongVersion {
                    ours: PROTOCOL_VERSION,
                    theirs: PROTOCOL_VERSION + 1,
                },
            ),
            (hello(PROTOCOL_VERSION, "c2"), NodeRefusal::OtherCluster),
            (NodeMessage::BinaryDone, NodeRefusal::NoHello),
            (driverless, NodeRefusal::NoHello),
        ];
        for (msg, want) in cases {
            let mut h = Handshake::AwaitingHello;
            assert_eq!(h.receive(&msg, "c1"), Err(want.clone()));
            assert_eq!(h, Handshake::Refused(want.clone()));
            assert!(!want.to_string().is_empty());
        }
        assert!(
            NodeRefusal::WrongVersion { ours: 2, theirs: 3 }
                .to_string()
                .contains("protocol version 3, expected 2")
        );
    }

    #[test]
    fn binary_chunks_travel_as_bytes() {
        let msg = NodeMessage::BinaryChunk(bytes::Bytes::from(vec![7u8; 1000]));
        let mut frame = Vec::new();
        crate::codec::encode_frame(&msg, &mut frame).unwrap();
        assert!(frame.len() < 1100, "one run of bytes: {}", frame.len());
        let back: NodeMessage = crate::codec::decode_frame(&frame[4..]).unwrap();
        assert_eq!(back, msg);
    }
}

/// Requests on a node's data session (bulk transfers, apart from the control messages so they
/// never wait behind a large transfer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum DataRequest {
    /// `len` bytes of a stored object's value from `offset`.
    Fetch {
        req: u64,
        id: crate::ids::ObjectId,
        offset: u64,
        len: u64,
    },
    /// `len` bytes of a cached executable from `offset`.
    FetchBinary {
        req: u64,
        sha256: [u8; 32],
        offset: u64,
        len: u64,
    },
}

/// Replies on a data session. A reply is this header frame; for `Ok(len)` exactly `len` raw
/// bytes follow it on the stream (outside any frame), so the serving node writes them straight
/// from its store and the requesting node reads them straight to where they go (its own
/// store, for a chunk of an object). A requester takes no more than it asked for: a reply
/// announcing another length than a chunk asked (or more than a piece of an executable asked)
/// ends the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum DataReply {
    Bytes {
        req: u64,
        /// How many bytes follow, or why there are none.
        result: Result<u64, String>,
    },
}

/// Largest header frame of a [`DataReply`] (its bytes follow outside the frame).
pub(crate) const DATA_HEADER_MAX: usize = 16 * 1024;

/// Longest error text a [`DataReply`] carries (a longer one is cut, so the header fits
/// [`DATA_HEADER_MAX`]).
pub(crate) const DATA_ERROR_MAX: usize = 4 * 1024;
