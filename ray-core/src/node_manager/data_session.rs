//! Another node's data session: bytes of stored objects and of cached executables, asked for
//! by offset and length (`DataRequest`) and written straight from this node's store, under a
//! progress rule so a peer that stops reading cannot keep an object held. The session is set up
//! by [`super::remote::serve_session`]; the requesting side is `data_links.rs`.

use super::remote::{BINARY_CHUNK, BinaryStore, send};
use super::runtime::Inner;
use crate::codec;
use crate::log;
use crate::protocol::node::NodeMessage;
use crate::transport::{self, HELLO_MAX};
use std::sync::{Arc, Weak};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Serves another node's data session: bytes of stored objects and of cached executables.
/// Each reply is a small header frame ([`DataReply`](crate::protocol::node::DataReply)) and
/// then the bytes themselves, written to the connection straight from this node's store (the
/// object is counted as read meanwhile, so it is neither freed nor spilled): no copy on the
/// way but TLS's own encryption.
pub(super) async fn serve_data<S>(
    node: Weak<Inner>,
    mut stream: S,
    peer: crate::ids::NodeId,
    store: Arc<dyn BinaryStore>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use crate::protocol::node::{DATA_ERROR_MAX, DataReply, DataRequest};
    let Some(n) = node.upgrade() else { return };
    let welcome = NodeMessage::Welcome {
        node: n.node_id(),
        proc: None,
        job: None,
        received: 0,
    };
    drop(n);
    if send(&mut stream, &welcome).await.is_err() {
        return;
    }
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let mut buf = Vec::new();
    let mut header = Vec::new();
    while let Ok(Some(())) = transport::read_frame_async(&mut rd, &mut buf, HELLO_MAX).await {
        let Ok(request) = codec::decode_frame::<DataRequest>(&buf) else {
            log::warn!("{peer} sent a data request that does not decode");
            break;
        };
        let Some(n) = node.upgrade() else { return };
        let (req, source) = match request {
            DataRequest::Fetch {
                req,
                id,
                offset,
                len,
            } => (req, PeerSlice::open(n, id, offset, len)),
            DataRequest::FetchBinary {
                req,
                sha256,
                offset,
                len,
            } => {
                drop(n);
                let read = read_binary(&*store, &sha256, offset, len);
                (req, read.map(PeerSlice::Owned))
            }
        };
        let result = match &source {
            Ok(s) => Ok(s.bytes().len() as u64),
            Err(e) => Err(cut(e, DATA_ERROR_MAX)),
        };
        header.clear();
        if codec::encode_frame(&DataReply::Bytes { req, result }, &mut header).is_err() {
            break;
        }
        let body = source.as_ref().map(|s| s.bytes()).unwrap_or_default();
        if let Err(e) = write_reply(&mut wr, &header, body, DATA_STALL).await {
            if e.kind() == std::io::ErrorKind::TimedOut {
                log::warn!("{peer} stopped reading its data session: {e}; closing it");
            }
            break;
        }
        if !body.is_empty()
            && let Some(n) = node.upgrade()
        {
            n.count_served(body.len() as u64);
        }
        // The object is held for the peer only while its bytes are being written.
        drop(source);
    }
}

/// How long a peer may take to accept [`STALL_MIN_BYTES`] more of a data reply before its
/// data session is closed, and the object it asked for no longer held for it. A live node reads at network
/// speed; only one that stopped reading (paused, wedged, or hostile) gets here. A transfer
/// cut this way resumes on a new session if its node is still there.
const DATA_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Fewer bytes than this accepted within [`DATA_STALL`] is a stall: a peer that stopped
/// reading may still let a few bytes through now and then (its kernel reopens the window a
/// little), or read a byte a minute on purpose. (`ray_net::STALL_MIN_BYTES`, the driver's.)
const STALL_MIN_BYTES: usize = 64 * 1024;

