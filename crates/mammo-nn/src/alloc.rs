//! The C allocator's settings for tensor work.
//!
//! Every operation of the flex backend returns a fresh buffer, and a training step makes hundreds of
//! them of 0.1-8 MB. glibc serves blocks from 128 KB up (its threshold rises only as such blocks are
//! freed) with their own `mmap` and hands them back with `munmap`, and gives the top of its heap back
//! to the system once 128 KB of it is free: each new tensor then costs a page fault per 4 KB and the
//! kernel zeroing the page. That was a fifth of the classifier's training step on the thread that
//! drives it (`exc_page_fault`, `clear_page_erms`, `unmap_page_range`), and setting the two thresholds
//! made the step 0.6-0.75x as long (`bench/RESULTS.md`). Freed memory is kept for the next tensor instead.
//!
//! The training loops and `evaluate` ask for it: a step's buffers are the same every step, and an
//! evaluation's model calls on equal batches of tiles and patches likewise (standalone `evaluate` of a
//! quickstart 67 -> 58 s, peak unchanged). `explain` and `serve` leave glibc's defaults: there the kept
//! blocks of a 12-megapixel image's varied full-size buffers raised `explain`'s peak by 65-75 MiB for
//! a gain within this machine's noise, and the server's memory budget matters more. Once set, the
//! thresholds stay for the process: a quickstart's whole-image evaluation, after its training, runs with
//! them (its peak 605 MiB, 584 before).

/// Raises glibc's `mmap` threshold to 32 MiB and its trim threshold to 256 MiB, once per process.
/// Elsewhere (other C libraries, other systems) it does nothing.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes thresholds of the allocator's policy; valid at any time.
            // A refusal (0) leaves glibc's defaults, which are correct, only slower.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            }
        });
    }
}
