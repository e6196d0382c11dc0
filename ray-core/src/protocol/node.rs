//! Node ⇄ node (and driver ⇄ node across machines): a versioned protocol that starts with a
//! handshake.
//!
//! Every connection between processes on different machines runs over TLS and starts with
//! [`NodeMessage::Hello`], carrying [`PROTOCOL_VERSION`] and the
//! cluster id; the acceptor answers [`NodeMessage::Welcome`] or [`NodeMessage::Refused`] saying
//! which check failed. Proof of the cluster token is part of the TLS session set-up, below
//! this protocol. Cluster messages are added to this enum; the worker protocol stays as it is.
//!
//! [`Handshake`] is the acceptor's side of the handshake as a state machine without I/O.

use super::PROTOCOL_VERSION;
use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Who is connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PeerRole {
    /// Another node manager.
    Node,
    /// A driver joining the cluster.
    Driver,
    /// A command-line tool (`ray-rs status`).
    Tool,
}

/// Why a peer was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum NodeRefusal {
    WrongVersion { ours: u32, theirs: u32 },
    OtherCluster,
    NoHello,
}

impl fmt::Display for NodeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRefusal::WrongVersion { ours, theirs } => {
                write!(f, "protocol version {theirs}, expected {ours}")
            }
            NodeRefusal::OtherCluster => f.write_str("the peer belongs to another cluster"),
            NodeRefusal::NoHello => f.write_str("the first message was not Hello"),
        }
    }
}

/// Messages between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum NodeMessage {
    Hello {
        version: u32,
        cluster_id: String,
        role: PeerRole,
    },
    Welcome {
        node: NodeId,
    },
    Refused {
        reason: NodeRefusal,
    },
}

/// The acceptor's side of a handshake.
#[derive(Debug, PartialEq)]
pub(crate) enum Handshake {
    /// Waiting for the peer's `Hello`.
    AwaitingHello,
    /// The peer is in: messages other than the handshake's may flow.
    Established { role: PeerRole },
    /// The peer was refused; nothing it sends is handled.
    Refused(NodeRefusal),
}

impl Handshake {
    /// Handles the peer's first message; returns the answer to send.
    pub(crate) fn receive(
        &mut self,
        msg: &NodeMessage,
        cluster_id: &str,
        node: NodeId,
    ) -> Option<NodeMessage> {
        if !matches!(self, Handshake::AwaitingHello) {
            return None;
        }
        let refusal = match msg {
            NodeMessage::Hello { version, .. } if *version != PROTOCOL_VERSION => {
                NodeRefusal::WrongVersion {
                    ours: PROTOCOL_VERSION,
                    theirs: *version,
                }
            }
            NodeMessage::Hello {
                cluster_id: theirs, ..
            } if theirs != cluster_id => NodeRefusal::OtherCluster,
            NodeMessage::Hello { role, .. } => {
                *self = Handshake::Established { role: *role };
                return Some(NodeMessage::Welcome { node });
            }
            _ => NodeRefusal::NoHello,
        };
        *self = Handshake::Refused(refusal.clone());
        Some(NodeMessage::Refused { reason: refusal })
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
        }
    }

    #[test]
    fn a_peer_with_the_right_version_and_cluster_is_welcomed_once() {
        let mut h = Handshake::AwaitingHello;
        let answer = h.receive(&hello(PROTOCOL_VERSION, "c1"), "c1", NodeId(4));
        assert_eq!(answer, Some(NodeMessage::Welcome { node: NodeId(4) }));
        assert_eq!(
            h,
            Handshake::Established {
                role: PeerRole::Node
            }
        );
        assert_eq!(
            h.receive(&hello(PROTOCOL_VERSION, "c1"), "c1", NodeId(4)),
            None
        );
    }

    #[test]
    fn wrong_version_other_cluster_and_no_hello_are_refused_saying_which() {
        let cases = [
            (
                hello(PROTOCOL_VERSION + 1, "c1"),
                NodeRefusal::WrongVersion {
                    ours: PROTOCOL_VERSION,
                    theirs: PROTOCOL_VERSION + 1,
                },
            ),
            (hello(PROTOCOL_VERSION, "c2"), NodeRefusal::OtherCluster),
            (
                NodeMessage::Welcome { node: NodeId(1) },
                NodeRefusal::NoHello,
            ),
        ];
        for (msg, want) in cases {
            let mut h = Handshake::AwaitingHello;
            let answer = h.receive(&msg, "c1", NodeId(1));
            assert_eq!(
                answer,
                Some(NodeMessage::Refused {
                    reason: want.clone()
                })
            );
            assert_eq!(h, Handshake::Refused(want.clone()));
            assert!(!want.to_string().is_empty());
        }
        assert!(
            NodeRefusal::WrongVersion { ours: 2, theirs: 3 }
                .to_string()
                .contains("protocol version 3, expected 2")
        );
    }
}
