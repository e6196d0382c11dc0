//! Writes a starting corpus for `node_messages` (one valid message of each type from each
//! worker) and `frame_reader` (the same messages as frames) into the given directory.

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("corpus directory"));
    for target in ["node_messages", "frame_reader"] {
        std::fs::create_dir_all(dir.join(target)).expect("corpus directory");
    }
    for (i, seed) in ray_core::__private::testing::fuzz_seeds().iter().enumerate() {
        std::fs::write(dir.join("node_messages").join(format!("seed-{i}")), seed).unwrap();
        let body = &seed[3..];
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(body);
        std::fs::write(dir.join("frame_reader").join(format!("seed-{i}")), frame).unwrap();
    }
}
