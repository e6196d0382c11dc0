//! The IDX loader on the shipped sample and on crafted bad files.

use std::io::Write;
use std::path::{Path, PathBuf};

use ray_gpu::mnist::{self, Mnist, PIXELS};

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut out,
    )
    .unwrap();
    out
}

/// A fresh directory under the system temp dir holding the raw (un-gzipped) sample files,
/// for tests to damage.
fn raw_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ray-gpu-mnist-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in FILES {
        let bytes = gunzip(&mnist::default_dir().join(format!("{f}.gz")));
        std::fs::write(dir.join(f), bytes).unwrap();
    }
    dir
}

fn error_of(dir: &Path) -> String {
    let err = Mnist::load(dir).expect_err("loading a damaged set must fail");
    let _ = std::fs::remove_dir_all(dir);
    err.to_string()
}

#[test]
fn loads_the_shipped_sample() {
    let data = Mnist::load(mnist::default_dir()).unwrap();
    assert_eq!(data.train.len(), 8_000);
    assert_eq!(data.test.len(), 2_000);
    assert_eq!(data.train.images().len(), 8_000 * PIXELS);
    assert_eq!(data.test.images().len(), 2_000 * PIXELS);
    let pixels = data.train.images();
    assert!(pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
    assert!(pixels.contains(&1.0) && pixels.contains(&0.0));
    for set in [&data.train, &data.test] {
        let mut seen = [0usize; 10];
        for &l in set.labels() {
            seen[l as usize] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 100),
            "every digit occurs: {seen:?}"
        );
    }
    // The raw (not gzipped) form of the same files loads to the same data.
    let dir = raw_copy("raw");
    let raw = Mnist::load(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(raw, data);
}

#[test]
fn truncated_image_file_is_an_error() {
    let dir = raw_copy("truncated");
    let path = dir.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = error_of(&dir);
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    assert!(
        err.contains(&format!(
            "is {} bytes but its header announces 8000 images of 28x28, which need {} bytes (truncated)",
            bytes.len() - 100,
            bytes.len()
        )),
        "{err}"
    );
}

#[test]
fn truncated_gzip_is_an_error() {
    let dir = raw_copy("truncated-gz");
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let gz = std::fs::read(mnist::default_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), &gz[..gz.len() / 2]).unwrap();
    let err = error_of(&dir);
    assert!(err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");
    assert!(err.contains("cannot decompress the gzip data"), "{err}");
}

#[test]
fn wrong_magic_is_an_error() {
    let dir = raw_copy("magic");
    // A label file where the images should be.
    std::fs::copy(
        dir.join("t10k-labels-idx1-ubyte"),
        dir.join("t10k-images-idx3-ubyte"),
    )
    .unwrap();
    let err = error_of(&dir);
    assert!(err.contains("t10k-images-idx3-ubyte"), "{err}");
    assert!(
        err.contains(
            "bad magic number: expected 2051 (0x00000803, IDX images) but found 2049 (0x00000801) (a label file)"
        ),
        "{err}"
    );
}

#[test]
fn mismatched_counts_are_an_error() {
    let dir = raw_copy("counts");
    // A well-formed label file with one label fewer than there are images.
    let path = dir.join("train-labels-idx1-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&[0, 0, 8, 1]).unwrap();
    f.write_all(&7_999u32.to_be_bytes()).unwrap();
    f.write_all(&bytes[8..bytes.len() - 1]).unwrap();
    drop(f);
    let err = error_of(&dir);
    assert!(err.contains("train-labels-idx1-ubyte"), "{err}");
    assert!(
        err.contains("holds 7999 labels but")
            && err.contains("holds 8000 images; the counts must match"),
        "{err}"
    );
}

#[test]
fn wrong_image_size_and_missing_files_are_errors() {
    let dir = raw_copy("size");
    let path = dir.join("train-images-idx3-ubyte");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[11] = 27; // rows = 27
    std::fs::write(&path, &bytes).unwrap();
    let err = error_of(&dir);
    assert!(err.contains("images are 27x28, expected 28x28"), "{err}");

    let dir = raw_copy("missing");
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let err = error_of(&dir);
    assert!(
        err.contains("t10k-labels-idx1-ubyte: not found (nor t10k-labels-idx1-ubyte.gz)"),
        "{err}"
    );
}

#[test]
fn a_walk_can_be_resumed_where_it_stopped() {
    let images: Vec<f32> = (0..10 * ray_gpu::mnist::PIXELS)
        .map(|i| (i / ray_gpu::mnist::PIXELS) as f32)
        .collect();
    let labels: Vec<u8> = (0..10).collect();
    let data = ray_gpu::mnist::Dataset::new(images, labels).unwrap();
    for seed in [None, Some(7)] {
        let mut whole = data.batches(seed);
        let expected: Vec<Vec<u8>> = (0..7).map(|_| whole.next_batch(3).labels).collect();
        let mut first = data.batches(seed);
        let mut got: Vec<Vec<u8>> = (0..4).map(|_| first.next_batch(3).labels).collect();
        let mut second = data.batches_from(seed, first.position());
        got.extend((0..3).map(|_| second.next_batch(3).labels));
        assert_eq!(got, expected, "seed {seed:?}");
    }
}
