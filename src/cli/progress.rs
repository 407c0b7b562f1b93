//! Upload progress on standard error: a bar with bytes, rate and time left on a terminal, and
//! plain lines elsewhere (CI logs), at most one every few seconds or tenth of the way.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, lines otherwise.
    Auto,
    /// Always the bar.
    Bar,
    /// Always lines.
    Plain,
    /// Nothing.
    None,
}

/// A running progress display. Shared by the parallel senders of one push.
pub struct Progress {
    total: u64,
    display: Display,
}

enum Display {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
    Silent,
}

struct Lines {
    initial: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    last_tenth: u64,
}

/// Seconds between plain lines at most.
const LINE_INTERVAL: Duration = Duration::from_secs(5);

impl Progress {
    /// Starts a display for `total` bytes, `already` of which the server holds.
    pub fn start(mode: ProgressMode, total: u64, already: u64) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        };
        let display = match mode {
            ProgressMode::Bar => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
                let style = ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec}, {eta} left",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_position(already);
                bar.reset_eta();
                Display::Bar(bar)
            }
            ProgressMode::Plain => {
                let now = Instant::now();
                Display::Lines(Mutex::new(Lines {
                    initial: already,
                    done: already,
                    started: now,
                    last_line: now,
                    last_tenth: 0,
                }))
            }
            _ => Display::Silent,
        };
        Progress { total, display }
    }

    /// `bytes` more reached the server.
    pub fn advance(&self, bytes: u64) {
        match &self.display {
            Display::Bar(bar) => bar.inc(bytes),
            Display::Lines(lines) => {
                let Ok(mut lines) = lines.lock() else { return };
                lines.done = lines.done.saturating_add(bytes).min(self.total);
                let tenth = lines.done.saturating_mul(10) / self.total.max(1);
                let now = Instant::now();
                if tenth > lines.last_tenth || now.duration_since(lines.last_line) >= LINE_INTERVAL {
                    lines.last_tenth = tenth;
                    lines.last_line = now;
                    let line = plain_line(lines.initial, lines.done, self.total, now.duration_since(lines.started));
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
            }
            Display::Silent => {}
        }
    }

    /// `bytes` that were counted must be sent again (a part failed).
    pub fn retract(&self, bytes: u64) {
        match &self.display {
            Display::Bar(bar) => bar.set_position(bar.position().saturating_sub(bytes)),
            Display::Lines(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.done = lines.done.saturating_sub(bytes);
                }
            }
            Display::Silent => {}
        }
    }

    /// Ends the display.
    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}

/// `uploaded 512.00 MiB of 1.00 GiB (50%), 210.3 MiB/s, about 3 s left`; the rate counts only
/// what this run sent (`initial` was on the server before).
fn plain_line(initial: u64, done: u64, total: u64, elapsed: Duration) -> String {
    let percent = done.saturating_mul(100) / total.max(1);
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 { done.saturating_sub(initial) as f64 / seconds } else { 0.0 };
    let left = if rate > 0.0 && done < total {
        format!(", about {} s left", ((total - done) as f64 / rate).ceil())
    } else {
        String::new()
    };
    format!("uploaded {} of {} ({percent}%), {}/s{left}", HumanBytes(done), HumanBytes(total), HumanBytes(rate as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_bytes_rate_and_time_left() {
        let line = plain_line(0, 512 << 20, 1 << 30, Duration::from_secs(2));
        assert_eq!(line, "uploaded 512.00 MiB of 1.00 GiB (50%), 256.00 MiB/s, about 2 s left");
        assert_eq!(plain_line(0, 10, 10, Duration::from_secs(1)), "uploaded 10 B of 10 B (100%), 10 B/s");
        let resumed = plain_line(768 << 20, 896 << 20, 1 << 30, Duration::from_secs(1));
        assert!(resumed.contains("(87%), 128.00 MiB/s"), "{resumed}");
    }
}
