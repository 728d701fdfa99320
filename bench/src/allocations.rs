//! How many heap allocations the handler's threads make, and how many bytes they ask for.
//!
//! The bench's process allocates with glibc's malloc, as deliver's bootstrap does
//! (docs/DECISIONS.md, "Start-up"); this wraps it and counts what the threads marked as
//! the handler's allocate (the thread blocking on the handler's future and the runtime's
//! workers), not the receiver's. Reallocations count as one allocation of their new size:
//! each may copy, and each is a call into the allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counting;

static CALLS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Const-initialised and without a destructor, so reading it from inside the
    // allocator never allocates.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to `System` unchanged; only counters are touched beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Count this thread's allocations from now on (the handler's threads).
pub fn count_this_thread() {
    COUNTED.with(|counted| counted.set(true));
}

/// Allocations and bytes asked for by the counted threads so far.
#[derive(Clone, Copy)]
pub struct Allocated {
    pub calls: u64,
    pub bytes: u64,
}

pub fn so_far() -> Allocated {
    Allocated {
        calls: CALLS.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
    }
}

impl std::ops::Sub for Allocated {
    type Output = Allocated;

    fn sub(self, before: Allocated) -> Allocated {
        Allocated {
            calls: self.calls.saturating_sub(before.calls),
            bytes: self.bytes.saturating_sub(before.bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_threads_allocations_are_counted_and_others_are_not() {
        let uncounted = std::thread::spawn(|| {
            let before = so_far();
            let kept: Vec<Box<u64>> = (0..100).map(Box::new).collect();
            let after = so_far();
            drop(kept);
            (before, after)
        });
        let (before, after) = uncounted.join().unwrap();
        // Other tests' threads are not counted either, so nothing moved.
        assert_eq!((after - before).calls, 0);

        std::thread::spawn(|| {
            count_this_thread();
            let before = so_far();
            let kept: Vec<Box<u64>> = (0..100).map(Box::new).collect();
            let moved = so_far() - before;
            drop(kept);
            // A hundred boxes of 8 bytes and the vector's one allocation of 800.
            assert_eq!(moved.calls, 101);
            assert_eq!(moved.bytes, 100 * 8 + 800);
        })
        .join()
        .unwrap();
    }
}
