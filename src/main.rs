//! The `orrery` binary: everything lives in the library; see `orrery::cli`.

/// jemalloc rather than the C library's allocator: with a thread per core and ten thousand
/// pods' watches, workers and status writes, it halved the time `orrery bench cluster --pods
/// 10000` takes until every pod is available (148 s to 74 s), at the same resident memory.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Freed pages go back to the system within a second, by a background thread, so resident
/// memory follows what the cluster holds rather than its peak. One arena, not jemalloc's four
/// per CPU: the cluster's allocations come from a few runtime threads, each thread's cache
/// takes most of them without the arena's lock, and every further arena keeps its own
/// part-filled pages (15 MiB of 400 with 10,000 simulated pods, at no cost in speed).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] =
    b"background_thread:true,narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    orrery::cli::main()
}
