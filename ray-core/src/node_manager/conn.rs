//! Serving one worker's connection: its first message within a deadline and a few KiB, then
//! its messages in order until the connection ends.
//!
//! The connection is the node's end of the socket pair the worker was started with, so the
//! peer is known before it says anything: the identity step is the socket itself. (A remote
//! peer will authenticate with the cluster token over TLS instead, then be served the same
//! way.) A frame that does not decode is a protocol violation.

use super::runtime::Inner;
use crate::ids::ProcId;
use crate::log;
use crate::protocol::worker::FromWorker;
use crate::transport::{self, HELLO_MAX, HELLO_TIMEOUT, MAX_FROM_WORKER, Outbox};
use std::sync::Weak;

/// Serves worker `proc` over `stream` until the connection ends, then tells the state machine.
pub(super) async fn serve(node: Weak<Inner>, proc: ProcId, stream: std::os::unix::net::UnixStream) {
    let closed = |node: &Weak<Inner>| {
        if let Some(n) = node.upgrade() {
            n.run(|st| st.connection_closed(proc));
        }
    };
    // A second handle on the socket lets senders write small frames directly (see `Outbox`).
    let prepared = stream.set_nonblocking(true).and_then(|_| {
        let direct = stream.try_clone()?;
        let stream = tokio::net::UnixStream::from_std(stream)?;
        Ok((direct, stream))
    });
    let (direct, stream) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let why = format!(
                "could not be served: {}",
                crate::error::Error::io("serving its connection", e)
            );
            log::error!("{proc} {why}");
            if let Some(n) = node.upgrade() {
                n.run(|st| st.connection_failed(proc, why));
            }
            return;
        }
    };
    let (rd, wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let mut buf = Vec::new();
    let hello = tokio::time::timeout(
        HELLO_TIMEOUT,
        transport::read_frame_async(&mut rd, &mut buf, HELLO_MAX),
    )
    .await;
    let hello = match hello {
        Ok(Ok(Some(()))) => transport::decode_frame::<FromWorker>(&buf),
        Ok(Ok(None)) => return closed(&node),
        Ok(Err(e)) => {
            log::warn!("the first message of {proc} was refused: {e}");
            return closed(&node);
        }
        Err(_) => {
            log::warn!("{proc} sent no hello within {HELLO_TIMEOUT:?}; closing its connection");
            return closed(&node);
        }
    };
    let outbox = Outbox::new(direct);
    tokio::spawn(outbox.clone().run_writer(wr));
    let Some(n) = node.upgrade() else { return };
    n.add_connection(proc, crate::transport::Conn::Local(outbox));
    match hello {
        Ok(msg @ FromWorker::Hello { .. }) => n.run(|st| st.handle(proc, msg)),
        _ => n.run(|st| st.violation(proc, "a first message that is not a hello")),
    }
    drop(n);
    loop {
        match transport::read_frame_async(&mut rd, &mut buf, MAX_FROM_WORKER).await {
            Ok(Some(())) => {}
            Ok(None) => break,
            // Its process died in the middle of a frame, or was killed with messages of ours
            // still unread (the kernel then resets the connection).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                break;
            }
            Err(e) => {
                if let Some(n) = node.upgrade() {
                    let what = format!("an unreadable frame ({e})");
                    n.run(|st| st.violation(proc, &what));
                }
                break;
            }
        }
        let Some(n) = node.upgrade() else { return };
        if !dispatch_frame(&n, proc, &mut buf) {
            break;
        }
    }
    closed(&node);
}

/// Hands one frame read from `proc` (a worker or a remote driver) to the state machine; a
/// frame that does not decode is a violation, and false says to stop reading. A buffer grown
/// past 1 MiB by a large frame is given back.
pub(super) fn dispatch_frame(n: &std::sync::Arc<Inner>, proc: ProcId, buf: &mut Vec<u8>) -> bool {
    let go_on = match transport::decode_frame::<FromWorker>(buf) {
        Ok(msg) => {
            n.run(|st| st.handle(proc, msg));
            true
        }
        Err(e) => {
            let what = format!("a message that does not decode ({e})");
            n.run(|st| st.violation(proc, &what));
            false
        }
    };
    if buf.capacity() > 1 << 20 {
        *buf = Vec::new();
    }
    go_on
}
