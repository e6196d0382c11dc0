//! Drivers' executables cached by content hash (SHA-256) under `<temp-dir>/binaries/`.
//!
//! A binary arrives in chunks into a private temporary file, is verified against its expected
//! hash (and size) before it is made executable (0700) and renamed into place under its hex
//! hash. [`BinaryCache::get`] hashes the file again unless it is the very file it last verified,
//! unchanged (same device, inode, length, modification and change times: any write or
//! replacement changes the change time, which only the kernel sets): one whose content no
//! longer matches its name (tampered, corrupted) is refused and removed. (Hashing it on every
//! `get` made a node serving a binary in 4 MiB pieces hash the whole file once per piece.)
//!
//! The cache's total size is bounded: inserting evicts the least recently used binaries, never
//! one in use (a [`PinnedBinary`] is alive for it), and the uploads under way are bounded
//! together. The directory is 0700 and owned by this user.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ring::digest;

use crate::error::{CliError, Result};
use crate::tempdir::ensure_private_dir;

/// A SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Sha256(out)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Sha256(out))
    }
}

#[derive(Debug)]
struct Entry {
    size: u64,
    last_used: u64,
    pins: usize,
    /// The file as it was when its content last matched its hash.
    verified: Option<Stamp>,
}

/// What identifies a file's content without reading it, short of its owner changing the clock
/// back and the change time with it (which takes root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Sha256, Entry>,
    clock: u64,
    total: u64,
    /// Bytes announced by the uploads under way (their `.part` files count on the disk too).
    uploading: u64,
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// The cache of one node.
#[derive(Debug, Clone)]
pub struct BinaryCache {
    dir: PathBuf,
    max_bytes: u64,
    state: Arc<Mutex<State>>,
    /// Files hashed by `get` so far (the tests check that an unchanged file is hashed once).
    hashed: Arc<std::sync::atomic::AtomicU64>,
}

/// A cached, verified binary, kept from eviction while this value lives.
#[derive(Debug)]
pub struct PinnedBinary {
    /// Where it is (run this path).
    pub path: PathBuf,
    /// Its hash.
    pub hash: Sha256,
    state: Arc<Mutex<State>>,
}

impl Drop for PinnedBinary {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = st.entries.get_mut(&self.hash) {
            e.pins = e.pins.saturating_sub(1);
        }
    }
}

/// A binary being received.
pub struct Upload {
    cache: BinaryCache,
    hash: Sha256,
    size: u64,
    written: u64,
    ctx: digest::Context,
    file: Option<File>,
    tmp: PathBuf,
    _counted: PendingUpload,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("hash", &self.hash.to_hex())
            .field("size", &self.size)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

fn hash_file(path: &Path) -> Result<(Sha256, u64)> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        ctx.update(&buf[..n]);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok((Sha256(out), total))
}

