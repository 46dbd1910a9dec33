//! Output formats shared by the commands, and the one way they write to standard output.
//!
//! Every command prints through [`out!`] and [`outln!`], never `print!`: `print!` panics when
//! the reader has gone (`pcitrack policy eval ... | head`), these return [`StdoutClosed`],
//! which `main` turns into a quiet exit with status 141, the status a shell reports for a
//! classic Unix tool killed by `SIGPIPE` (Rust ignores that signal, so the write fails with
//! `EPIPE` instead). The agent (`pcitrack run`) writes nothing to standard output.

use std::io::Write;

use clap::ValueEnum;

/// Standard output was closed by its reader. Not a failure of the command: `main` exits
/// quietly with [`StdoutClosed::EXIT_STATUS`].
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed by its reader")]
pub struct StdoutClosed;

impl StdoutClosed {
    /// 128 + SIGPIPE (13): what a shell reports for `cat`, `grep` or `yes` cut off by `head`.
    pub const EXIT_STATUS: u8 = 141;
}

/// Writes `args` to standard output and flushes it.
///
/// # Errors
///
/// [`StdoutClosed`] when the reader has gone (`EPIPE`); any other write error as it is,
/// with the context that it was standard output.
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// `print!` for commands: returns from the enclosing function (with `?`) when standard
/// output fails, a closed pipe included.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!($($arg)*))?
    };
}

/// `println!` for commands; see [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
}

/// Renders rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = String>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                l.push_str(&cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().map(|h| h.to_string()));
    for row in rows {
        line(&mut row.iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns() {
        let t = super::table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }
}
