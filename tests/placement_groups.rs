//! Placement groups (Ray's test_placement_group.py): bundles reserved together, tasks and
//! actors scheduled into them, removal, infeasible groups.

mod common;

use common::*;
use ray::{Bundle, Error, PlacementStrategy};
use std::collections::BTreeMap;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

#[ray::remote]
fn assigned() -> BTreeMap<String, f64> {
    ray::runtime_context()
        .unwrap()
        .assigned_resources()
        .unwrap()
}

#[ray::remote]
fn gpus() -> Vec<usize> {
    ray::get_gpu_ids()
}

#[ray::remote]
fn hold_until_cancelled() -> u32 {
    while !ray::is_cancelled() {
        std::thread::sleep(Duration::from_millis(2));
    }
    1
}

#[ray::remote]
struct InBundle {}

#[ray::remote]
impl InBundle {
    fn new() -> Self {
        InBundle {}
    }
    fn gpus(&self) -> Vec<usize> {
        ray::get_gpu_ids()
    }
}

fn cpu_free() -> f64 {
    ray::available_resources()
        .unwrap()
        .get("CPU")
        .copied()
        .unwrap_or(0.0)
}

/// test_placement_group::test_placement_group_pack / _task_resource_ids: bundles are
/// reserved, tasks run in them with the bundle's resources, removal gives them back.
#[test]
fn bundles_are_reserved_and_tasks_run_in_them() {
    ray::init(ray::Config::default().num_cpus(4).num_gpus(2)).unwrap();
    let pg = ray::placement_group(
        [
            Bundle::new().num_cpus(1).num_gpus(1),
            Bundle::new().num_cpus(2),
        ],
        PlacementStrategy::Pack,
    );
    assert!(pg.wait(LONG).unwrap());
    assert_eq!(pg.bundle_count(), 2);
    assert_eq!(pg.bundle_specs()[0]["GPU"], 1.0);
    let free = ray::available_resources().unwrap();
    assert_eq!(free["CPU"], 1.0);
    assert_eq!(free["GPU"], 1.0);
    let a = ray::get(
        &assigned::options()
            .num_cpus(2)
            .placement_group(&pg, Some(1))
            .remote(),
    )
    .unwrap();
    assert_eq!(a["CPU"], 2.0);
    let g = ray::get(
        &gpus::options()
            .num_cpus(1)
            .num_gpus(1)
            .placement_group(&pg, Some(0))
            .remote(),
    )
    .unwrap();
    assert_eq!(g.len(), 1, "the bundle's GPU");
    let actor = InBundle::options()
        .num_gpus(1)
        .placement_group(&pg, None)
        .remote();
    assert_eq!(
        ray::get(&actor.gpus()).unwrap(),
        g,
        "the same device, reserved for the group"
    );
    drop(actor);
    // Larger than any bundle: infeasible in the group, even though the node could run it.
    let too_big = assigned::options()
        .num_cpus(3)
        .placement_group(&pg, None)
        .remote();
    assert!(
        matches!(ray::get(&too_big), Err(Error::Infeasible { available, .. }) if available.contains("bundle 1"))
    );
    // A bundle index out of range is refused at once.
    let bad = assigned::options().placement_group(&pg, Some(2)).remote();
    assert!(
        matches!(ray::get(&bad), Err(Error::InvalidArgument { message, .. }) if message.contains("out of range"))
    );
    ray::remove_placement_group(&pg).unwrap();
    ray::remove_placement_group(&pg).unwrap();
    assert!(eventually(LONG, || cpu_free() == 4.0));
    let after = assigned::options().placement_group(&pg, Some(0)).remote();
    assert!(
        matches!(ray::get(&after), Err(Error::PlacementGroupRemoved { group, .. }) if group == pg.id())
    );
    ray::shutdown();
}

/// test_placement_group::test_remove_placement_group: what runs in a removed group is
/// stopped, what waits fails; a group waits until it fits.
#[test]
fn removal_stops_what_runs_in_the_group_and_groups_wait_for_room() {
    ray::init(ray::Config::default().num_cpus(2)).unwrap();
    let pg = ray::placement_group([Bundle::new().num_cpus(1)], PlacementStrategy::StrictPack);
    assert!(pg.wait(LONG).unwrap());
    let running = hold_until_cancelled::options()
        .placement_group(&pg, Some(0))
        .remote();
    let waiting = hold_until_cancelled::options()
        .placement_group(&pg, Some(0))
        .remote();
    // The other CPU is busy too: a second group waits for room.
    let outside = hold_until_cancelled::remote();
    let second = ray::placement_group([Bundle::new().num_cpus(1)], PlacementStrategy::Pack);
    assert!(!second.wait(Duration::from_millis(300)).unwrap());
    ray::remove_placement_group(&pg).unwrap();
    for r in [&running, &waiting] {
        assert!(matches!(
            ray::get(r),
            Err(Error::PlacementGroupRemoved { .. })
        ));
    }
    assert!(
        second.wait(LONG).unwrap(),
        "reserved once the first group's CPU came back"
    );
    ray::cancel(&outside).unwrap();
    ray::shutdown();
}

/// test_placement_group::test_placement_group_strict_spread / infeasible groups.
#[test]
fn infeasible_groups_fail_at_once_saying_why() {
    ray::init(ray::Config::default().num_cpus(2).resource("custom", 1.0)).unwrap();
    let spread = ray::placement_group(
        [Bundle::new().num_cpus(1), Bundle::new().num_cpus(1)],
        PlacementStrategy::StrictSpread,
    );
    match ray::get(&spread.ready()) {
        Err(Error::Infeasible {
            name, requested, ..
        }) => {
            assert!(
                name.contains("STRICT_SPREAD") || name.contains("StrictSpread"),
                "{name}"
            );
            assert!(requested.contains("2 different nodes"), "{requested}");
        }
        other => panic!("expected Infeasible, got {other:?}"),
    }
    let one = ray::placement_group([Bundle::new().num_cpus(1)], PlacementStrategy::StrictSpread);
    assert!(one.wait(LONG).unwrap(), "one bundle fits one node");
    let too_much = ray::placement_group(
        [Bundle::new().num_cpus(2), Bundle::new().num_cpus(1)],
        PlacementStrategy::Pack,
    );
    assert!(matches!(too_much.wait(LONG), Err(Error::Infeasible { .. })));
    let unknown = ray::placement_group(
        [Bundle::new().resource("gpu_x", 1)],
        PlacementStrategy::Spread,
    );
    assert!(
        matches!(ray::get(&unknown.ready()), Err(Error::Infeasible { requested, .. }) if requested.contains("gpu_x"))
    );
    let empty = ray::placement_group([], PlacementStrategy::Pack);
    assert!(matches!(
        ray::get(&empty.ready()),
        Err(Error::InvalidArgument { .. })
    ));
    let empty_bundle = ray::placement_group([Bundle::new()], PlacementStrategy::Pack);
    assert!(
        matches!(ray::get(&empty_bundle.ready()), Err(Error::InvalidArgument { message, .. }) if message.contains("bundle 0 is empty"))
    );
    let custom = ray::placement_group(
        [Bundle::new().resource("custom", 0.001)],
        PlacementStrategy::Pack,
    );
    assert!(custom.wait(LONG).unwrap());
    ray::remove_placement_group(&custom).unwrap();
    ray::shutdown();
}
