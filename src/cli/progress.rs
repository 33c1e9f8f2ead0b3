//! Progress drawn with indicatif on a terminal; nothing when stderr is piped.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use relic::progress::{Progress, Unit};
use std::io::IsTerminal;

pub struct Bar {
    bar: ProgressBar,
    quiet: bool,
}

impl Bar {
    /// A bar on stderr when it is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> Bar {
        let bar = ProgressBar::hidden();
        if !quiet && std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        Bar { bar, quiet }
    }
}

impl Bar {
    /// True when the bar is drawn (a terminal, no `-q`): work done only to
    /// give it a total is wasted otherwise.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Prints a step line above the bar (or plainly when there is none);
    /// nothing under `-q`.
    pub fn say(&self, msg: &str) {
        if !self.quiet {
            self.bar.suspend(|| eprintln!("{msg}"));
        }
    }
}

impl Progress for Bar {
    fn start(&self, phase: &str, total: Option<u64>, unit: Unit) {
        let template = match (total, unit) {
            (Some(_), Unit::Bytes) => {
                "{msg:>14} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            }
            (None, Unit::Bytes) => "{msg:>14} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
            (Some(_), Unit::Items) => "{msg:>14} [{bar:30}] {percent:>3}% {pos}/{len} eta {eta}",
            (None, Unit::Items) => "{msg:>14} {spinner} {pos} {per_sec} {elapsed}",
        };
        self.bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        self.bar.reset();
        match total {
            Some(t) => self.bar.set_length(t),
            None => self.bar.unset_length(),
        }
        self.bar.set_message(phase.to_string());
    }

    fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn warn(&self, msg: &str) {
        self.bar.suspend(|| eprintln!("warning: {msg}"));
    }
}
