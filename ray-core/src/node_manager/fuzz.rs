//! The node manager's state machine under arbitrary messages from authenticated peers (the
//! `node_messages` fuzz target, feature `testing`): whatever a worker sends, the node must not
//! panic, and a message it may not send must not touch another process's objects.

use super::effects::Effect;
use super::state::{NodeState, Settings};
use super::store::{SpillDir, Store};
use crate::codec;
use crate::ids::{JobId, NodeId, ObjectId, ProcId};
use crate::object_store::Arena;
use crate::protocol::worker::{Control, FromWorker};
use crate::protocol::{Arg, PROTOCOL_VERSION, TaskSpec};
use crate::resources::{Amount, NodeResources, ResourceRequest};
use std::sync::Arc;

const NODE: NodeId = NodeId(1);
const FINGERPRINT: u64 = 7;

/// A node with three connected fake workers, fed messages decoded from fuzz input.
pub struct NodeFuzzer {
    st: NodeState,
    workers: Vec<ProcId>,
    /// An object of the driver's that no worker may change.
    guarded: ObjectId,
}

impl Default for NodeFuzzer {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeFuzzer {
    /// A node with its fake workers connected and a few tasks queued.
    pub fn new() -> NodeFuzzer {
        let arena = Arc::new(Arena::create(1 << 20).expect("memfd"));
        let spill = SpillDir::new(&std::env::temp_dir()).expect("spill root");
        let settings = Settings {
            max_idle_workers: 4,
            can_detect_gpus: false,
        };
        let resources = NodeResources::new(4, 1, &[("x".into(), Amount::ONE)]);
        let mut st = NodeState::new(NODE, settings, resources, Store::new(arena, spill));
        let driver = ProcId::driver(NODE);
        let job = JobId::of_driver(driver);
        st.add_job(job, "/bin/false".into(), FINGERPRINT, Some(driver));
        let guarded = ObjectId(((NODE.0 as u128) << 96) | 1);
        st.put(
            driver,
            guarded,
            Ok(codec::encode(&42u64).expect("encodes").value),
        );
        st.prestart(job, 3);
        let mut workers = Vec::new();
        for e in std::mem::take(&mut st.effects) {
            if let Effect::StartWorker { proc, .. } = e {
                workers.push(proc);
            }
        }
        for (i, w) in workers.iter().enumerate() {
            st.handle(
                *w,
                FromWorker::Hello {
                    version: PROTOCOL_VERSION,
                    fingerprint: FINGERPRINT,
                    pid: 100 + i as u32,
                },
            );
        }
        for i in 0..3u64 {
            let task = ObjectId(((NODE.0 as u128) << 96) | (10 + i as u128));
            st.submit_task(
                driver,
                TaskSpec {
                    task,
                    job,
                    function: "f".into(),
                    args: vec![Arg::Ref(guarded)],
                    resources: ResourceRequest {
                        cpu: Amount::ONE,
                        ..Default::default()
                    },
                    max_retries: 1,
                    ext: Default::default(),
                },
            );
        }
        st.effects.clear();
        NodeFuzzer {
            st,
            workers,
            guarded,
        }
    }

