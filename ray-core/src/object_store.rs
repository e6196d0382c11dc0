//! The node's shared-memory object store (Ray's plasma), for objects too large to inline.
//!
//! One `memfd` per node holds every large object. The node manager creates it, sized to the
//! store's capacity (sparse: pages exist only where objects are), and each worker inherits it at
//! spawn. Every process maps it twice: **read-only** for reading (zero-copy: a slice of the
//! mapping), and `PROT_NONE` for writing. A writer copies an object into a region the node
//! manager allocated for it through a write window that `mprotect` opens over just that
//! region's pages for the length of one copy, then *seals* it by sending the `Put`/`TaskDone`
//! that names the region. Only then do readers learn where it is, so they never see a partial
//! object, and once the window is closed nobody — the writer included — can write a sealed
//! object through a mapping.
//!
//! The window's pages are pre-faulted in one call (`MADV_POPULATE_WRITE`), large objects are
//! copied by several threads, and freed regions keep their pages for the next object up to a
//! limit before they are punched out of the file (`FALLOC_FL_PUNCH_HOLE`), which gives the
//! memory back: together these make a large `put` run near memory bandwidth.
//!
//! The allocator ([`Allocator`]) is first-fit over page-aligned regions with coalescing, with
//! checked arithmetic throughout. When an allocation does not fit, the node manager spills
//! referenced objects that nobody is reading to files and restores them on `get`
//! (`node_manager::store`).

use crate::codec::{Data, Value};
use crate::context::Client;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Alignment of regions: a page, so a region's write window covers no other region.
pub(crate) const ALIGN: u64 = 4096;
/// Where the data of a `Vec<T: Pod>` starts inside its region is aligned to this.
pub(crate) const DATA_ALIGN: u64 = 16;

/// Objects of this size or larger go to the store (Ray inlines up to 100 KiB).
pub(crate) const DEFAULT_INLINE_MAX: usize = 100 * 1024;
/// The largest inline size that can be configured: inline values travel in messages.
pub(crate) const MAX_INLINE_MAX: usize = 16 << 20;

/// A process's handle on the store file: a read-only mapping of it, and a write mapping that
/// is inaccessible except for the window of the write in progress.
pub(crate) struct Arena {
    fd: OwnedFd,
    capacity: u64,
    /// Read-only mapping of the whole file.
    base: *const u8,
    /// Mapping of the whole file that is `PROT_NONE` except for write windows.
    write_base: *mut u8,
}

