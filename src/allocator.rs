//! The process allocator. Evaluation allocates many small, short-lived
//! objects (thunks, environments, strings); mimalloc serves that pattern
//! markedly faster than glibc. We call its plain `mi_malloc` whenever the
//! requested alignment is one it guarantees anyway, because its aligned entry
//! point (which the `mimalloc` crate always uses) costs about 10% of all
//! instructions of a large evaluation.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Every mimalloc block is aligned to this (`MI_MAX_ALIGN_SIZE`).
const GUARANTEED_ALIGN: usize = 16;

/// mimalloc's `mi_option_purge_delay` (v2 API).
const OPTION_PURGE_DELAY: mi::mi_option_t = 15;

/// `PR_SET_THP_DISABLE` from `<linux/prctl.h>`.
const PR_SET_THP_DISABLE: std::ffi::c_int = 41;

extern "C" {
    fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
}

pub struct Mimalloc;

// SAFETY: each method forwards to the mimalloc function with the same
// contract, using the aligned variants whenever `layout` asks for more
// alignment than every block has.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGN {
            mi::mi_malloc(layout.size()) as *mut u8
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGN {
            mi::mi_zalloc(layout.size()) as *mut u8
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr as *mut c_void)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGN {
            mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}

/// Tunes mimalloc for a short-lived process; call first thing in `main`.
///
/// - Freed pages are kept rather than handed back to the OS only to be
///   faulted in again (2x on large evaluations).
/// - No transparent huge pages: faulting them in made the same evaluation
///   take anywhere from 0.2 s to 0.6 s here; with 4 KiB pages it takes the
///   same time on every run.
pub fn configure() {
    // SAFETY: sets a process-wide allocator option, and a process flag that
    // only changes the page size the kernel backs memory with. A failure of
    // prctl (an old kernel) just leaves huge pages on.
    unsafe {
        mi::mi_option_set(OPTION_PURGE_DELAY, -1);
        prctl(
            PR_SET_THP_DISABLE,
            1 as std::ffi::c_ulong,
            0 as std::ffi::c_ulong,
            0 as std::ffi::c_ulong,
            0 as std::ffi::c_ulong,
        );
    }
}
