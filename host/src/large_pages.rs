//! The binary's memory allocator: glibc's `malloc`, and for the one-shot commands' blocks of
//! 2 MiB and more a private anonymous mapping of its own, created 2 MiB-aligned, that the
//! kernel is advised to back with transparent huge pages (`madvise(MADV_HUGEPAGE)`).
//!
//! Why (issue 14, the `policy eval` row): a command that reads a file of 200 000 devices
//! touches ~190 MiB of fresh memory (the file, the records, the verdicts, the output), and
//! with 4 KiB pages that is ~66 000 page faults: half the command's CPU time was the kernel's
//! fault path (`clear_page`, memcg charging, LRU lists), not ours. Where THP runs in `madvise`
//! mode (Debian's and Ubuntu's default) a mapping is only backed by huge pages when asked;
//! one fault then maps 2 MiB. Where it runs in `always` (the kernel's default, RHEL's) the
//! blocks get huge pages anyway, and the advice only lets a fault wait for compaction (THP
//! `defrag`'s default, `madvise`). glibc can do the same for all of its arenas
//! (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`), but only when set before the process starts.
//!
//! Whose large blocks are is decided once per process, by the first one made: when a
//! one-shot command asked for huge pages before it ([`advise_huge_pages`], first thing in
//! `cli::run`), every large block is a mapping of ours; otherwise (the agent, `pcitrack run`)
//! every one is glibc's, as before this allocator existed: the agent's resident memory is
//! what the README's figures measure, and glibc reuses the memory a policy compile frees
//! where mappings of our own would be faulted in again each time. Decided once, a block is
//! always freed by the path that made it. A block of ours grows in place or is moved whole by
//! the kernel (`mremap`), its pages never copied; it is copied only when it crosses 2 MiB.
//! See the kernel's `Documentation/admin-guide/mm/transhuge.rst`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::ptr::{self, null_mut};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::mm::{self, Advice, MapFlags, MremapFlags, ProtFlags};

/// The x86-64 (and aarch64 4 KiB-granule) transparent huge page: blocks from this size up
/// are mapped here, at this alignment, in whole multiples of it.
pub const HUGE_PAGE: usize = 2 << 20;

/// No large block made yet: the next one (or the advice) decides.
const OPEN: u8 = 0;
/// Large blocks are glibc's (the agent).
const GLIBC: u8 = 1;
/// Large blocks are huge-page-advised mappings of ours (the one-shot commands).
const HUGE: u8 = 2;

/// The process's mode: the global allocator's.
static PROCESS: AtomicU8 = AtomicU8::new(OPEN);

/// Asks for huge-page-advised mappings for every large block of the process. True when
/// granted: before any large block was made, or asked already; false when one was made
/// first (glibc's then, as all of them stay). The one-shot commands call this first thing;
/// the agent does not.
pub fn advise_huge_pages() -> bool {
    advise_in(&PROCESS)
}

fn advise_in(mode: &AtomicU8) -> bool {
    match mode.compare_exchange(OPEN, HUGE, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => true,
        Err(now) => now == HUGE,
    }
}

/// The allocator (see the module's documentation): `#[global_allocator]` in `main.rs`.
pub struct LargePages {
    mode: &'static AtomicU8,
}

impl LargePages {
    /// The process's allocator, deciding with [`advise_huge_pages`].
    pub const fn new() -> Self {
        LargePages { mode: &PROCESS }
    }

    /// Whether a block of this layout is a mapping of ours. The first block of 2 MiB or
    /// more settles the mode if nothing did (glibc's, then).
    fn is_large(&self, size: usize, align: usize) -> bool {
        if !fits(size, align) {
            return false;
        }
        match self
            .mode
            .compare_exchange(OPEN, GLIBC, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => false,
            Err(now) => now == HUGE,
        }
    }
}

impl Default for LargePages {
    fn default() -> Self {
        Self::new()
    }
}

/// The alignment a moved block keeps: `mremap` moves a mapping to any page boundary.
const PAGE: usize = 4096;

/// Whether a block of this layout may be a mapping of ours: 2 MiB or more, aligned to a page
/// at most. Alignments above a page are glibc's (`posix_memalign`): a block that `mremap`
/// moves keeps only page alignment.
fn fits(size: usize, align: usize) -> bool {
    size >= HUGE_PAGE && align <= PAGE
}