// SAFETY: the read mapping is shared and read-only for the life of the `Arena`; it is only used
// to build slices of sealed regions, which nobody writes while they are readable (the node
// manager only reuses a region after the object in it is freed, and pins objects while they are
// being read). The write mapping is only written inside a window over a region allocated to this
// writer alone (regions are page-aligned, so windows of different writes never share a page).
// Sharing both pointers between threads is therefore sound.
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
        let map = |prot| {
            // SAFETY: a new shared mapping of `len` bytes of a valid fd, at an address the kernel
            // picks; MAP_NORESERVE because the file is sparse.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_SHARED | libc::MAP_NORESERVE,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                Err(os_err("mapping the object store (mmap)"))
            } else {
                Ok(ptr)
            }
        };
        let read = map(libc::PROT_READ)?;
        let write = match map(libc::PROT_NONE) {
            Ok(w) => w,
            Err(e) => {
                // SAFETY: unmapping the mapping made just above.
                unsafe { libc::munmap(read, len) };
                return Err(e);
            }
        };
        Ok(Arena {
            fd,
            capacity,
            base: read as *const u8,
            write_base: write as *mut u8,
        })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The bytes at `[offset, offset + len)`.
    ///
    /// # Safety
    ///
    /// The range must lie in a sealed region that stays allocated, and unwritten, while the
    /// slice lives: the region of an object the caller holds (a reference, a pin, or a reader's
    /// mapping count in the node manager), or one it is the only writer of and has finished
    /// writing. The bounds are checked; a range outside the store panics.
    pub(crate) unsafe fn slice(&self, offset: u64, len: u64) -> &[u8] {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.capacity),
            "object store range out of bounds"
        );
        // SAFETY: the range is inside the mapping (checked above), the mapping lives as long as
        // `self`, and the caller guarantees nobody writes the range while the slice lives.
        unsafe { std::slice::from_raw_parts(self.base.add(offset as usize), len as usize) }
    }

    /// Copies `parts`, one after the other, to `offset` (inside a region allocated to this
    /// writer and not sealed yet), through a write window opened for just those pages.
    pub(crate) fn write(&self, offset: u64, parts: &[&[u8]]) -> Result<()> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if len == 0 {
            return Ok(());
        }
        let (pages, pages_len) = self.open_pages(offset, len, "object store write")?;
        copy_parts(self.write_base as usize, offset, len, parts);
        close_pages(pages, pages_len)
            .map_err(|e| Error::io("closing a write window in the object store (mprotect)", e))
    }

    /// Makes the whole pages holding `[offset, offset + len)` writable through the write
    /// mapping, once the range is checked to lie in the store; returns them for
    /// [`close_pages`]. The caller must be the only writer of those pages until then.
    fn open_pages(&self, offset: u64, len: u64, what: &str) -> Result<(*mut u8, usize)> {
        const PAGE: u64 = 4096;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(Error::InvalidArgument {
                what: what.into(),
                message: format!(
                    "{len} bytes at offset {offset} do not fit the store's {} bytes",
                    self.capacity
                ),
            });
        }
        let start = offset / PAGE * PAGE;
        let end = ((offset + len).div_ceil(PAGE) * PAGE).min(self.capacity.div_ceil(PAGE) * PAGE);
        let pages_len = (end - start) as usize;
        // SAFETY: [start, end) lies inside the write mapping (page-aligned, within capacity).
        let pages = unsafe { self.write_base.add(start as usize) };
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: opening a window over pages of our own mapping; the caller is their only
        // writer while it is open.
        if pages_len > 0 && unsafe { libc::mprotect(pages.cast(), pages_len, prot) } != 0 {
            return Err(os_err(
                "opening a write window in the object store (mprotect)",
            ));
        }
        Ok((pages, pages_len))
    }

    /// Opens a write window over `[offset, offset + len)` (its pages pre-faulted) and returns
    /// it: the destination of bytes read straight from a connection (a chunk of an object
    /// pulled from another node), without a buffer in between. The window closes when the
    /// returned value is dropped.
    ///
    /// # Safety
    ///
    /// The range must lie in a region allocated to the caller alone and not sealed yet, and no
    /// other window may be open over any of its pages while the returned one lives (regions
    /// are page-aligned, so only windows over the same region can share a page).
    pub(crate) unsafe fn window(&self, offset: u64, len: u64) -> Result<WriteWindow<'_>> {
        let (pages, pages_len) = self.open_pages(offset, len, "object store window")?;
        if pages_len > 0 {
            // SAFETY: pre-faulting the pages just opened; only a hint (an old kernel without
            // MADV_POPULATE_WRITE returns EINVAL and the writes fault pages in one by one).
            unsafe { libc::madvise(pages.cast(), pages_len, libc::MADV_POPULATE_WRITE) };
        }
        Ok(WriteWindow {
            _arena: std::marker::PhantomData,
            pages,
            pages_len,
            // SAFETY: `offset` is inside the mapping (`open_pages` checked it).
            ptr: unsafe { self.write_base.add(offset as usize) },
            len: len as usize,
        })
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
        let len = self.capacity.max(1) as usize;
        // SAFETY: unmapping exactly the mappings made in `map`; no slice outlives `self`.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, len);
            libc::munmap(self.write_base as *mut libc::c_void, len);
        }
    }
}