/// Writes one data reply (its header frame, then its bytes) and flushes it, failing with
/// `TimedOut` once the peer has accepted under [`STALL_MIN_BYTES`] in `stall`: a deadline on
/// progress, not on the whole reply, so a large reply to a slow but reading peer still goes
/// out. One timer per reply, moved on only when it fires (a timer per write costs bandwidth).
async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    header: &[u8],
    body: &[u8],
    stall: std::time::Duration,
) -> std::io::Result<()> {
    use tokio::time::Instant;
    let deadline = tokio::time::sleep(stall);
    tokio::pin!(deadline);
    // When STALL_MIN_BYTES last moved (or the reply began), and what moved since.
    let (mut mark, mut moved) = (Instant::now(), 0);
    let mut parts = [header, body];
    let mut part = 0;
    let mut flushed = false;
    while !flushed {
        tokio::select! {
            biased;
            done = async {
                match parts.get_mut(part) {
                    Some([]) => part += 1,
                    Some(rest) => match w.write(rest).await? {
                        0 => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                        n => {
                            *rest = &rest[n..];
                            moved += n;
                        }
                    },
                    None => {
                        w.flush().await?;
                        flushed = true;
                    }
                }
                Ok::<(), std::io::Error>(())
            } => {
                done?;
                if moved >= STALL_MIN_BYTES {
                    (mark, moved) = (Instant::now(), 0);
                }
            }
            () = &mut deadline => {
                if mark.elapsed() >= stall {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "it accepted under {} KiB in {} s",
                            STALL_MIN_BYTES / 1024,
                            stall.as_secs_f64()
                        ),
                    ));
                }
                deadline.as_mut().reset(mark + stall);
            }
        }
    }
    Ok(())
}

/// `text`, cut to at most `max` bytes (at a character boundary).
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Bytes another node asked for.
enum PeerSlice {
    /// Of an object of this node: counted as read by peers (so it stays allocated, sealed and
    /// in memory) until this is dropped.
    Object {
        node: Arc<Inner>,
        id: crate::ids::ObjectId,
        source: super::store::PeerRead,
        /// The bytes asked for: offsets into `source`.
        offset: u64,
        len: u64,
    },
    /// Read out of a file (a cached executable).
    Owned(bytes::Bytes),
}

impl PeerSlice {
    /// `len` bytes of object `id`'s value from `offset`, if this node has them.
    fn open(
        node: Arc<Inner>,
        id: crate::ids::ObjectId,
        offset: u64,
        len: u64,
    ) -> std::result::Result<PeerSlice, String> {
        let source = node.run(|st| st.read_for_peer(id))?;
        let total = match &source {
            super::store::PeerRead::Inline(bytes) => bytes.len() as u64,
            super::store::PeerRead::Stored { len, .. } => *len,
        };
        let inline = matches!(source, super::store::PeerRead::Inline(_));
        let mut slice = PeerSlice::Object {
            node,
            id,
            source,
            offset,
            len,
        };
        // On error the slice drops, which ends the read `read_for_peer` counted.
        let range = peer_range(total, offset, len, inline)?;
        if let PeerSlice::Object { offset, len, .. } = &mut slice {
            (*offset, *len) = range;
        }
        Ok(slice)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            PeerSlice::Owned(b) => b,
            PeerSlice::Object {
                source: super::store::PeerRead::Inline(b),
                offset,
                len,
                ..
            } => &b[*offset as usize..(*offset + *len) as usize],
            PeerSlice::Object {
                node,
                source: super::store::PeerRead::Stored { start, .. },
                offset,
                len,
                ..
            } => {
                // SAFETY: `read_for_peer` counted a reader on the object, so its region stays
                // allocated, sealed (unwritten) and in memory until `read_done` in `drop`, and
                // `open` checked that the range lies inside the object.
                unsafe { node.arena().slice(start + offset, *len) }
            }
        }
    }
}

/// The bytes `offset..+len` a peer asked of a `total`-byte value, checked: they must lie in
/// it (an inline value's are cut to what there is instead, as a value may be inline on one node
/// and stored on another).
fn peer_range(
    total: u64,
    offset: u64,
    len: u64,
    inline: bool,
) -> std::result::Result<(u64, u64), String> {
    if inline {
        let start = offset.min(total);
        return Ok((start, len.min(total - start)));
    }
    match offset.checked_add(len) {
        Some(end) if end <= total => Ok((offset, len)),
        _ => Err(format!("bytes {offset}..+{len} of a {total}-byte object")),
    }
}

