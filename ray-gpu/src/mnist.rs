//! MNIST in the standard IDX format (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), each either raw or gzip-compressed
//! (`.gz`), plus a `next_batch` iterator like TensorFlow's.
//!
//! Every file is validated: magic number (2051 for images, 2049 for labels), 28x28 images, file
//! length equal to what the header announces, labels 0-9, and as many labels as images. A bad
//! file is an [`Error::Idx`] naming the file and what was expected versus found.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Magic number of an IDX image file (`0x00000803`: unsigned bytes, 3 dimensions).
pub const IMAGE_MAGIC: u32 = 0x0803;
/// Magic number of an IDX label file (`0x00000801`: unsigned bytes, 1 dimension).
pub const LABEL_MAGIC: u32 = 0x0801;
/// Image height and width.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image (784).
pub const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes (digits 0-9).
pub const CLASSES: usize = 10;

/// The MNIST sample shipped with the repository (`examples/data/mnist`: 8,000 training and
/// 2,000 test digits).
pub fn default_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/data/mnist"
    ))
}

/// Labelled images: `len()` images of [`PIXELS`] values in `[0, 1]` (byte / 255), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    images: Vec<f32>,
    labels: Vec<u8>,
}

impl Dataset {
    /// Builds a dataset from pixel values (`labels.len() * PIXELS` of them) and labels.
    pub fn new(images: Vec<f32>, labels: Vec<u8>) -> Result<Dataset> {
        if images.len() != labels.len() * PIXELS {
            return Err(Error::DataLength {
                op: "Dataset::new",
                rows: labels.len(),
                cols: PIXELS,
                expected: labels.len() * PIXELS,
                found: images.len(),
            });
        }
        Ok(Dataset { images, labels })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// All pixels, `len() x PIXELS`, row-major.
    pub fn images(&self) -> &[f32] {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// A batch iterator over this set. `shuffle_seed: None` walks the images in file order and
    /// wraps around; `Some(seed)` walks a fresh permutation each epoch, derived from the seed
    /// and the epoch number (reproducible).
    pub fn batches(&self, shuffle_seed: Option<u64>) -> Batches<'_> {
        self.batches_from(shuffle_seed, BatchPosition::default())
    }

    /// A batch iterator that continues where an earlier one with the same seed stopped (see
    /// [`Batches::position`]): an actor can keep its place between calls.
    pub fn batches_from(&self, shuffle_seed: Option<u64>, position: BatchPosition) -> Batches<'_> {
        let mut b = Batches {
            data: self,
            order: (0..self.len() as u32).collect(),
            pos: position.pos.min(self.len()),
            epoch: position.epoch,
            seed: shuffle_seed,
        };
        b.shuffle();
        b
    }
}

/// Where a [`Batches`] walk is: the epoch and the index within it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchPosition {
    /// Completed passes over the data.
    pub epoch: u64,
    /// Images taken in the current pass.
    pub pos: usize,
}

/// One batch: `len()` images (`len() x PIXELS` values) and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Pixels, row-major.
    pub images: Vec<f32>,
    /// Labels.
    pub labels: Vec<u8>,
}

impl Batch {
    /// Number of images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// TensorFlow-style `next_batch` iterator over a [`Dataset`] (see [`Dataset::batches`]).
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<u32>,
    pos: usize,
    epoch: u64,
    seed: Option<u64>,
}

impl Batches<'_> {
    /// The next `n` images. A batch that runs past the end of an epoch is completed from the
    /// start of the next one (reshuffled when shuffling), so every batch has exactly `n` images.
    /// Returns an empty batch for an empty dataset or `n == 0`.
    pub fn next_batch(&mut self, n: usize) -> Batch {
        let mut batch = Batch {
            images: Vec::with_capacity(n * PIXELS),
            labels: Vec::with_capacity(n),
        };
        if self.data.is_empty() {
            return batch;
        }
        while batch.len() < n {
            if self.pos == self.order.len() {
                self.epoch += 1;
                self.pos = 0;
                self.shuffle();
            }
            let i = self.order[self.pos] as usize;
            batch.images.extend_from_slice(self.data.image(i));
            batch.labels.push(self.data.labels[i]);
            self.pos += 1;
        }
        batch
    }

    /// Completed passes over the data so far.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Where the walk is, to continue it later with [`Dataset::batches_from`].
    pub fn position(&self) -> BatchPosition {
        BatchPosition {
            epoch: self.epoch,
            pos: self.pos,
        }
    }

    fn shuffle(&mut self) {
        let Some(seed) = self.seed else { return };
        let mut rng = SplitMix64(seed ^ self.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.order.sort_unstable();
        // Fisher-Yates.
        for i in (1..self.order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            self.order.swap(i, j);
        }
    }
}

/// SplitMix64: a tiny, good-enough PRNG for shuffling (no `rand` dependency).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The training and test sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist {
    /// `train-images-idx3-ubyte` / `train-labels-idx1-ubyte`.
    pub train: Dataset,
    /// `t10k-images-idx3-ubyte` / `t10k-labels-idx1-ubyte`.
    pub test: Dataset,
}

impl Mnist {
    /// Loads the four IDX files from `dir`, each as `NAME` or `NAME.gz`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        let train = load_set(
            &find(dir, "train-images-idx3-ubyte")?,
            &find(dir, "train-labels-idx1-ubyte")?,
        )?;
        let test = load_set(
            &find(dir, "t10k-images-idx3-ubyte")?,
            &find(dir, "t10k-labels-idx1-ubyte")?,
        )?;
        tracing::debug!(
            dir = %dir.display(),
            train = train.len(),
            test = test.len(),
            "ray-gpu: loaded MNIST"
        );
        Ok(Mnist { train, test })
    }
}

