//! The node's shared-memory object store (Ray's plasma), for objects too large to inline.
//!
//! One `memfd` per runtime holds every large object. The node manager creates it, sized to the
//! store's capacity (sparse: pages exist only where objects are), and each worker inherits it at
//! spawn. Every process maps it **read-only**; writers copy an object in with `pwrite` into a
//! region the node manager allocated for them, then *seal* it by sending the `Put`/`TaskDone`
//! that names the region. Only then do readers learn where it is, so they never see a partial
//! object, and since no process has a writable mapping, nothing can scribble over a sealed one.
//! Reading is zero-copy: a slice of the mapping.
//!
//! The allocator is first-fit over 64-byte aligned regions with coalescing. Freed regions are
//! punched out of the file (`FALLOC_FL_PUNCH_HOLE`), which gives the memory back. When an
//! allocation does not fit, the node manager spills referenced objects that nobody is reading
//! to files in the spill directory and restores them on `get`.

use crate::codec::{Data, Value};
use crate::context::Client;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, RwLock};

/// Alignment of regions: enough for any `bytemuck::Pod` element and a cache line.
pub(crate) const ALIGN: u64 = 64;
/// Where the data of a `Vec<T: Pod>` starts inside its region is aligned to this.
pub(crate) const DATA_ALIGN: u64 = 16;

/// Objects of this size or larger go to the store (Ray inlines up to 100 KiB).
pub(crate) const DEFAULT_INLINE_MAX: usize = 100 * 1024;

/// A process's handle on the store file: a read-only mapping, plus the fd to `pwrite` into.
pub(crate) struct Arena {
    fd: OwnedFd,
    capacity: u64,
    base: *const u8,
}

// SAFETY: the mapping is shared and read-only for the life of the `Arena`; the pointer is only
// used to build slices of sealed regions, which nobody writes while they are readable (the node
// manager only reuses a region after the object in it is freed, and pins objects while they are
// being read), so sharing it between threads is sound.
unsafe impl Send for Arena {}
// SAFETY: see above; `&Arena` only hands out shared slices of immutable regions.
unsafe impl Sync for Arena {}

fn os_err(context: &str) -> Error {
    Error::io(context, std::io::Error::last_os_error())
}

