//! Progress bars on a terminal (rows, rate, ETA per table); nothing at all when not on a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A set of progress bars, or nothing.
pub struct Progress {
    multi: Option<MultiProgress>,
}

/// One table's bar, or nothing.
#[derive(Clone)]
pub struct TableBar(Option<ProgressBar>);

impl Progress {
    /// Bars drawn on stderr when `enabled`.
    pub fn new(enabled: bool) -> Progress {
        Progress { multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
    }

    /// A bar for a table of `rows` rows.
    pub fn table_bar(&self, table: &str, rows: u64) -> TableBar {
        TableBar(self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(rows));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>20!} [{bar:30}] {human_pos}/{human_len} rows {per_sec} eta {eta}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(table.to_string());
            bar
        }))
    }

    /// Removes the bars.
    pub fn finish(&self) {
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

impl TableBar {
    /// Counts `rows` more rows done.
    pub fn advance(&self, rows: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(rows);
        }
    }

    /// Marks the table done.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}
