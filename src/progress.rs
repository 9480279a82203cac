//! Progress while blobs upload: on a terminal, one status line redrawn in
//! place; in CI (no TTY), one line per finished blob and a total every 15 s —
//! never a flood. Retries roll the byte count back, so the figure never runs
//! ahead of what the registry holds. The line itself is drawn by
//! [`crate::output`], which clears it before any other line prints.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::output;

pub struct Progress {
    pub total_bytes: u64,
    pub total_blobs: usize,
    done_bytes: AtomicU64,
    done_blobs: AtomicUsize,
    start: Instant,
    tty: bool,
    stopped: AtomicBool,
}

impl Progress {
    pub fn new(total_bytes: u64, total_blobs: usize) -> Arc<Progress> {
        Arc::new(Progress {
            total_bytes,
            total_blobs,
            done_bytes: AtomicU64::new(0),
            done_blobs: AtomicUsize::new(0),
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            stopped: AtomicBool::new(false),
        })
    }

    pub fn add(&self, n: u64) {
        self.done_bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn rollback(&self, n: u64) {
        self.done_bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// A blob is finished (uploaded, mounted or already there).
    pub fn blob_done(&self, line: &str) {
        self.done_blobs.fetch_add(1, Ordering::Relaxed);
        output::say(line);
        self.draw();
    }

    fn status(&self) -> String {
        let done = self.done_bytes.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        format!(
            "{}/{} blobs, {} of {} ({}/s)",
            self.done_blobs.load(Ordering::Relaxed),
            self.total_blobs,
            bytes(done),
            bytes(self.total_bytes),
            bytes((done as f64 / secs) as u64)
        )
    }

    /// The status line, on a terminal and without -q.
    fn draw(&self) {
        if self.tty && !output::quiet() && !self.stopped.load(Ordering::Relaxed) {
            output::status(&self.status());
        }
    }

    /// Redraw (terminal) or report (CI) until [`Progress::stop`].
    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            if output::quiet() {
                return;
            }
            let period = if me.tty {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(15)
            };
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            while !me.stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                if me.stopped.load(Ordering::Relaxed) {
                    break;
                }
                if me.tty {
                    me.draw();
                } else {
                    output::say(&format!("progress: {}", me.status()));
                }
            }
        })
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        if self.tty {
            output::clear_status();
        }
    }
}

/// 1536 → "1.5 KiB"
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes() {
        assert_eq!(super::bytes(12), "12 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 << 30), "3.0 GiB");
    }
}
