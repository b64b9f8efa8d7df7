//! `NEEDLE_CUDA_TRACE=1`: the time each stage of a search takes, for diagnosis on a
//! GPU host where no timeline profiler runs.
//!
//! A stage ends with a synchronisation, so a traced search is slower than an untraced
//! one; what the trace shows is where host-side time goes between the kernels that
//! Nsight Compute times (launch and library-call overhead, copies, the host re-rank).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

use cudarc::driver::CudaStream;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("NEEDLE_CUDA_TRACE").is_ok_and(|v| v == "1"))
}

/// Marks the end of each stage of one search; does nothing unless tracing is on.
pub(crate) struct StageTrace {
    last: Cell<Option<Instant>>,
}

impl StageTrace {
    pub(crate) fn start() -> StageTrace {
        StageTrace {
            last: Cell::new(enabled().then(Instant::now)),
        }
    }

    /// Waits for `stream`, then prints the time since the previous mark.
    pub(crate) fn mark(&self, stream: &CudaStream, stage: &str) {
        if let Some(last) = self.last.get() {
            let synced = stream.synchronize();
            let now = Instant::now();
            eprintln!(
                "cuda trace: {stage:<20} {:>9.1} us{}",
                (now - last).as_secs_f64() * 1e6,
                if synced.is_err() {
                    " (sync failed)"
                } else {
                    ""
                }
            );
            self.last.set(Some(now));
        }
    }

    /// Prints the time since the previous mark of host-only work.
    pub(crate) fn mark_host(&self, stage: &str) {
        if let Some(last) = self.last.get() {
            let now = Instant::now();
            eprintln!(
                "cuda trace: {stage:<20} {:>9.1} us",
                (now - last).as_secs_f64() * 1e6
            );
            self.last.set(Some(now));
        }
    }
}