impl Arena {
    /// Creates the store file (node manager side).
    pub(crate) fn create(capacity: u64) -> Result<Arena> {
        let name = c"ray-rs-object-store";
        // SAFETY: `name` is a valid NUL-terminated string; MFD_CLOEXEC keeps the fd out of
        // unrelated children (the spawner clears it for workers only).
        let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(os_err("creating the object store (memfd_create)"));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `fd` is a valid memfd; a failed ftruncate leaves it unchanged.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), capacity as libc::off_t) } != 0 {
            return Err(os_err("sizing the object store (ftruncate)"));
        }
        Self::map(fd, capacity)
    }

    /// Maps an inherited store file (worker side).
    pub(crate) fn open(raw: RawFd, capacity: u64) -> Result<Arena> {
        // SAFETY: the node manager passed this fd to us at spawn; this process owns it now.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: setting FD_CLOEXEC on a valid fd so this worker's own children do not inherit it.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        Self::map(fd, capacity)
    }

    fn map(fd: OwnedFd, capacity: u64) -> Result<Arena> {
        let len = capacity.max(1) as usize;
        // SAFETY: a new shared read-only mapping of `len` bytes of a valid fd, at an address the
        // kernel picks; MAP_NORESERVE because the file is sparse.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os_err("mapping the object store (mmap)"));
        }
        Ok(Arena { fd, capacity, base: ptr as *const u8 })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The bytes at `[offset, offset + len)`.
    ///
    /// Callers only ask for sealed regions of objects they hold pinned (see the module docs), so
    /// the bytes do not change while the slice lives.
    pub(crate) fn slice(&self, offset: u64, len: u64) -> &[u8] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.capacity), "object store range out of bounds");
        // SAFETY: the range is inside the mapping (checked above), the mapping lives as long as
        // `self`, and sealed regions are immutable while readable.
        unsafe { std::slice::from_raw_parts(self.base.add(offset as usize), len as usize) }
    }

    /// Copies `parts`, one after the other, to `offset` (a region allocated to this writer and
    /// not sealed yet).
    pub(crate) fn write(&self, mut offset: u64, parts: &[&[u8]]) -> Result<()> {
        for part in parts {
            let mut done = 0usize;
            while done < part.len() {
                let chunk = &part[done..];
                // SAFETY: `chunk` is a valid readable buffer of `chunk.len()` bytes; pwrite copies
                // it into the file at an offset inside its size.
                let n = unsafe {
                    libc::pwrite(
                        self.fd.as_raw_fd(),
                        chunk.as_ptr() as *const libc::c_void,
                        chunk.len(),
                        (offset + done as u64) as libc::off_t,
                    )
                };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(Error::io("writing into the object store", e));
                }
                done += n as usize;
            }
            offset += part.len() as u64;
        }
        Ok(())
    }

    /// Gives the memory of a freed region back to the system (whole pages only).
    pub(crate) fn punch(&self, offset: u64, len: u64) {
        const PAGE: u64 = 4096;
        let start = offset.div_ceil(PAGE) * PAGE;
        let end = (offset + len) / PAGE * PAGE;
        if end > start {
            // SAFETY: punching a hole in a valid memfd inside its size; no one reads a freed
            // region.
            unsafe {
                libc::fallocate(
                    self.fd.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    start as libc::off_t,
                    (end - start) as libc::off_t,
                )
            };
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`; no slice outlives `self`.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.capacity.max(1) as usize) };
    }
}

static ARENA: RwLock<Option<Arc<Arena>>> = RwLock::new(None);
static INLINE_MAX: AtomicUsize = AtomicUsize::new(DEFAULT_INLINE_MAX);

/// Objects of at least this many bytes go to the store.
pub(crate) fn inline_max() -> usize {
    INLINE_MAX.load(Ordering::Relaxed)
}

pub(crate) fn set_inline_max(n: usize) {
    INLINE_MAX.store(n, Ordering::Relaxed);
}

/// Puts a value that is large enough into the store (through `client`, which allocates the
/// region), or leaves it inline. The returned value names the region; sending it in a
/// `Put`/`TaskDone` seals it.
pub(crate) fn place(client: &dyn Client, value: Value) -> Result<Value> {
    let Data::Inline(bytes) = &value.data else { return Ok(value) };
    if bytes.len() < inline_max() {
        return Ok(value);
    }
    let region = store_parts(client, &[bytes])?;
    Ok(Value { data: Data::Shm { region, pad: PAD as u32, len: bytes.len() as u64 }, contained: value.contained })
}

/// Writes `parts` (one value's bytes, in pieces) into a fresh region at offset `PAD`.
pub(crate) fn store_parts(client: &dyn Client, parts: &[&[u8]]) -> Result<u64> {
    let arena = arena().ok_or_else(|| Error::NotInitialized { detail: " (no object store)".into() })?;
    let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let region = client.alloc(PAD + len)?;
    arena.write(region + PAD, parts)?;
    Ok(region)
}

/// This process's store (the driver's current runtime, or the worker's).
pub(crate) fn arena() -> Option<Arc<Arena>> {
    ARENA.read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(crate) fn set_arena(a: Option<Arc<Arena>>) {
    *ARENA.write().unwrap_or_else(|e| e.into_inner()) = a;
}

/// Bytes of padding before an encoded value in its region, so that if it is a `Vec<T: Pod>` (an
/// 8-byte length, then the elements) its elements start `DATA_ALIGN`-aligned. Harmless otherwise.
pub(crate) const PAD: u64 = DATA_ALIGN - crate::codec::VEC_PREFIX as u64;

/// First-fit allocator of aligned regions over `[0, capacity)`, with coalescing.
#[derive(Debug)]
pub(crate) struct Allocator {
    /// Free blocks by offset.
    free: BTreeMap<u64, u64>,
    capacity: u64,
    used: u64,
}

impl Allocator {
    pub(crate) fn new(capacity: u64) -> Self {
        let capacity = capacity / ALIGN * ALIGN;
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        Allocator { free, capacity, used: 0 }
    }

    pub(crate) fn rounded(size: u64) -> u64 {
        size.max(1).div_ceil(ALIGN) * ALIGN
    }

    /// Offset of a free region of at least `size` bytes, if one exists.
    pub(crate) fn alloc(&mut self, size: u64) -> Option<u64> {
        let size = Self::rounded(size);
        let (&off, &len) = self.free.iter().find(|(_, len)| **len >= size)?;
        self.free.remove(&off);
        if len > size {
            self.free.insert(off + size, len - size);
        }
        self.used += size;
        Some(off)
    }

    pub(crate) fn free(&mut self, offset: u64, size: u64) {
        let mut size = Self::rounded(size);
        let mut offset = offset;
        self.used -= size;
        if let Some((&prev, &plen)) = self.free.range(..offset).next_back() {
            if prev + plen == offset {
                self.free.remove(&prev);
                offset = prev;
                size += plen;
            }
        }
        if let Some(&nlen) = self.free.get(&(offset + size)) {
            self.free.remove(&(offset + size));
            size += nlen;
        }
        self.free.insert(offset, size);
    }

    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

/// Default capacity: 30% of the machine's memory, as Ray's object store.
pub(crate) fn default_capacity() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && page > 0 { (pages as u64 * page as u64) * 3 / 10 } else { 2 << 30 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_fits_splits_and_coalesces() {
        let mut a = Allocator::new(1024);
        let x = a.alloc(100).unwrap();
        let y = a.alloc(200).unwrap();
        let z = a.alloc(64).unwrap();
        assert_eq!((x, y, z), (0, 128, 384));
        assert_eq!(a.used(), 128 + 256 + 64);
        assert!(a.alloc(1024).is_none());
        a.free(y, 200);
        assert_eq!(a.alloc(250), Some(128), "first fit reuses the hole");
        a.free(128, 250);
        a.free(x, 100);
        a.free(z, 64);
        assert_eq!(a.used(), 0);
        assert_eq!(a.alloc(1024), Some(0), "everything coalesced back into one block");
    }

    #[test]
    fn padding_aligns_pod_vector_data() {
        assert_eq!((ALIGN + PAD + crate::codec::VEC_PREFIX as u64) % DATA_ALIGN, 0);
    }

    #[test]
    fn arena_writes_are_visible_through_the_read_only_mapping_and_punch_frees() {
        let arena = Arena::create(1 << 20).unwrap();
        arena.write(4096, &[b"hello ", b"world"]).unwrap();
        assert_eq!(arena.slice(4096, 11), b"hello world");
        arena.punch(0, 1 << 20);
        assert_eq!(arena.slice(4096, 11), &[0u8; 11], "a punched region reads as zeros");
    }
}