/// A large block's mapped length: whole huge pages.
fn mapped(size: usize) -> Option<usize> {
    size.checked_next_multiple_of(HUGE_PAGE)
}

/// Maps `len` bytes (whole huge pages) at a huge-page boundary: one huge page more is
/// reserved and the slack on each side handed back. Null when the kernel refuses.
fn map(len: usize) -> *mut u8 {
    let Some(reserve) = len.checked_add(HUGE_PAGE) else {
        return null_mut();
    };
    // SAFETY: a fresh private anonymous mapping at an address the kernel picks overlaps
    // nothing of ours.
    let Ok(base) = (unsafe {
        mm::mmap_anonymous(
            null_mut(),
            reserve,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }) else {
        return null_mut();
    };
    let base = base.cast::<u8>();
    let head = base.align_offset(HUGE_PAGE);
    let start = base.wrapping_add(head);
    // SAFETY: both ranges are parts of the mapping just made that the block does not use.
    // Should the kernel refuse to trim (`vm.max_map_count`), the slack stays mapped and
    // unused: at most one huge page, never freed.
    unsafe {
        if head > 0 {
            let _ = mm::munmap(base.cast(), head);
        }
        let tail = reserve - head - len;
        if tail > 0 {
            let _ = mm::munmap(start.add(len).cast(), tail);
        }
    }
    advise(start, len);
    start
}

fn advise(start: *mut u8, len: usize) {
    // SAFETY: `start..start + len` is one of our mappings. The advice is a hint: a kernel
    // without THP refuses it and the block keeps 4 KiB pages.
    let _ = unsafe { mm::madvise(start.cast::<c_void>(), len, Advice::LinuxHugepage) };
}

// SAFETY: a block is glibc's unless its layout `fits` and the mode, decided once for the
// process before any such block existed, is `HUGE`: the same test on allocation,
// reallocation and release (a layout's size and alignment are the ones the block was made
// with) gives the same answer. Ours are mappings of whole huge pages, one per block.
unsafe impl GlobalAlloc for LargePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.is_large(layout.size(), layout.align()) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        }
        mapped(layout.size()).map_or(null_mut(), map)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.is_large(layout.size(), layout.align()) {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // A fresh anonymous mapping reads as zeros: no page is written (or faulted) here.
        mapped(layout.size()).map_or(null_mut(), map)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.is_large(layout.size(), layout.align()) {
            // SAFETY: the caller's contract; the block is glibc's (see above).
            return unsafe { System.dealloc(ptr, layout) };
        }
        let len = mapped(layout.size()).expect("the block was mapped with this length");
        // SAFETY: the block is the mapping `ptr..ptr + len`, and the caller gives it up.
        let _ = unsafe { mm::munmap(ptr.cast(), len) };
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (was, will) = (
            self.is_large(layout.size(), layout.align()),
            self.is_large(new_size, layout.align()),
        );
        if !was && !will {
            // SAFETY: the caller's contract, passed on; the block is glibc's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if was && will {
            let (old_len, Some(new_len)) = (
                mapped(layout.size()).expect("mapped with this length"),
                mapped(new_size),
            ) else {
                return null_mut();
            };
            // SAFETY: `ptr..ptr + old_len` is the block's mapping (see `dealloc`).
            return unsafe { remap(ptr, old_len, new_len) };
        }
        // Across the threshold: a new block, the bytes copied, the old one released.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        // SAFETY: `new_layout` has a non-zero size: `realloc`'s caller promises `new_size > 0`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are at least this long and they do not overlap.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Resizes the mapping `ptr..ptr + old_len` to `new_len` (both whole huge pages).
/// Shrinking hands the tail back; growing extends the mapping in place or moves it whole
/// (`mremap` with `MREMAP_MAYMOVE`: its pages change address, not place, and keep their
/// advice). The block stays one mapping: a kernel before 6.17 cannot move a range that spans
/// two (found in review: an earlier version moved the old pages into a fresh aligned mapping,
/// which left a block of several mappings that the next move failed on). A moved block keeps
/// page alignment (hence [`fits`]'s bound) but may lose its 2 MiB alignment: its huge
/// pages are then mapped 4 KiB at a time. Null when the kernel refuses; the block is then
/// untouched and still valid.
///
/// # Safety
///
/// `ptr..ptr + old_len` must be one of [`map`]'s mappings (or one this function made from
/// one), used by one block only.
unsafe fn remap(ptr: *mut u8, old_len: usize, new_len: usize) -> *mut u8 {
    if new_len < old_len {
        // SAFETY: the tail is part of the block's mapping, past its new end. When the kernel
        // refuses to split the mapping (`vm.max_map_count`), nothing was unmapped and the
        // block is refused as it stands, as the contract allows.
        if unsafe { mm::munmap(ptr.add(new_len).cast(), old_len - new_len) }.is_err() {
            return null_mut();
        }
    }
    if new_len <= old_len {
        return ptr;
    }
    // SAFETY: the block's mapping, resized as one; on failure the kernel leaves it as it was.
    match unsafe { mm::mremap(ptr.cast(), old_len, new_len, MremapFlags::MAYMOVE) } {
        Ok(moved) => moved.cast(),
        Err(_) => null_mut(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mappings of `/proc/self/smaps` that `at..at + len` overlaps: each one's range and
    /// `VmFlags`.
    fn mappings(at: *const u8, len: usize) -> Vec<(usize, usize, String)> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let (from_at, to_at) = (at as usize, at as usize + len);
        let mut found = Vec::new();
        let mut current = None;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((from, to)) = range.split_once('-')
                && let (Ok(from), Ok(to)) = (
                    usize::from_str_radix(from, 16),
                    usize::from_str_radix(to, 16),
                )
            {
                current = (from < to_at && to > from_at).then_some((from, to));
            } else if let Some((from, to)) = current
                && let Some(flags) = line.strip_prefix("VmFlags:")
            {
                found.push((from, to, flags.trim().to_string()));
            }
        }
        found
    }

    /// Whether this kernel has transparent huge pages at all (`madvise` is refused without).
    fn thp() -> bool {
        std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists()
    }

    /// The block `p` of `len` bytes is exactly one mapping of whole huge pages (nothing left
    /// over from a shrink, no second mapping from a move), advised for huge pages (`hg`)
    /// where THP exists.
    fn one_mapping(p: *const u8, len: usize) {
        let found = mappings(p, len);
        assert_eq!(found.len(), 1, "the block is not one mapping: {found:x?}");
        let (from, to, flags) = &found[0];
        assert_eq!(
            (*from, *to),
            (p as usize, p as usize + mapped(len).unwrap()),
            "{found:x?}"
        );
        assert!(
            !thp() || flags.split(' ').any(|f| f == "hg"),
            "not advised: {flags}"
        );
    }

    fn fill(p: *mut u8, len: usize, seed: u8) {
        for i in (0..len).step_by(4093) {
            // SAFETY: `i < len`, inside the block.
            unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    fn check(p: *const u8, len: usize, seed: u8) {
        for i in (0..len).step_by(4093) {
            // SAFETY: `i < len`, inside the block.
            assert_eq!(
                unsafe { p.add(i).read() },
                seed.wrapping_add(i as u8),
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_large_block_is_aligned_zeroed_advised_and_keeps_its_bytes_through_reallocation() {
        // A mode of its own: what the global allocator's is does not matter here.
        static MODE: AtomicU8 = AtomicU8::new(OPEN);
        let a = LargePages { mode: &MODE };
        assert!(advise_in(&MODE), "nothing was allocated before");
        let layout = Layout::from_size_align(3 * HUGE_PAGE + 5, 8).unwrap();
        // SAFETY: a valid layout; every block is released with the layout it has.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE_PAGE, 0);
            check_zero(p, layout.size());
            one_mapping(p, layout.size());
            fill(p, layout.size(), 7);
            // Grown three times, as a `Vec` doubles: each time the bytes are kept, the part
            // past the old length reads as zeros, and the block is still one advised mapping
            // (a block of two mappings could not be moved again on kernels before 6.17).
            let (mut q, mut size) = (p, layout.size());
            for _ in 0..3 {
                let grown = size * 2;
                q = a.realloc(q, Layout::from_size_align(size, 8).unwrap(), grown);
                assert!(!q.is_null());
                check(q, layout.size(), 7);
                check_zero(q.add(4 * HUGE_PAGE), grown - 4 * HUGE_PAGE);
                one_mapping(q, grown);
                size = grown;
            }
            fill(q, size, 9);
            // A growth the kernel refuses (far beyond memory, where overcommit is heuristic or
            // strict): null, and the block as it was.
            let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory");
            if overcommit.is_ok_and(|m| m.trim() != "1") {
                let refused = a.realloc(q, Layout::from_size_align(size, 8).unwrap(), 1 << 46);
                assert!(refused.is_null());
                check(q, size, 9);
                one_mapping(q, size);
            }
            // Shrunk by a few bytes, to the same huge pages: untouched.
            let same = a.realloc(q, Layout::from_size_align(size, 8).unwrap(), size - 9);
            assert_eq!(same, q);
            let size = size - 9;
            one_mapping(q, size);
            // Shrunk, still large: in place.
            let r = a.realloc(q, Layout::from_size_align(size, 8).unwrap(), 2 * HUGE_PAGE);
            assert_eq!(r, q);
            check(r, 2 * HUGE_PAGE, 9);
            one_mapping(r, 2 * HUGE_PAGE);
            // Shrunk below the threshold: glibc's block, the bytes copied.
            let s = a.realloc(r, Layout::from_size_align(2 * HUGE_PAGE, 8).unwrap(), 4096);
            check(s, 4096, 9);
            // Back above it.
            let t = a.realloc(s, Layout::from_size_align(4096, 8).unwrap(), HUGE_PAGE + 1);
            check(t, 4096, 9);
            assert_eq!(t as usize % HUGE_PAGE, 0);
            a.dealloc(t, Layout::from_size_align(HUGE_PAGE + 1, 8).unwrap());
        }
    }

    fn check_zero(p: *const u8, len: usize) {
        for i in (0..len).step_by(4093) {
            // SAFETY: `i < len`, inside the block.
            assert_eq!(unsafe { p.add(i).read() }, 0, "byte {i}");
        }
    }

    #[test]
    fn small_and_overaligned_blocks_are_glibcs() {
        static MODE: AtomicU8 = AtomicU8::new(OPEN);
        let a = LargePages { mode: &MODE };
        assert!(advise_in(&MODE));
        for layout in [
            Layout::from_size_align(HUGE_PAGE - 1, 8).unwrap(),
            // Aligned beyond a page: a move by `mremap` would not keep it.
            Layout::from_size_align(HUGE_PAGE, 2 * PAGE).unwrap(),
            Layout::from_size_align(HUGE_PAGE, 2 * HUGE_PAGE).unwrap(),
        ] {
            // SAFETY: a valid layout, released with itself.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % layout.align(), 0);
                // glibc's block: not a mapping starting at the block (its header precedes).
                assert!(
                    mappings(p, 1)
                        .iter()
                        .all(|&(from, _, _)| from != p as usize),
                    "{layout:?} was mapped as a block of its own"
                );
                fill(p, layout.size(), 3);
                check(p, layout.size(), 3);
                a.dealloc(p, layout);
            }
        }
    }

    #[test]
    fn a_process_whose_first_large_block_came_before_the_advice_keeps_glibcs() {
        // The agent: nobody asks, so the first large block settles it, and a later ask is
        // refused rather than freeing a glibc block as a mapping.
        static MODE: AtomicU8 = AtomicU8::new(OPEN);
        let a = LargePages { mode: &MODE };
        let layout = Layout::from_size_align(3 * HUGE_PAGE, 8).unwrap();
        // SAFETY: a valid layout; every block is released with the layout it has.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_ne!(p as usize % HUGE_PAGE, 0, "glibc's block, after its header");
            assert!(
                !advise_in(&MODE),
                "advice granted after a large block was made"
            );
            fill(p, layout.size(), 5);
            let q = a.realloc(p, layout, 5 * HUGE_PAGE);
            check(q, layout.size(), 5);
            let r = a.alloc(layout);
            assert_ne!(r as usize % HUGE_PAGE, 0);
            a.dealloc(r, layout);
            a.dealloc(q, Layout::from_size_align(5 * HUGE_PAGE, 8).unwrap());
        }
        assert_eq!(MODE.load(Ordering::Relaxed), GLIBC);
    }
}