    /// Feeds one input: a sequence of `[peer: u8][len: u16][bincode FromWorker]`, with a few
    /// peer codes for process events instead of messages.
    pub fn feed(&mut self, mut data: &[u8]) {
        while data.len() >= 3 {
            let peer = data[0];
            let len = u16::from_le_bytes([data[1], data[2]]) as usize;
            data = &data[3..];
            let body = &data[..len.min(data.len())];
            data = &data[body.len()..];
            let w = self.workers[peer as usize % self.workers.len()];
            match peer / 16 {
                0..=11 => {
                    if let Ok(msg) = crate::transport::decode_frame::<FromWorker>(body) {
                        self.st.handle(w, msg);
                    }
                }
                12 => self.st.connection_closed(w),
                13 => self
                    .st
                    .process_exited(w, "was killed by signal 9 (SIGKILL)".into()),
                14 => self.st.exit_grace_over(w),
                _ => self.st.begin_shutdown(),
            }
            self.st.effects.clear();
        }
        let intact = match self.st.objects.get(self.guarded).map(|e| &e.state) {
            Some(super::objects::ObjState::Ready(v)) => v.decode::<u64>().ok() == Some(42),
            _ => false,
        };
        assert!(intact, "a worker changed the driver's object");
    }
}

fn control(req: u64, op: Control) -> FromWorker {
    FromWorker::Control { req, op }
}

/// Valid inputs to start fuzzing from: one per message type, from each worker.
pub fn fuzz_seeds() -> Vec<Vec<u8>> {
    use crate::ids::{ActorId, PlacementGroupId, RefId};
    use crate::protocol::{ActorExt, ActorName, ActorSpec, PlacementGroupSpec};
    let f = NodeFuzzer::new();
    let mut seeds = Vec::new();
    for (i, w) in f.workers.iter().enumerate() {
        let mine = ObjectId(((w.node.0 as u128) << 96) | ((w.index as u128) << 64) | 5);
        let v = codec::encode(&1u64).expect("encodes").value;
        let msgs = vec![
            FromWorker::Put {
                id: mine,
                result: Ok(v.clone()),
            },
            FromWorker::TaskDone {
                task: ObjectId(((NODE.0 as u128) << 96) | 10),
                result: Ok(v.clone()),
            },
            FromWorker::Get {
                req: 1,
                ids: vec![f.guarded],
                timeout_ms: Some(5),
            },
            FromWorker::Wait {
                req: 2,
                ids: vec![f.guarded, mine],
                num_returns: 1,
                timeout_ms: None,
            },
            FromWorker::Alloc { req: 3, size: 5000 },
            FromWorker::AddRef(RefId::Object(f.guarded)),
            FromWorker::DelRef(RefId::Object(f.guarded)),
            FromWorker::Release(vec![f.guarded]),
            FromWorker::KillActor {
                actor: ActorId(mine.0),
            },
            FromWorker::CancelGet { req: 1 },
            FromWorker::TaskReturns {
                task: ObjectId(((NODE.0 as u128) << 96) | 10),
                result: Ok(vec![v.clone(), v.clone()]),
            },
            FromWorker::Yield {
                req: 4,
                task: ObjectId(((NODE.0 as u128) << 96) | 10),
                index: 0,
                item: mine,
                value: v.clone(),
            },
            control(
                5,
                Control::Cancel {
                    task: f.guarded,
                    force: true,
                    recursive: true,
                },
            ),
            control(
                6,
                Control::StreamNext {
                    generator: f.guarded,
                    index: 0,
                },
            ),
            control(7, Control::Escape(RefId::Object(f.guarded))),
            control(8, Control::Resources),
            control(9, Control::AssignedResources),
            control(10, Control::ListNamedActors { namespace: None }),
            control(
                11,
                Control::GetActor {
                    name: ActorName {
                        namespace: String::new(),
                        name: "a".into(),
                    },
                    class: "C".into(),
                },
            ),
            control(
                12,
                Control::KillActor {
                    actor: ActorId(mine.0),
                    no_restart: false,
                },
            ),
            control(
                13,
                Control::CreatePlacementGroup(PlacementGroupSpec {
                    id: PlacementGroupId(mine.0 + 1),
                    ready: ObjectId(mine.0 + 2),
                    bundles: vec![ResourceRequest {
                        cpu: Amount::ONE,
                        ..Default::default()
                    }],
                    strategy: crate::placement::PlacementStrategy::Pack,
                    name: String::new(),
                }),
            ),
            control(
                14,
                Control::RemovePlacementGroup(PlacementGroupId(mine.0 + 1)),
            ),
            control(
                15,
                Control::CreateNamedActor(Box::new(ActorSpec {
                    actor: ActorId(mine.0 + 3),
                    job: JobId::of_driver(ProcId::driver(NODE)),
                    class: "C".into(),
                    args: vec![],
                    resources: ResourceRequest::default(),
                    max_concurrency: 1,
                    max_restarts: 0,
                    invalid: None,
                    ext: ActorExt {
                        name: Some(Box::new(ActorName {
                            namespace: String::new(),
                            name: "a".into(),
                        })),
                        get_if_exists: true,
                        max_task_retries: 1,
                        detached: false,
                    },
                })),
            ),
        ];
        for m in msgs {
            let mut frame = Vec::new();
            codec::encode_frame(&m, &mut frame).expect("encodes");
            let body = &frame[4..];
            let mut seed = vec![i as u8];
            seed.extend_from_slice(&(body.len() as u16).to_le_bytes());
            seed.extend_from_slice(body);
            seeds.push(seed);
        }
    }
    seeds
}
