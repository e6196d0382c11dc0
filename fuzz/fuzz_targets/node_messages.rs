//! The node manager's state machine under arbitrary messages from its connected workers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut node = ray_core::__private::testing::NodeFuzzer::new();
    node.feed(data);
});