impl BinaryCache {
    /// Opens (creating it 0700) the cache in `dir`, bounded to `max_bytes`; binaries already
    /// there are indexed (oldest modification first in the LRU order), leftover partial
    /// uploads removed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self> {
        ensure_private_dir(dir)?;
        let mut found = Vec::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| CliError::io(format!("listing {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| CliError::io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let meta = entry
                .metadata()
                .map_err(|e| CliError::io(format!("examining {name}"), e))?;
            match Sha256::from_hex(&name) {
                Some(hash) if meta.is_file() => found.push((meta.mtime(), hash, meta.len())),
                _ => {
                    if name.ends_with(".part") && meta.is_file() {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        found.sort();
        let mut state = State::default();
        for (_, hash, size) in found {
            let t = state.tick();
            state.total = state.total.saturating_add(size);
            state.entries.insert(
                hash,
                Entry {
                    size,
                    last_used: t,
                    pins: 0,
                    verified: None,
                },
            );
        }
        Ok(BinaryCache {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Arc::new(Mutex::new(state)),
            hashed: Default::default(),
        })
    }

    fn path_of(&self, hash: &Sha256) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    /// Bytes held.
    pub fn total_bytes(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// The cached binary with this hash, verified now, or `None` when not cached. A file whose
    /// content does not match is removed and reported as [`CliError::Tampered`].
    pub fn get(&self, hash: &Sha256) -> Result<Option<PinnedBinary>> {
        if !self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .contains_key(hash)
        {
            return Ok(None);
        }
        let path = self.path_of(hash);
        // Pin first, so it is not evicted while it is verified.
        let pinned = self.pin(hash, path.clone());
        let meta = std::fs::symlink_metadata(&path);
        let check = match &meta {
            Ok(m) if !m.file_type().is_file() => Err("not a regular file".to_string()),
            Ok(m) if m.uid() != ray_net::token::effective_uid() => {
                Err("owned by another user".to_string())
            }
            Ok(m) if m.mode() & 0o022 != 0 => Err("writable by others".to_string()),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                drop(pinned);
                self.forget(hash);
                return Ok(None);
            }
            Err(e) => Err(e.to_string()),
        };
        let stamp = meta.as_ref().ok().map(Stamp::of);
        let unchanged = check.is_ok()
            && stamp.is_some()
            && self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entries
                .get(hash)
                .is_some_and(|e| e.verified == stamp);
        let actual = match check {
            Ok(()) if unchanged => *hash,
            Ok(()) => {
                self.hashed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let actual = hash_file(&path)?.0;
                if actual == *hash {
                    // The stamp was read before hashing: a write during it changes the change
                    // time, so the next `get` hashes again.
                    let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(e) = st.entries.get_mut(hash) {
                        e.verified = stamp;
                    }
                }
                actual
            }
            Err(reason) => {
                tracing::warn!("cached binary {}: {reason}", path.display());
                Sha256([0; 32])
            }
        };
        if actual != *hash {
            drop(pinned);
            self.forget(hash);
            let _ = std::fs::remove_file(&path);
            return Err(CliError::Tampered {
                hash: hash.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(Some(pinned))
    }

    fn pin(&self, hash: &Sha256, path: PathBuf) -> PinnedBinary {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let t = st.tick();
        if let Some(e) = st.entries.get_mut(hash) {
            e.pins += 1;
            e.last_used = t;
        }
        PinnedBinary {
            path,
            hash: *hash,
            state: self.state.clone(),
        }
    }

    fn forget(&self, hash: &Sha256) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = st.entries.remove(hash) {
            st.total = st.total.saturating_sub(e.size);
        }
    }

    /// Starts receiving a binary of `size` bytes whose SHA-256 must be `hash`.
    pub fn begin(&self, hash: Sha256, size: u64) -> Result<Upload> {
        if size > self.max_bytes {
            return Err(CliError::Cache(format!(
                "a binary of {size} bytes exceeds the cache's limit of {} bytes",
                self.max_bytes
            )));
        }
        {
            // Uploads under way are bounded together, not one at a time: N sessions each
            // announcing the limit would otherwise fill the disk with partial files.
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.uploading.saturating_add(size) > self.max_bytes {
                return Err(CliError::Cache(format!(
                    "a binary of {size} bytes does not fit beside the {} bytes of uploads under \
                     way (the cache's limit is {} bytes); try again when they are done",
                    st.uploading, self.max_bytes
                )));
            }
            st.uploading += size;
        }
        let upload = PendingUpload {
            cache: self.clone(),
            size,
        };
        let mut nonce = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| CliError::Net(ray_net::NetError::Random))?;
        let tmp = self.dir.join(format!(
            "{}.{}.part",
            hash.to_hex(),
            nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| CliError::io(format!("creating {}", tmp.display()), e))?;
        Ok(Upload {
            cache: self.clone(),
            hash,
            size,
            written: 0,
            ctx: digest::Context::new(&digest::SHA256),
            file: Some(file),
            tmp,
            _counted: upload,
        })
    }

    /// Evicts least recently used, unpinned binaries until `incoming` more bytes fit.
    fn make_room(&self, st: &mut State, incoming: u64) -> Result<()> {
        while st.total.saturating_add(incoming) > self.max_bytes {
            let victim = st
                .entries
                .iter()
                .filter(|(_, e)| e.pins == 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(h, _)| *h);
            let Some(victim) = victim else {
                return Err(CliError::Cache(format!(
                    "no room for {incoming} bytes: {} bytes of {} are binaries in use",
                    st.total, self.max_bytes
                )));
            };
            if let Some(e) = st.entries.remove(&victim) {
                st.total = st.total.saturating_sub(e.size);
            }
            let _ = std::fs::remove_file(self.path_of(&victim));
            tracing::info!("binary cache: evicted {}", victim.to_hex());
        }
        Ok(())
    }
}

impl Upload {
    /// Appends a chunk; fails when the chunks exceed the announced size.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        let next = self
            .written
            .checked_add(chunk.len() as u64)
            .filter(|n| *n <= self.size)
            .ok_or_else(|| {
                CliError::Cache(format!("more than the announced {} bytes", self.size))
            })?;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| CliError::Cache("upload already finished".into()))?;
        file.write_all(chunk)
            .map_err(|e| CliError::io(format!("writing {}", self.tmp.display()), e))?;
        self.ctx.update(chunk);
        self.written = next;
        Ok(())
    }

    /// Verifies size and hash, makes the file executable (0700) and puts it in place; returns
    /// it pinned.
    pub fn finish(mut self) -> Result<PinnedBinary> {
        if self.written != self.size {
            return Err(CliError::Cache(format!(
                "received {} of {} bytes",
                self.written, self.size
            )));
        }
        let ctx = std::mem::replace(&mut self.ctx, digest::Context::new(&digest::SHA256));
        let mut actual = [0u8; 32];
        actual.copy_from_slice(ctx.finish().as_ref());
        let actual = Sha256(actual);
        if actual != self.hash {
            return Err(CliError::HashMismatch {
                expected: self.hash.to_hex(),
                actual: actual.to_hex(),
            });
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| CliError::Cache("upload already finished".into()))?;
        file.sync_all()
            .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| CliError::io(format!("finishing {}", self.tmp.display()), e))?;
        drop(file);
        let cache = self.cache.clone();
        let dest = cache.path_of(&self.hash);
        {
            let mut st = cache.state.lock().unwrap_or_else(|e| e.into_inner());
            if !st.entries.contains_key(&self.hash) {
                cache.make_room(&mut st, self.size)?;
                st.total = st.total.saturating_add(self.size);
                let t = st.tick();
                st.entries.insert(
                    self.hash,
                    Entry {
                        size: self.size,
                        last_used: t,
                        pins: 0,
                        verified: None,
                    },
                );
            }
            std::fs::rename(&self.tmp, &dest)
                .map_err(|e| CliError::io(format!("renaming into {}", dest.display()), e))?;
        }
        Ok(cache.pin(&self.hash, dest))
    }
}

/// An upload's share of the bytes of uploads under way, given back when it ends either way.
struct PendingUpload {
    cache: BinaryCache,
    size: u64,
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        let mut st = self.cache.state.lock().unwrap_or_else(|e| e.into_inner());
        st.uploading = st.uploading.saturating_sub(self.size);
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // An unfinished or refused upload leaves nothing behind (after a successful rename
        // the temporary name no longer exists).
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ray-cli-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn store(cache: &BinaryCache, bytes: &[u8]) -> Result<PinnedBinary> {
        let mut up = cache.begin(Sha256::of(bytes), bytes.len() as u64)?;
        for chunk in bytes.chunks(7) {
            up.write_chunk(chunk)?;
        }
        up.finish()
    }

    #[test]
    fn stores_verifies_and_refuses_tampered() {
        let d = dir("basic");
        let cache = BinaryCache::open(&d, 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        let bin = b"#!/bin/sh\necho hi\n".to_vec();
        let pinned = store(&cache, &bin).unwrap();
        assert_eq!(
            std::fs::metadata(&pinned.path).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(std::fs::read(&pinned.path).unwrap(), bin);
        let out = std::process::Command::new(&pinned.path).output().unwrap();
        assert_eq!(out.stdout, b"hi\n");
        let again = cache.get(&Sha256::of(&bin)).unwrap().unwrap();
        assert_eq!(again.path, pinned.path);
        // Verified once, then trusted while the file is unchanged (a node serving a binary
        // in pieces asks for it once per piece).
        let hashed = cache.hashed.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(hashed, 1);
        for _ in 0..10 {
            cache.get(&Sha256::of(&bin)).unwrap().unwrap();
        }
        assert_eq!(
            cache.hashed.load(std::sync::atomic::Ordering::Relaxed),
            hashed
        );
        // Tamper: same name, other content.
        std::fs::write(&pinned.path, b"#!/bin/sh\necho evil\n").unwrap();
        let err = cache.get(&Sha256::of(&bin)).unwrap_err();
        assert!(matches!(err, CliError::Tampered { .. }), "{err}");
        assert!(!pinned.path.exists());
        assert!(cache.get(&Sha256::of(&bin)).unwrap().is_none());
        assert_eq!(cache.total_bytes(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_wrong_hash_and_oversize_and_leaves_nothing() {
        let d = dir("wrong");
        let cache = BinaryCache::open(&d, 100).unwrap();
        let mut up = cache.begin(Sha256::of(b"expected"), 5).unwrap();
        up.write_chunk(b"other").unwrap();
        assert!(matches!(up.finish(), Err(CliError::HashMismatch { .. })));
        let mut up = cache.begin(Sha256::of(b"abc"), 3).unwrap();
        assert!(up.write_chunk(b"abcd").is_err());
        drop(up);
        let mut up = cache.begin(Sha256::of(b"abc"), 3).unwrap();
        up.write_chunk(b"ab").unwrap();
        assert!(up.finish().is_err());
        assert!(cache.begin(Sha256::of(b"x"), 101).is_err());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn uploads_under_way_are_bounded_together() {
        let d = dir("concurrent");
        let cache = BinaryCache::open(&d, 100).unwrap();
        let first = cache.begin(Sha256::of(b"a"), 70).unwrap();
        let err = cache.begin(Sha256::of(b"b"), 70).unwrap_err();
        assert!(err.to_string().contains("uploads under way"), "{err}");
        let small = cache.begin(Sha256::of(b"c"), 30).unwrap();
        drop(first);
        let second = cache.begin(Sha256::of(b"b"), 70).unwrap();
        drop((small, second));
        assert_eq!(cache.state.lock().unwrap().uploading, 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn evicts_least_recently_used_but_never_a_pinned_binary() {
        let d = dir("lru");
        let cache = BinaryCache::open(&d, 30).unwrap();
        let a = vec![b'a'; 10];
        let b = vec![b'b'; 10];
        let c = vec![b'c'; 10];
        let pa = store(&cache, &a).unwrap(); // stays pinned
        drop(store(&cache, &b).unwrap());
        drop(store(&cache, &c).unwrap());
        drop(cache.get(&Sha256::of(&b)).unwrap()); // b is now more recent than c
        let dbytes = vec![b'd'; 10];
        drop(store(&cache, &dbytes).unwrap()); // evicts c (a pinned, b recent)
        assert!(cache.get(&Sha256::of(&c)).unwrap().is_none());
        assert!(cache.get(&Sha256::of(&a)).unwrap().is_some());
        assert_eq!(cache.total_bytes(), 30);
        // Everything pinned: no room.
        let pins: Vec<_> = [&b, &dbytes]
            .iter()
            .map(|x| cache.get(&Sha256::of(x)).unwrap().unwrap())
            .collect();
        assert!(matches!(
            store(&cache, &[b'e'; 10]),
            Err(CliError::Cache(_))
        ));
        drop(pins);
        drop(pa);
        // Reopening indexes what is there.
        let reopened = BinaryCache::open(&d, 30).unwrap();
        assert_eq!(reopened.total_bytes(), 30);
        assert!(reopened.get(&Sha256::of(&a)).unwrap().is_some());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
