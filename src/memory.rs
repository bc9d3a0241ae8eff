//! Giving freed memory back to the system after a burst of short-lived allocations, such as
//! parsing a job file with thousands of jobs: glibc's malloc keeps freed heap pages mapped,
//! so an idle daemon would otherwise stay as large as its parse was. Also: the C library's
//! `pow` is defined here, so that glibc's libm is not loaded for it.

/// Return the heap's free pages to the system (glibc's `malloc_trim`). Cheap when there is
/// little to give back; a no-op on other C libraries.
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and trims malloc's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How much more than asked malloc grows a heap by while [`with_headroom`] runs.
const HEADROOM: usize = 16 << 20;

/// Blocks up to this size come from the heap while [`with_headroom`] runs, not from mmap.
const HEAP_BLOCKS: usize = 4 << 20;

/// glibc's defaults for the mmap and trim thresholds (which no longer adapt once set).
const DEFAULT_THRESHOLD: usize = 128 << 10;

/// Run `f` with malloc growing its heaps in large steps (`M_TOP_PAD`) instead of a few
/// pages at a time, and serving blocks of up to 4 MiB from them (`M_MMAP_THRESHOLD`).
/// Two threads that parse a large job file at once otherwise take turns on the process's
/// memory map at every step (the parse of 10,000 jobs took 13 to 21 ms on two threads,
/// 12 ms with the headroom), and the parser's scratch space for each piece of the file
/// (a few hundred KiB) would be fresh pages from mmap each time instead of the pages the
/// last piece freed. What is left over is given back by [`release_freed`]. Afterwards
/// both thresholds are glibc's defaults of 128 KiB, fixed (they no longer adapt), which
/// changes nothing that matters here.
pub fn with_headroom<R>(f: impl FnOnce() -> R) -> R {
    tune(HEADROOM, HEAP_BLOCKS, HEADROOM);
    let result = f();
    tune(0, DEFAULT_THRESHOLD, DEFAULT_THRESHOLD);
    result
}

/// Turn malloc's fast bins off for the rest of the process: every block freed is merged with
/// its free neighbours at once, instead of when malloc next tidies up. For a daemon that
/// gives memory back after a peak this matters: blocks freed into fast bins were merged
/// only by [`release_freed`], into the free top of a thread's heap, which `malloc_trim`
/// does not give back for the heaps of threads other than the main one. After loading
/// 10,000 jobs in pieces, one parse thread's heap (taken over by a daemon thread) stayed
/// resident, ~3.5 MB, in 6 of 16 starts; 0 of 16 with this. It costs a little on every
/// free: ~4% more daemon CPU in a burst of 1,000 starts (14 interleaved pairs).
pub fn merge_freed_at_once() {
    #[cfg(target_env = "gnu")]
    set(libc::M_MXFAST, 0);
}

fn tune(top_pad: usize, mmap_threshold: usize, trim_threshold: usize) {
    #[cfg(target_env = "gnu")]
    {
        set(libc::M_TOP_PAD, top_pad);
        set(libc::M_MMAP_THRESHOLD, mmap_threshold);
        set(libc::M_TRIM_THRESHOLD, trim_threshold);
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = (top_pad, mmap_threshold, trim_threshold);
}

#[cfg(target_env = "gnu")]
fn set(parameter: libc::c_int, value: usize) {
    // SAFETY: mallopt only changes malloc's tuning parameters; it takes no pointers.
    unsafe {
        libc::mallopt(parameter, value.try_into().unwrap_or(i32::MAX));
    }
}

/// `pow` for the whole process, from the `libm` crate. Its only callers are tokio's worker
/// statistics (an average of task poll times) and a metrics histogram's bounds; defined
/// here, it keeps glibc's libm out of the process, whose loading (its IFUNC resolvers and
/// the pages around them) left 0.3-0.6 MB of it resident in an idle daemon. A program
/// that links this library gets this `pow` instead of libm's; both are accurate to within
/// an ulp or so, and nothing here depends on the last bit.
#[cfg(target_env = "gnu")]
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    #[test]
    fn pow_is_the_power_function() {
        assert_eq!(super::pow(2.0, 10.0), 1024.0);
        assert_eq!(super::pow(4.0, 0.5), 2.0);
        assert_eq!(super::pow(7.5, 0.0), 1.0);
        assert!((super::pow(0.9, 3.0) - 0.729).abs() < 1e-15);
        assert!(super::pow(-1.0, 0.5).is_nan());
        // What `f64::powf` calls is this function.
        assert_eq!(std::hint::black_box(1.5f64).powf(2.0), 2.25);
    }
}
