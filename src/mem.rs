//! Memory hints for the big immutable tables (the host index, the tenant
//! records, the homes): two `unsafe` calls that change no data (the
//! crate's only other one sets a listening socket's option:
//! `server::listen`).
//!
//! * [`prefetch`]: builders that insert a batch of keys at random places
//!   announce the next few while working on the current one, so that their
//!   cache misses overlap instead of queueing.
//! * [`huge_pages`]: a table of tens of MB read at random (one host lookup
//!   per request) misses the TLB on nearly every access with 4 KiB pages;
//!   under a hypervisor each such miss walks two page tables. Asking the
//!   kernel for transparent huge pages (`MADV_HUGEPAGE`, honoured when
//!   `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or
//!   `madvise`) for these tables only keeps the rest of the process, and
//!   the request path's allocations, on ordinary pages.
//!
//! Both are hints: without them everything works the same, slower.
//!
//! * [`zeroed_atomics`]: per-tenant counters for a million tenants start
//!   at zero in memory the kernel maps on first write, so the tenants
//!   that never take a request cost no resident memory.

/// Asks the CPU to bring `slice[i]` into cache ahead of its use. Out of
/// bounds it does nothing.
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T>(slice: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(item) = slice.get(i) {
        // SAFETY: `_mm_prefetch` is unsafe only for its `sse` target
        // feature, which every x86_64 CPU has; a prefetch never faults and
        // never changes memory, and the address is an element's.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (item as *const T).cast::<i8>(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, i);
}

/// Size of a transparent huge page on the platforms we run on.
const HUGE_PAGE: usize = 2 << 20;

/// Asks for huge pages over the whole 2 MiB pages inside `v`'s allocation
/// (its capacity, written or not). Call it before the pages are first
/// written: the kernel then backs them with huge pages at the first fault.
/// Allocations under 4 MiB are left alone.
#[allow(unsafe_code)]
pub fn huge_pages<T>(v: &Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < 2 * HUGE_PAGE {
        return;
    }
    let start = v.as_ptr() as usize;
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = (start + bytes) / HUGE_PAGE * HUGE_PAGE;
    if end <= first {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: the range lies inside the vector's own allocation (rounded
    // inwards to whole huge pages) and MADV_HUGEPAGE only changes how the
    // kernel backs it, never its contents. An error (a kernel without
    // transparent huge pages) leaves the pages as they are.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
}

/// A vector of `n` copies of `value`, on huge pages when the kernel gives
/// them ([`huge_pages`]).
pub fn huge_vec<T: Clone>(n: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    huge_pages(&v);
    v.resize(n, value);
    v
}

/// The atomic integers [`zeroed_atomics`] makes: all-zero bytes are a
/// valid value of each (zero).
pub trait ZeroAtomic: sealed::Sealed {}
impl ZeroAtomic for std::sync::atomic::AtomicU64 {}
impl ZeroAtomic for std::sync::atomic::AtomicU32 {}
mod sealed {
    pub trait Sealed {}
    impl Sealed for std::sync::atomic::AtomicU64 {}
    impl Sealed for std::sync::atomic::AtomicU32 {}
}

/// `n` atomics at zero, in zeroed memory from the allocator (`calloc`:
/// fresh pages are not written, hence not resident until used).
#[allow(unsafe_code)]
pub fn zeroed_atomics<T: ZeroAtomic>(n: usize) -> Box<[T]> {
    use std::alloc::{Layout, alloc_zeroed, handle_alloc_error};
    let Ok(layout) = Layout::array::<T>(n) else {
        panic!("{n} atomics overflow the address space");
    };
    if layout.size() == 0 {
        return Box::default();
    }
    // SAFETY: the layout has a non-zero size. The allocation is checked
    // for null, holds `n` elements of `T`'s size and alignment, and is
    // zeroed: all-zero bytes are a valid `T` (one of the sealed atomic
    // integer types). `Box<[T]>` frees it with the same layout (the
    // global allocator, `Layout::array::<T>(n)`).
    unsafe {
        let ptr = alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_change_nothing() {
        let v = huge_vec(3 << 20, 7u32);
        assert_eq!(v.len(), 3 << 20);
        assert!(v.iter().all(|&x| x == 7));
        prefetch(&v, 5);
        prefetch(&v, usize::MAX);
        let small: Vec<u8> = Vec::with_capacity(10);
        huge_pages(&small);
    }

    #[test]
    fn zeroed_atomics_are_zero() {
        use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
        let v: Box<[AtomicU32]> = zeroed_atomics(1 << 20);
        assert_eq!(v.len(), 1 << 20);
        assert!(v.iter().all(|x| x.load(Relaxed) == 0));
        v[7].fetch_add(1, Relaxed);
        assert_eq!(v[7].load(Relaxed), 1);
        let none: Box<[AtomicU32]> = zeroed_atomics(0);
        assert!(none.is_empty());
    }
}
