//! Giving freed memory back to the system after a burst of short-lived allocations, such as
//! parsing a job file with thousands of jobs: glibc's malloc keeps freed heap pages mapped,
//! so an idle daemon would otherwise stay as large as its parse was.

/// Return the heap's free pages to the system (glibc's `malloc_trim`). Cheap when there is
/// little to give back; a no-op on other C libraries.
pub fn release_freed() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and trims malloc's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
