//! `u32`-LE length-prefixed frames over tokio streams.
//!
//! A frame is a 4-byte little-endian length followed by that many payload bytes. Readers check
//! the announced length against a maximum before reading anything else, and then grow the
//! payload buffer only as bytes actually arrive (in steps of at most [`READ_STEP`] bytes), so a
//! peer announcing 4 GiB and sending nothing makes the reader hold a few KiB, not 4 GiB.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::NetError;

/// The largest frame accepted before a peer is authenticated (handshake messages).
pub const HANDSHAKE_MAX_FRAME: usize = 4096;

/// The default maximum frame after the handshake: 256 MiB. Callers choose their own.
pub const DEFAULT_MAX_FRAME: usize = 256 << 20;

/// The most bytes the payload buffer grows by before they have arrived.
pub const READ_STEP: usize = 64 << 10;

/// Reads one frame of at most `max` payload bytes. A clean end of stream before the frame is
/// an error ([`NetError::Closed`]); use [`read_frame_or_eof`] where that is normal.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, NetError> {
    read_frame_or_eof(reader, max)
        .await?
        .ok_or(NetError::Closed {
            during: "before a frame",
        })
}

/// Reads one frame of at most `max` payload bytes, or `None` when the stream ends cleanly at a
/// frame boundary.
pub async fn read_frame_or_eof<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, NetError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        let n = reader
            .read(&mut header[got..])
            .await
            .map_err(|e| NetError::io("reading a frame header", e))?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(NetError::Closed {
                during: "inside a frame header",
            });
        }
        got += n;
    }
    let announced = u32::from_le_bytes(header);
    let len = usize::try_from(announced).map_err(|_| NetError::FrameTooLarge {
        len: u64::from(announced),
        max,
    })?;
    if len > max {
        return Err(NetError::FrameTooLarge {
            len: u64::from(announced),
            max,
        });
    }
    let mut payload = Vec::with_capacity(len.min(READ_STEP));
    while payload.len() < len {
        let remaining = len - payload.len();
        payload.reserve(remaining.min(READ_STEP));
        let step = remaining.min(payload.capacity() - payload.len());
        let mut limited = (&mut *reader).take(step as u64);
        let n = limited
            .read_buf(&mut payload)
            .await
            .map_err(|e| NetError::io("reading a frame", e))?;
        if n == 0 {
            return Err(NetError::Closed {
                during: "inside a frame",
            });
        }
    }
    Ok(Some(payload))
}

/// Writes one frame (length prefix and payload) and flushes the writer.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
) -> Result<(), NetError> {
    let len = u32::try_from(payload.len()).map_err(|_| NetError::FrameTooLarge {
        len: payload.len() as u64,
        max: u32::MAX as usize,
    })?;
    writer
        .write_all(&len.to_le_bytes())
        .await
        .map_err(|e| NetError::io("writing a frame header", e))?;
    writer
        .write_all(payload)
        .await
        .map_err(|e| NetError::io("writing a frame", e))?;
    writer
        .flush()
        .await
        .map_err(|e| NetError::io("flushing a frame", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let big = vec![7u8; 300_000];
        let writer = tokio::spawn(async move {
            write_frame(&mut a, b"hello").await.unwrap();
            write_frame(&mut a, &[]).await.unwrap();
            write_frame(&mut a, &big).await.unwrap();
            a.write_all(&100u32.to_le_bytes()).await.unwrap();
        });
        assert_eq!(read_frame(&mut b, 10).await.unwrap(), b"hello");
        assert_eq!(read_frame(&mut b, 10).await.unwrap(), b"");
        assert_eq!(read_frame(&mut b, 300_000).await.unwrap().len(), 300_000);
        let err = read_frame(&mut b, 99).await.unwrap_err();
        assert!(
            matches!(err, NetError::FrameTooLarge { len: 100, max: 99 }),
            "{err}"
        );
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn eof_at_boundary_and_inside() {
        let (mut a, mut b) = tokio::io::duplex(64);
        write_frame(&mut a, b"x").await.unwrap();
        a.write_all(&[5, 0]).await.unwrap();
        drop(a);
        assert_eq!(read_frame_or_eof(&mut b, 8).await.unwrap().unwrap(), b"x");
        assert!(matches!(
            read_frame_or_eof(&mut b, 8).await,
            Err(NetError::Closed { .. })
        ));
        let (a, mut b) = tokio::io::duplex(64);
        drop(a);
        assert!(read_frame_or_eof(&mut b, 8).await.unwrap().is_none());
    }
}