/// `dir/name` if it exists, else `dir/name.gz`, else an error naming both.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(Error::Idx {
        path: raw,
        detail: format!("not found (nor {name}.gz)"),
    })
}

/// Loads an image file and a label file and checks they hold the same number of items.
pub fn load_set(images_path: &Path, labels_path: &Path) -> Result<Dataset> {
    let images = load_images(images_path)?;
    let labels = load_labels(labels_path)?;
    let count = images.len() / PIXELS;
    if labels.len() != count {
        return Err(Error::Idx {
            path: labels_path.to_path_buf(),
            detail: format!(
                "holds {} labels but {} holds {count} images; the counts must match",
                labels.len(),
                images_path.display()
            ),
        });
    }
    Dataset::new(images, labels)
}

/// Reads a whole file, gunzipping it when its name ends in `.gz`.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|err| Error::Idx {
                path: path.to_path_buf(),
                detail: format!("cannot decompress the gzip data: {err}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn check_header(path: &Path, bytes: &[u8], header: usize, magic: u32, what: &str) -> Result<()> {
    if bytes.len() < header {
        return Err(Error::Idx {
            path: path.to_path_buf(),
            detail: format!(
                "is {} bytes, shorter than the {header}-byte IDX {what} header",
                bytes.len()
            ),
        });
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        let hint = match found {
            IMAGE_MAGIC => " (an image file)",
            LABEL_MAGIC => " (a label file)",
            _ => "",
        };
        return Err(Error::Idx {
            path: path.to_path_buf(),
            detail: format!(
                "bad magic number: expected {magic} (0x{magic:08x}, IDX {what}) but found {found} (0x{found:08x}){hint}"
            ),
        });
    }
    Ok(())
}

/// Reads an IDX image file: pixels as f32 in `[0, 1]`, `count x 784`.
pub fn load_images(path: &Path) -> Result<Vec<f32>> {
    let bytes = read_file(path)?;
    check_header(path, &bytes, 16, IMAGE_MAGIC, "images")?;
    let count = be_u32(&bytes, 4) as usize;
    let (rows, cols) = (be_u32(&bytes, 8) as usize, be_u32(&bytes, 12) as usize);
    if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE) {
        return Err(Error::Idx {
            path: path.to_path_buf(),
            detail: format!("images are {rows}x{cols}, expected {IMAGE_SIDE}x{IMAGE_SIDE}"),
        });
    }
    let expected = 16 + count * PIXELS;
    if bytes.len() != expected {
        return Err(Error::Idx {
            path: path.to_path_buf(),
            detail: format!(
                "is {} bytes but its header announces {count} images of 28x28, which need {expected} bytes ({})",
                bytes.len(),
                if bytes.len() < expected {
                    "truncated"
                } else {
                    "trailing data"
                }
            ),
        });
    }
    Ok(bytes[16..].iter().map(|&b| b as f32 / 255.0).collect())
}

/// Reads an IDX label file: one digit 0-9 per image.
pub fn load_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_file(path)?;
    check_header(path, &bytes, 8, LABEL_MAGIC, "labels")?;
    let count = be_u32(&bytes, 4) as usize;
    let expected = 8 + count;
    if bytes.len() != expected {
        return Err(Error::Idx {
            path: path.to_path_buf(),
            detail: format!(
                "is {} bytes but its header announces {count} labels, which need {expected} bytes ({})",
                bytes.len(),
                if bytes.len() < expected {
                    "truncated"
                } else {
                    "trailing data"
                }
            ),
        });
    }
    let labels = bytes[8..].to_vec();
    if let Some(i) = labels.iter().position(|&l| l as usize >= CLASSES) {
        return Err(Error::Idx {
            path: path.to_path_buf(),
            detail: format!("label {} at index {i} is not a digit 0-9", labels[i]),
        });
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(n: usize) -> Dataset {
        let mut images = Vec::new();
        for i in 0..n {
            images.extend(std::iter::repeat_n(i as f32, PIXELS));
        }
        Dataset::new(images, (0..n).map(|i| (i % 10) as u8).collect()).unwrap()
    }

    #[test]
    fn sequential_batches_wrap_around() {
        let data = tiny(5);
        let mut it = data.batches(None);
        assert_eq!(it.next_batch(2).labels, vec![0, 1]);
        assert_eq!(it.next_batch(2).labels, vec![2, 3]);
        let b = it.next_batch(3);
        assert_eq!(b.labels, vec![4, 0, 1]);
        assert_eq!(b.images[PIXELS], 0.0);
        assert_eq!(b.images.len(), 3 * PIXELS);
        assert_eq!(it.epoch(), 1);
    }

    #[test]
    fn shuffled_batches_are_permutations_and_reproducible() {
        let data = tiny(50);
        let mut a = data.batches(Some(7));
        let mut b = data.batches(Some(7));
        let epoch0 = a.next_batch(50).labels;
        assert_eq!(epoch0, b.next_batch(50).labels);
        let epoch1 = a.next_batch(50).labels;
        assert_ne!(epoch0, epoch1, "each epoch gets its own permutation");
        let mut seen: Vec<f32> = Vec::new();
        let mut c = data.batches(Some(7));
        let batch = c.next_batch(50);
        for i in 0..50 {
            seen.push(batch.images[i * PIXELS]);
        }
        seen.sort_by(f32::total_cmp);
        assert_eq!(seen, (0..50).map(|i| i as f32).collect::<Vec<_>>());
        assert_ne!(
            epoch0,
            (0..50).map(|i| (i % 10) as u8).collect::<Vec<_>>(),
            "shuffled order differs from file order"
        );
    }
}
