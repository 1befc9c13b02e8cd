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

/// mimalloc's `purge_delay` option (`mi_option_purge_delay` in its v2 API).
const OPTION_PURGE_DELAY: mi::mi_option_t = 15;

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

/// mini is a short-lived process: handing freed pages back to the OS only to
/// fault them in again costs more than it saves (2x on large evaluations).
pub fn keep_freed_memory() {
    // SAFETY: sets a process-wide allocator option; valid at any time.
    unsafe { mi::mi_option_set(OPTION_PURGE_DELAY, -1) };
}
