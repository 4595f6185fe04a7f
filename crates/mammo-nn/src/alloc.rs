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
//! The training loops, `evaluate` and the `explain` command ask for it: a step's buffers are the same
//! every step, and the model calls on equal batches of tiles and patches likewise (standalone `evaluate`
//! of a quickstart 79 -> 66 s; `explain` of a 12-megapixel image about 15 % less wall time, of a
//! 1-megapixel one 10 %, its page faults' system time a third). The cost is peak memory: the freed
//! full-size buffers of a 12-megapixel image stay in the heap (`explain`'s peak 204 -> 275 MiB, still
//! below the 295 MiB it had before its display image was kept as bytes). `serve` and the lab leave
//! glibc's defaults: a server's memory budget matters more than a tenth of a second. Once set, the
//! thresholds stay for the process: a quickstart's whole-image evaluation, after its training, runs
//! with them (its peak 605 MiB, 584 before).
//!
//! One arena for every thread: each glibc arena keeps its own freed blocks up to the trim threshold,
//! and once a step's tensor work ran on rayon's threads (`device::on_pool`) instead of the calling one,
//! the buffers were spread over more arenas: standalone `evaluate` of a quickstart peaked at 404 MiB
//! instead of 304. With one arena it peaks at 321 MiB, as fast (65.7 against 64.4 s), and the training
//! step did not slow either (the buffers are large, so contention for the arena's lock is rare).

/// Raises glibc's `mmap` threshold to 32 MiB and its trim threshold to 256 MiB, and keeps one arena for
/// the threads that first allocate from then on, once per process: call it before the thread pool
/// starts (`select_device`). Elsewhere (other C libraries, other systems) it does nothing.
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
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        });
    }
}
