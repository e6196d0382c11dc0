//! The node manager's frame reader and message decoder on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ray_core::__private::testing::fuzz_frames(data);
});
