//! Calls with several return values and streaming calls sent to a peer: one `Get` for all
//! values; a stream's next items asked of the peer and borrowed for the caller; the call's
//! object there let go exactly once; a lost peer failing the stream.

use super::*;
use crate::node_manager::control::Answer;
use crate::protocol::worker::{Control, ControlReply, StreamItem};

/// A node whose peer has room for `ssd` tasks, and such a task of the driver's, edited by
/// `edit`, submitted here: it went to the peer. Returns what was sent there.
fn sent_to_peer(h: &mut Harness, edit: impl FnOnce(&mut TaskSpec)) -> (ObjectId, Vec<FromWorker>) {
    let mut spec = h.ssd_task();
    edit(&mut spec);
    let t = h.submit(DRIVER, spec);
    let sent = h.sent_to_node(PEER);
    assert!(
        sent.iter()
            .any(|m| matches!(m, FromWorker::SubmitTask(s) if s.task == t)),
        "sent to the peer: {sent:?}"
    );
    (t, sent)
}

fn with_peer() -> Harness {
    let mut h = Harness::in_cluster(cpus(4));
    h.peer_publishes(
        PEER,
        &[("CPU", 2.0), ("ssd", 1.0)],
        &[("CPU", 2.0), ("ssd", 1.0)],
    );
    h
}

/// An id made by a process of `node` (`ids.rs`: node, process, counter).
fn made_by(node: NodeId, i: u64) -> ObjectId {
    ObjectId(((node.0 as u128) << 96) | (9 << 64) | i as u128)
}

/// The driver asks for item `index` of stream `t`: the slot its answer fills.
fn ask_next(h: &mut Harness, t: ObjectId, index: u64) -> Arc<Slot<Result<ControlReply, Error>>> {
    let slot = Arc::new(Slot::new());
    let op = Control::StreamNext {
        generator: t,
        index,
    };
    h.with(|st| st.control(DRIVER, Answer::Local(slot.clone()), op))
        .expect("allowed");
    slot
}

/// The request by which item `index` of `t` was asked of the peer.
fn asked_of_peer(h: &mut Harness, t: ObjectId, index: u64) -> u64 {
    h.sent_to_node(PEER)
        .iter()
        .find_map(|m| match m {
            FromWorker::Control {
                req,
                op:
                    Control::StreamNext {
                        generator,
                        index: i,
                    },
            } if *generator == t && *i == index => Some(*req),
            _ => None,
        })
        .unwrap_or_else(|| panic!("item {index} was not asked of the peer"))
}

/// The driver asks for item `index` of `t`, which is asked of the peer and not answered
/// before the peer answers: the slot, and the request to the peer.
fn ask_of_peer(
    h: &mut Harness,
    t: ObjectId,
    index: u64,
) -> (Arc<Slot<Result<ControlReply, Error>>>, u64) {
    let slot = ask_next(h, t, index);
    let req = asked_of_peer(h, t, index);
    assert!(slot.try_take().is_none(), "answered before the peer did");
    (slot, req)
}

/// The peer answers a `StreamNext`.
fn peer_gives(h: &mut Harness, req: u64, item: StreamItem) {
    h.with(|st| {
        st.peer_reply(
            PEER,
            ToWorker::ControlReply {
                req,
                result: Ok(ControlReply::Item(item)),
            },
        )
    })
}

/// How many times `sent` lets `id` go.
fn released(sent: &[FromWorker], id: ObjectId) -> usize {
    sent.iter()
        .filter(|m| matches!(m, FromWorker::DelRef(RefId::Object(o)) if *o == id))
        .count()
}

