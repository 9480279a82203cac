//! Progress while blobs upload: on a terminal, one status line redrawn in
//! place; in CI (no TTY), one line per finished blob and a total every 15 s —
//! never a flood. Retries roll the byte count back, so the figure never runs
//! ahead of what the registry holds.
//!
//! The redrawn line clears itself with an escape code (erase line) only
//! when colours are on (`--color`, NO_COLOR: see [`set_escapes`]);
//! otherwise it returns with `\r` and pads with spaces, so a terminal that
//! asked for no escape codes gets none.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Whether terminal escape codes may be written; `main` sets it once, from
/// `--color` and NO_COLOR, before anything runs.
static ESCAPES: AtomicBool = AtomicBool::new(false);

pub fn set_escapes(on: bool) {
    ESCAPES.store(on, Ordering::Relaxed);
}

pub struct Progress {
    pub total_bytes: u64,
    pub total_blobs: usize,
    done_bytes: AtomicU64,
    done_blobs: AtomicUsize,
    start: Instant,
    tty: bool,
    quiet: bool,
    escapes: bool,
    /// Width of the status line last drawn, for clearing it without escapes.
    drawn: AtomicUsize,
    stopped: AtomicBool,
}

impl Progress {
    pub fn new(total_bytes: u64, total_blobs: usize, quiet: bool) -> Arc<Progress> {
        Arc::new(Progress {
            total_bytes,
            total_blobs,
            done_bytes: AtomicU64::new(0),
            done_blobs: AtomicUsize::new(0),
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            quiet,
            escapes: ESCAPES.load(Ordering::Relaxed),
            drawn: AtomicUsize::new(0),
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
        if self.quiet {
            return;
        }
        if self.tty {
            eprintln!("{}{line}", self.clear());
            self.draw();
        } else {
            eprintln!("{line}");
        }
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

    /// What takes the cursor back to the start of an empty line.
    fn clear(&self) -> String {
        let width = self.drawn.swap(0, Ordering::Relaxed);
        if self.escapes {
            "\r\x1b[2K".to_string()
        } else {
            format!("\r{:width$}\r", "")
        }
    }

    fn draw(&self) {
        let status = self.status();
        eprint!("{}{status}", self.clear());
        self.drawn.store(status.chars().count(), Ordering::Relaxed);
        let _ = std::io::stderr().flush();
    }

    /// Redraw (terminal) or report (CI) until [`Progress::stop`].
    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            if me.quiet {
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
                    eprintln!("progress: {}", me.status());
                }
            }
        })
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        if self.tty && !self.quiet {
            eprint!("{}", self.clear());
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
