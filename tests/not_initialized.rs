//! Calls without `ray::init`, and after `ray::shutdown` (its own test binary with one test: a
//! runtime is per process, and in a binary with other tests another test's `init` could start
//! a runtime between this one's `shutdown` and its checks).

use ray::Error;

#[ray::remote]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[ray::remote]
struct Thing {}

#[ray::remote]
impl Thing {
    fn new() -> Self {
        Thing {}
    }
    fn ping(&self) -> u8 {
        1
    }
}

#[test]
fn calls_before_init_say_not_initialized_and_after_shutdown_shut_down() {
    let r = add::remote(1, 2);
    match ray::get(&r) {
        Err(Error::NotInitialized { detail }) => assert!(
            detail.contains("`.remote(..)` call made while ray was not running"),
            "the detail says why: {detail:?}"
        ),
        other => panic!("expected NotInitialized, got {other:?}"),
    }
    match ray::put(1) {
        Err(e @ Error::NotInitialized { .. }) => {
            let text = e.to_string();
            assert!(text.contains("call `ray::init"), "{text}");
            assert!(text.contains("before `ray::init`"), "{text}");
        }
        other => panic!("expected NotInitialized, got {other:?}"),
    }
    let t = Thing::remote();
    assert!(matches!(
        ray::get(&t.ping()),
        Err(Error::NotInitialized { .. })
    ));
    assert!(!ray::is_initialized());

    ray::init(ray::Config::default().num_cpus(1)).unwrap();
    assert!(ray::is_initialized());
    let r = add::remote(1, 2);
    assert_eq!(ray::get(&r).unwrap(), 3);
    ray::shutdown();
    let err = ray::get(&r).unwrap_err();
    assert!(matches!(err, Error::ShutDown { .. }), "{err:?}");
    assert!(err.to_string().contains("ray::shutdown"), "{err}");
    assert!(matches!(ray::put(1u8), Err(Error::ShutDown { .. })));
    assert!(matches!(
        ray::runtime_context(),
        Err(Error::ShutDown { .. })
    ));
    assert!(!ray::is_initialized());
}
