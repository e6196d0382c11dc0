//! A data session's replies as the requesting node reads them: bytes land only where a pull
//! asked, and a reply announcing other than what was asked ends the session unread.

use super::*;
use crate::codec;

fn new_link() -> (DataLink, crate::transport::OutboxRx) {
    let (outbox, rx) = StreamOutbox::new();
    let link = DataLink {
        outbox,
        next: AtomicU64::new(1),
        waiting: Mutex::new(Some(HashMap::new())),
        stop: tokio::sync::Notify::new(),
    };
    (link, rx)
}

fn fetch(req: u64) -> DataRequest {
    DataRequest::Fetch {
        req,
        id: ObjectId(1),
        offset: 0,
        len: 0,
    }
}

/// A reply's header frame.
fn header(req: u64, result: std::result::Result<u64, String>) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_frame(&DataReply::Bytes { req, result }, &mut out).unwrap();
    out
}

/// A 1 MiB store, a pull of 100 bytes at offset 4096 in it, and where its one chunk goes.
fn pull_of_100() -> (Arena, Arc<PullTarget>, Sink) {
    let arena = Arena::create(1 << 20).unwrap();
    let target = PullTarget::new(4096, 100).unwrap();
    let sink = Sink::Store {
        target: target.clone(),
        offset: 4096,
    };
    (arena, target, sink)
}

fn stored(arena: &Arena, offset: u64, len: u64) -> Vec<u8> {
    // SAFETY: the test's own store; nothing writes it while the slice lives.
    unsafe { arena.slice(offset, len) }.to_vec()
}

#[tokio::test]
async fn a_chunk_is_read_straight_into_the_store_where_its_pull_asked() {
    let arena = Arena::create(1 << 20).unwrap();
    let target = PullTarget::new(8192 + PAD, 6000).unwrap();
    let (link, _requests) = new_link();
    let first = Sink::Store {
        target: target.clone(),
        offset: 8192 + PAD,
    };
    let second = Sink::Store {
        target: target.clone(),
        offset: 8192 + PAD + 4000,
    };
    let a = link.ask(4000, first, fetch).unwrap();
    let b = link.ask(2000, second, fetch).unwrap();
    let mut wire = header(1, Ok(4000));
    wire.extend(std::iter::repeat_n(7u8, 4000));
    wire.extend(header(2, Ok(2000)));
    wire.extend(std::iter::repeat_n(9u8, 2000));
    let why = read_data_replies(&link, &arena, &wire[..]).await;
    assert!(why.contains("closed"), "{why}");
    assert!(matches!(a.await, Ok(Ok(Received::Stored(4000)))));
    assert!(matches!(b.await, Ok(Ok(Received::Stored(2000)))));
    assert_eq!(stored(&arena, 8192 + PAD, 4000), vec![7u8; 4000]);
    assert_eq!(stored(&arena, 8192 + PAD + 4000, 2000), vec![9u8; 2000]);
    assert_eq!(stored(&arena, 8192, PAD), vec![0u8; PAD as usize]);
}

#[tokio::test]
async fn a_reply_announcing_more_than_asked_ends_the_session_without_reading_or_allocating() {
    let arena = Arena::create(1 << 20).unwrap();
    let target = PullTarget::new(4096, 100).unwrap();
    for (asked, sink) in [
        (
            100,
            Sink::Store {
                target: target.clone(),
                offset: 4096,
            },
        ),
        (100, Sink::Memory),
    ] {
        let (link, _requests) = new_link();
        let reply = link.ask(asked, sink, fetch).unwrap();
        // 2^40 bytes announced; a few follow.
        let mut wire = header(1, Ok(1 << 40));
        wire.extend([1u8; 64]);
        let why = read_data_replies(&link, &arena, &wire[..]).await;
        assert!(why.contains("announced 1099511627776 bytes, 100"), "{why}");
        match reply.await {
            Ok(Err(e)) => assert!(e.contains("announced"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(stored(&arena, 4096, 100), vec![0u8; 100]);
}

#[tokio::test]
async fn a_chunk_shorter_than_asked_or_a_reply_to_nothing_asked_ends_the_session() {
    let (arena, _target, sink) = pull_of_100();
    let (link, _requests) = new_link();
    let reply = link.ask(100, sink, fetch).unwrap();
    let mut wire = header(1, Ok(50));
    wire.extend([1u8; 50]);
    let why = read_data_replies(&link, &arena, &wire[..]).await;
    assert!(why.contains("announced 50 bytes, 100"), "{why}");
    assert!(matches!(reply.await, Ok(Err(_))));

    let (link, _requests) = new_link();
    let why = read_data_replies(&link, &arena, &header(5, Ok(10))[..]).await;
    assert!(why.contains("not asked"), "{why}");
    assert_eq!(stored(&arena, 4096, 100), vec![0u8; 100]);
}

#[tokio::test]
async fn bytes_for_an_ended_pull_are_skipped_and_the_next_reply_still_read() {
    let (arena, target, sink) = pull_of_100();
    let (link, _requests) = new_link();
    let abandoned = link.ask(100, sink, fetch).unwrap();
    drop(abandoned);
    let piece = link.ask(10, Sink::Memory, fetch).unwrap();
    let refused = link.ask(10, Sink::Memory, fetch).unwrap();
    close_target(&target, None).await;
    let mut wire = header(1, Ok(100));
    wire.extend([3u8; 100]);
    wire.extend(header(2, Ok(4)));
    wire.extend(b"abcd");
    wire.extend(header(3, Err("not here".into())));
    let why = read_data_replies(&link, &arena, &wire[..]).await;
    assert!(why.contains("closed"), "{why}");
    assert_eq!(stored(&arena, 4096, 100), vec![0u8; 100]);
    match piece.await {
        Ok(Ok(Received::Bytes(b))) => assert_eq!(b, b"abcd"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(refused.await.unwrap().unwrap_err(), "not here");
}

#[tokio::test]
async fn a_chunk_cut_short_by_the_connection_leaves_its_request_unanswered() {
    let (arena, _target, sink) = pull_of_100();
    let (link, _requests) = new_link();
    let reply = link.ask(100, sink, fetch).unwrap();
    let mut wire = header(1, Ok(100));
    wire.extend([3u8; 60]);
    let why = read_data_replies(&link, &arena, &wire[..]).await;
    assert!(!why.is_empty());
    link.fail_all();
    assert!(
        reply.await.is_err(),
        "the pull sees a broken session and resumes"
    );
}

#[test]
fn a_target_holds_only_its_own_range() {
    let t = PullTarget::new(4096, 100).unwrap();
    assert!(t.holds(4096, 100));
    assert!(t.holds(4100, 96));
    assert!(!t.holds(4095, 10));
    assert!(!t.holds(4100, 97));
    assert!(!t.holds(u64::MAX, 2));
    assert!(PullTarget::new(u64::MAX, 2).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_request_never_answered_fails_after_the_wait_and_shuts_the_session() {
    let (link, _requests) = new_link();
    let (_arena, _target, sink) = pull_of_100();
    let asked = link.ask(100, sink, fetch).unwrap();
    let started = tokio::time::Instant::now();
    let err = link.answer(asked).await.unwrap_err();
    assert!(err.to_string().contains("no answer in 180 s"), "{err}");
    assert_eq!(started.elapsed(), DATA_WAIT);
    assert!(
        tokio::time::timeout(std::time::Duration::ZERO, link.stop.notified())
            .await
            .is_ok(),
        "the session was shut"
    );
}