/// An open write window over part of a region of the store ([`Arena::window`]); closed (its
/// pages inaccessible again) when dropped.
pub(crate) struct WriteWindow<'a> {
    _arena: std::marker::PhantomData<&'a Arena>,
    /// The window's first page and its length in bytes (whole pages).
    pages: *mut u8,
    pages_len: usize,
    /// The bytes the window was opened for.
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a window is the only handle on its pages' write access (`Arena::window`'s contract),
// and the `Arena` it borrows is `Sync`; moving it to another thread moves that access along.
unsafe impl Send for WriteWindow<'_> {}

impl WriteWindow<'_> {
    /// The bytes the window was opened for, writable.
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr..ptr + len` lies inside the open window (`Arena::window` checked the
        // bounds and opened its pages), which nobody else writes while it is open, and the
        // mapping outlives the borrow of the `Arena`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for WriteWindow<'_> {
    fn drop(&mut self) {
        if let Err(e) = close_pages(self.pages, self.pages_len) {
            crate::log::error!("closing a write window in the object store (mprotect): {e}");
        }
    }
}

/// Makes pages [`Arena::open_pages`] opened inaccessible through the write mapping again.
fn close_pages(pages: *mut u8, pages_len: usize) -> std::io::Result<()> {
    // SAFETY: closing a window opened over these pages of the store's write mapping.
    if pages_len > 0 && unsafe { libc::mprotect(pages.cast(), pages_len, libc::PROT_NONE) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Objects at least this large are copied in by several threads at once (as Ray does).
const PARALLEL_COPY_MIN: u64 = 8 << 20;

/// Copies the concatenation of `parts` to `[offset, offset + len)` of the mapping at `base`,
/// whose pages there are open for writing: pre-faults them and copies, in parallel for large
/// objects (each thread takes a page-aligned slice of the destination).
fn copy_parts(base: usize, offset: u64, len: u64, parts: &[&[u8]]) {
    const PAGE: u64 = 4096;
    let threads = if len < PARALLEL_COPY_MIN {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8) as u64
    };
    let chunk = len.div_ceil(threads).div_ceil(PAGE) * PAGE;
    let copy_chunk = |from: u64, to: u64| {
        // SAFETY: [offset + from, offset + to) is inside the open write window; pre-faulting
        // it is only a hint (an old kernel without MADV_POPULATE_WRITE returns EINVAL and the
        // copy faults the pages in one by one).
        unsafe {
            libc::madvise(
                (base + (offset + from) as usize) as *mut libc::c_void,
                (to - from) as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
        let mut part_start = 0u64;
        for part in parts {
            let part_end = part_start + part.len() as u64;
            let (a, b) = (from.max(part_start), to.min(part_end));
            if a < b {
                // SAFETY: the destination [offset + a, offset + b) is inside the open window and
                // written by this thread only (chunks are disjoint); the source is a caller's
                // buffer, a different allocation.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        part.as_ptr().add((a - part_start) as usize),
                        (base + (offset + a) as usize) as *mut u8,
                        (b - a) as usize,
                    );
                }
            }
            part_start = part_end;
        }
    };
    if threads == 1 {
        copy_chunk(0, len);
        return;
    }
    std::thread::scope(|scope| {
        let mut from = chunk;
        while from < len {
            let to = (from + chunk).min(len);
            scope.spawn(move || copy_chunk(from, to));
            from = to;
        }
        copy_chunk(0, chunk.min(len));
    });
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
    let Data::Inline(bytes) = &value.data else {
        return Ok(value);
    };
    // Small values, and every value of a process with no store (a driver on another
    // machine, whose node stores what it receives), travel inline.
    if bytes.len() < inline_max() || arena().is_none() {
        return Ok(value);
    }
    let region = store_parts(client, &[bytes])?;
    Ok(Value {
        data: Data::Shm {
            region,
            pad: PAD as u32,
            len: bytes.len() as u64,
        },
        contained: value.contained,
    })
}

/// Writes `parts` (one value's bytes, in pieces) into a fresh region at offset `PAD`.
pub(crate) fn store_parts(client: &dyn Client, parts: &[&[u8]]) -> Result<u64> {
    let arena = arena().ok_or_else(|| Error::NotInitialized {
        detail: " (no object store)".into(),
    })?;
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
        Allocator {
            free,
            capacity,
            used: 0,
        }
    }

    /// `size` rounded up to whole pages; `None` if that does not fit in a `u64`.
    pub(crate) fn rounded(size: u64) -> Option<u64> {
        size.max(1).div_ceil(ALIGN).checked_mul(ALIGN)
    }

    /// Offset of a free region of at least `size` bytes, if one exists.
    pub(crate) fn alloc(&mut self, size: u64) -> Option<u64> {
        let size = Self::rounded(size)?;
        let (&off, &len) = self.free.iter().find(|(_, len)| **len >= size)?;
        self.free.remove(&off);
        if len > size {
            self.free.insert(off + size, len - size);
        }
        self.used += size;
        Some(off)
    }

    pub(crate) fn free(&mut self, offset: u64, size: u64) {
        let Some(mut size) = Self::rounded(size) else {
            return;
        };
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
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && page > 0 {
        (pages as u64 * page as u64) * 3 / 10
    } else {
        2 << 30
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsafe_slice(arena: &Arena, offset: u64, len: u64) -> &[u8] {
        // SAFETY: the tests write these ranges before reading them and nothing else uses the
        // arena.
        unsafe { arena.slice(offset, len) }
    }

    #[test]
    fn allocator_fits_splits_and_coalesces() {
        const P: u64 = ALIGN;
        let mut a = Allocator::new(16 * P);
        let x = a.alloc(100).unwrap();
        let y = a.alloc(2 * P).unwrap();
        let z = a.alloc(P + 1).unwrap();
        assert_eq!((x, y, z), (0, P, 3 * P));
        assert_eq!(a.used(), 5 * P);
        assert!(a.alloc(16 * P).is_none());
        a.free(y, 2 * P);
        assert_eq!(a.alloc(2 * P - 5), Some(P), "first fit reuses the hole");
        a.free(P, 2 * P - 5);
        a.free(x, 100);
        a.free(z, P + 1);
        assert_eq!(a.used(), 0);
        assert_eq!(
            a.alloc(16 * P),
            Some(0),
            "everything coalesced back into one block"
        );
    }

    #[test]
    fn large_writes_are_copied_in_parallel_chunks_exactly() {
        let arena = Arena::create(64 << 20).unwrap();
        let header = 12345u64.to_le_bytes();
        let body: Vec<u8> = (0..(9 << 20) + 77)
            .map(|i: usize| (i % 251) as u8)
            .collect();
        arena.write(4096 + PAD, &[&header, &body]).unwrap();
        assert_eq!(unsafe_slice(&arena, 4096 + PAD, 8), &header);
        assert!(
            unsafe_slice(&arena, 4096 + PAD + 8, body.len() as u64) == &body[..],
            "every chunk lands in place"
        );
    }

    #[test]
    fn padding_aligns_pod_vector_data() {
        assert_eq!(
            (ALIGN + PAD + crate::codec::VEC_PREFIX as u64) % DATA_ALIGN,
            0
        );
    }

    #[test]
    fn arena_writes_are_visible_through_the_read_only_mapping_and_punch_frees() {
        let arena = Arena::create(1 << 20).unwrap();
        arena.write(4096 + 8, &[b"hello ", b"world"]).unwrap();
        assert_eq!(unsafe_slice(&arena, 4096 + 8, 11), b"hello world");
        arena.write(4096 * 3 - 2, &[b"across a page"]).unwrap();
        assert_eq!(unsafe_slice(&arena, 4096 * 3 - 2, 13), b"across a page");
        arena.punch(0, 1 << 20);
        assert_eq!(
            unsafe_slice(&arena, 4096 + 8, 11),
            &[0u8; 11],
            "a punched region reads as zeros"
        );
    }
}