#[test]
fn a_task_with_several_returns_runs_on_a_peer_and_all_its_values_come_back_in_one_get() {
    let mut h = with_peer();
    let get_of_all = |sent: &[FromWorker], t: ObjectId| {
        let all = vec![t, t.nth_return(1), t.nth_return(2)];
        sent.iter()
            .find_map(|m| match m {
                FromWorker::Get { req, ids, .. } if *ids == all => Some(*req),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Get for all three values in {sent:?}"))
    };
    let reply = |h: &mut Harness, req: u64, values: Vec<Value>| {
        h.with(|st| {
            st.peer_reply(
                PEER,
                ToWorker::GetReply {
                    req,
                    result: Ok(values),
                },
            )
        })
    };
    let (t, sent) = sent_to_peer(&mut h, |s| s.ext.returns.extra = 2);
    reply(
        &mut h,
        get_of_all(&sent, t),
        vec![value(10), value(11), value(12)],
    );
    assert_eq!(
        (0..3)
            .map(|i| h.value_of(t.nth_return(i)))
            .collect::<Vec<_>>(),
        [Some(10), Some(11), Some(12)]
    );
    // All three came inline, so the peer may let each go.
    let released: Vec<ObjectId> = h
        .sent_to_node(PEER)
        .iter()
        .filter_map(|m| match m {
            FromWorker::DelRef(RefId::Object(o)) => Some(*o),
            _ => None,
        })
        .collect();
    assert_eq!(released, [t, t.nth_return(1), t.nth_return(2)]);

    // A reply with another number of values than asked for fails them all, saying so.
    // (The API gives a call's other values the ids after its own: skip them here too.)
    h.id_of(DRIVER);
    h.id_of(DRIVER);
    let (t, sent) = sent_to_peer(&mut h, |s| s.ext.returns.extra = 2);
    reply(&mut h, get_of_all(&sent, t), vec![value(1), value(2)]);
    for i in 0..3 {
        match h.failed(t.nth_return(i)) {
            Some(Error::InvalidArgument { message, .. }) => {
                assert!(message.contains("2 values for 3 objects"), "{message}")
            }
            other => panic!("value {i}: expected InvalidArgument, got {other:?}"),
        }
    }
}

#[test]
fn a_streaming_task_runs_on_a_peer_which_its_callers_next_items_are_asked_of() {
    let mut h = with_peer();
    let (t, sent) = sent_to_peer(&mut h, |s| s.ext.returns.stream = Some(4));
    let result_req = Harness::result_request(&sent, t);
    // The caller's next item is asked of the peer, and answered when the peer answers.
    let (slot, req) = ask_of_peer(&mut h, t, 0);
    let item = made_by(PEER, 1);
    peer_gives(&mut h, req, StreamItem::Ref(item));
    assert!(matches!(
        slot.try_take(),
        Some(Ok(ControlReply::Item(StreamItem::Ref(i)))) if i == item
    ));
    // The item is the peer's: borrowed here for the caller, its value asked of the peer.
    let value_req = Harness::result_request(&h.sent_to_node(PEER), item);
    h.peer_answers(PEER, value_req, Ok(value(5)));
    assert_eq!(h.value_of(item), Some(5));

    // An item the peer did not make is refused.
    let (slot, req) = ask_of_peer(&mut h, t, 1);
    peer_gives(&mut h, req, StreamItem::Ref(made_by(NodeId(3), 2)));
    assert!(matches!(
        slot.try_take(),
        Some(Err(Error::InvalidArgument { .. }))
    ));

    // The call ends: the peer keeps its stream (this node does not let the call's object go
    // there), and the caller's next item is still asked there.
    h.peer_answers(PEER, result_req, Ok(value(0)));
    assert_eq!(
        released(&h.sent_to_node(PEER), t),
        0,
        "the call's object let go at the peer while its items may still be taken"
    );
    let (slot, req) = ask_of_peer(&mut h, t, 1);
    peer_gives(&mut h, req, StreamItem::End);
    assert!(matches!(
        slot.try_take(),
        Some(Ok(ControlReply::Item(StreamItem::End)))
    ));
    // The caller drops the generator: the peer is told, once.
    h.with(|st| st.del_ref(DRIVER, RefId::Object(t)))
        .expect("held");
    let sent = h.sent_to_node(PEER);
    assert_eq!(released(&sent, t), 1, "{sent:?}");
}

#[test]
fn a_stream_dropped_before_its_call_ends_is_told_so_there_and_its_object_let_go_once() {
    let mut h = with_peer();
    let (t, sent) = sent_to_peer(&mut h, |s| s.ext.returns.stream = Some(2));
    let result_req = Harness::result_request(&sent, t);
    let (_unanswered, next_req) = ask_of_peer(&mut h, t, 0);
    // Dropped while the call runs there: the call's object stays there (this node's `Get`
    // of the result waits on it); the stream there is told, so its producer goes on.
    h.with(|st| st.del_ref(DRIVER, RefId::Object(t)))
        .expect("held");
    let sent = h.sent_to_node(PEER);
    assert!(
        sent.iter().any(|m| matches!(
            m,
            FromWorker::Control { op: Control::StreamDropped { generator }, .. } if *generator == t
        )),
        "{sent:?}"
    );
    assert_eq!(
        released(&sent, t),
        0,
        "let go while this node's Get waits on it: {sent:?}"
    );
    // The answer to the ask made before: nobody takes the item now, so its hold goes back.
    let item = made_by(PEER, 1);
    peer_gives(&mut h, next_req, StreamItem::Ref(item));
    assert!(
        h.st.objects.get(item).is_none(),
        "no entry for an unwanted item"
    );
    let sent = h.sent_to_node(PEER);
    assert_eq!(released(&sent, item), 1, "{sent:?}");
    // The result comes: now the call's object is let go there, once.
    h.peer_answers(PEER, result_req, Ok(value(0)));
    let sent = h.sent_to_node(PEER);
    assert_eq!(released(&sent, t), 1, "{sent:?}");
    assert_eq!(h.st.generators.len(), 0, "nothing left of the stream here");
}

#[test]
fn a_stream_whose_node_is_lost_fails_and_does_not_run_again() {
    let mut h = with_peer();
    let (t, _) = sent_to_peer(&mut h, |s| {
        s.ext.returns.stream = Some(4);
        s.max_retries = 3;
    });
    let waiting = ask_next(&mut h, t, 0);
    assert!(waiting.try_take().is_none(), "asked of the peer");
    h.with(|st| st.peer_unreachable(PEER, "connection reset"));
    assert!(matches!(
        waiting.try_take(),
        Some(Ok(ControlReply::Item(StreamItem::Failed)))
    ));
    assert!(
        matches!(h.failed(t), Some(Error::NodeDied { .. })),
        "not run again (a retry would leave it pending here): {:?}",
        h.state(t)
    );
    let later = ask_next(&mut h, t, 0);
    assert!(matches!(
        later.try_take(),
        Some(Ok(ControlReply::Item(StreamItem::Failed)))
    ));
}

#[test]
fn a_peer_may_ask_for_or_drop_only_the_streams_of_its_own_calls() {
    let mut h = with_peer();
    // A stream of the driver's, running here.
    let mut spec = h.task(DRIVER, "m::gen", vec![]);
    spec.ext.returns.stream = Some(2);
    let t = h.submit(DRIVER, spec);
    let session = h.peer_attaches(PEER);
    for op in [
        Control::StreamNext {
            generator: t,
            index: 0,
        },
        Control::StreamDropped { generator: t },
    ] {
        let refused =
            h.with(|st| st.handle_peer(session, PEER, FromWorker::Control { req: 1, op }));
        assert!(
            refused.is_err(),
            "a peer took or dropped a stream it does not own"
        );
    }
    assert_eq!(h.st.generators.len(), 1, "the driver's stream is untouched");
    let slot = ask_next(&mut h, t, 0);
    assert!(slot.try_take().is_none(), "still waits for its first item");
}