impl Drop for PeerSlice {
    fn drop(&mut self) {
        if let PeerSlice::Object { node, id, .. } = self {
            let id = *id;
            node.run(|st| st.read_done(id));
        }
    }
}

/// `len` bytes of a cached executable from `offset`.
fn read_binary(
    store: &dyn BinaryStore,
    sha256: &[u8; 32],
    offset: u64,
    len: u64,
) -> Result<bytes::Bytes, String> {
    use std::io::{Read, Seek};
    let found = store
        .find(sha256)?
        .ok_or("this node does not have that executable")?;
    let mut f = std::fs::File::open(&found.path).map_err(|e| e.to_string())?;
    f.seek(std::io::SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(len.min(BINARY_CHUNK as u64) as usize);
    f.take(len.min(BINARY_CHUNK as u64))
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(bytes::Bytes::from(out))
}

#[cfg(test)]
mod write_reply_tests {
    use super::write_reply;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    const STALL: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_cut_off_after_the_stall_limit() {
        // The peer reads the first 64 KiB (the pipe's capacity), then nothing more.
        let (mut ours, _peer) = tokio::io::duplex(64 * 1024);
        let body = vec![7u8; 4 << 20];
        let start = tokio::time::Instant::now();
        let err = write_reply(&mut ours, b"header", &body, STALL)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(
            err.to_string().contains("accepted under 64 KiB in 60 s"),
            "{err}"
        );
        let waited = start.elapsed();
        assert!(waited >= STALL && waited < STALL * 2, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_a_trickle_is_cut_off_too() {
        // After the pipe's 64 KiB, 1 KiB every 10 s: 6 KiB a minute, under the least that
        // counts as progress.
        let (mut ours, mut peer) = tokio::io::duplex(64 * 1024);
        let trickle = tokio::spawn(async move {
            let mut buf = vec![0u8; 1024];
            loop {
                tokio::time::sleep(STALL / 6).await;
                if peer.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        });
        let start = tokio::time::Instant::now();
        let err = write_reply(&mut ours, b"header", &vec![7u8; 4 << 20], STALL)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        let waited = start.elapsed();
        assert!(waited >= STALL && waited < STALL * 2, "{waited:?}");
        drop(ours);
        trickle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_peer_that_keeps_reading_gets_the_whole_reply() {
        // 4 MiB through a 64 KiB pipe, 64 KiB every half stall limit: 64 stall limits in all,
        // but never one without progress.
        let (mut ours, mut peer) = tokio::io::duplex(64 * 1024);
        let body: Vec<u8> = (0..4u32 << 20).map(|i| i as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                tokio::time::sleep(STALL / 2).await;
                match peer.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let start = tokio::time::Instant::now();
        write_reply(&mut ours, b"header", &body, STALL)
            .await
            .unwrap();
        drop(ours);
        assert!(start.elapsed() > STALL * 30, "{:?}", start.elapsed());
        let got = reader.await.unwrap();
        assert_eq!(&got[..6], b"header");
        assert!(got[6..] == body[..], "every byte, in order");
    }

    #[tokio::test]
    async fn a_closed_peer_fails_the_write_at_once() {
        let (mut ours, peer) = tokio::io::duplex(1024);
        drop(peer);
        let err = write_reply(&mut ours, b"header", &[1; 10], STALL)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    }
}

#[cfg(test)]
mod peer_range_tests {
    use super::peer_range;

    #[test]
    fn a_peer_gets_only_bytes_inside_the_object_it_names() {
        assert_eq!(peer_range(100, 0, 100, false), Ok((0, 100)));
        assert_eq!(peer_range(100, 90, 10, false), Ok((90, 10)));
        assert!(peer_range(100, 90, 11, false).is_err());
        assert!(peer_range(100, u64::MAX, 2, false).is_err(), "no overflow");
        assert!(peer_range(0, 0, 1, false).is_err());
        assert_eq!(peer_range(100, 90, 50, true), Ok((90, 10)), "inline: cut");
        assert_eq!(peer_range(100, u64::MAX, 5, true), Ok((100, 0)));
    }
}
