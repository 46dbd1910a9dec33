//! Output formats shared by the commands, and the one way they write to standard output.
//!
//! Every command prints through [`out!`] and [`outln!`], never `print!`: `print!` panics when
//! the reader has gone (`pcitrack policy eval ... | head`), these return [`StdoutClosed`],
//! which `main` turns into a quiet exit with status 141, the status a shell reports for a
//! classic Unix tool killed by `SIGPIPE` (Rust ignores that signal, so the write fails with
//! `EPIPE` instead). The agent (`pcitrack run`) writes nothing to standard output.

use std::io::{BufWriter, Write};

use clap::ValueEnum;
use serde::{Serialize, Serializer};

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
    stdout_result(stdout.write_fmt(args).and_then(|()| stdout.flush()))
}

/// Room of the buffer JSON is streamed through: standard output is line-buffered, and pretty
/// JSON is a line per field, so unbuffered it would cost a `write` per field.
const JSON_BUFFER: usize = 64 << 10;

/// Writes `value` as pretty JSON (two-space indent, as `serde_json::to_string_pretty`) and a
/// newline to standard output, serialised straight into a buffer over it: a list of records
/// goes out as it is serialised, never as one string of the whole output.
///
/// # Errors
///
/// As [`write_stdout`]: [`StdoutClosed`] when the reader has gone; a serialisation error
/// (a map with non-string keys, which our rows do not have) or any other write error.
pub fn write_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = BufWriter::with_capacity(JSON_BUFFER, std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    stdout_result(written)
}

/// The environment variable that sets how many threads a command reads, parses and writes
/// large inputs and outputs with (default: the cores available); `1` does all of it on the
/// main thread, the way the parallel paths are checked against.
pub const THREADS_VAR: &str = "PCITRACK_CLI_THREADS";

/// How many threads a command may use for one large input or output: [`THREADS_VAR`] when
/// it is a positive number, else the cores available.
pub fn threads() -> usize {
    std::env::var(THREADS_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Rows per block of [`write_json_blocks`]: a few hundred KiB of pretty JSON.
const ROWS_PER_BLOCK: usize = 1024;

/// Writes the `len` rows `row(0)`, ..., `row(len - 1)` as [`write_json`] writes a list of
/// them (the same bytes), serialised on [`threads`] threads by [`write_json_blocks`].
///
/// # Errors
///
/// As [`write_json_blocks`].
pub fn write_json_rows<T, F>(len: usize, row: F) -> anyhow::Result<()>
where
    T: Serialize,
    F: Fn(usize) -> T + Sync,
{
    write_json_blocks(len, |rows, buf| {
        serde_json::to_writer_pretty(buf, &JsonList(|| rows.clone().map(&row)))
    })
}

/// Writes `len` rows as [`write_json`] writes a list of them (the same bytes, a newline
/// after), serialised on [`threads`] threads: the rows are cut into blocks, `block(range,
/// buffer)` writes the rows of `range` into `buffer` as a pretty JSON list of their own
/// (the bytes `serde_json::to_writer_pretty` gives), and this thread writes the blocks in
/// order, joined where the lists meet (`[\n  a\n]` and `[\n  b\n]` give `[\n  a,\n  b\n]`:
/// in a pretty list an element's text does not depend on its neighbours). Each thread
/// reuses its buffers.
///
/// # Errors
///
/// As [`write_json`]: [`StdoutClosed`] when the reader has gone (the other threads stop at
/// their next block); a serialisation error or any other write error.
pub fn write_json_blocks<F>(len: usize, block: F) -> anyhow::Result<()>
where
    F: Fn(std::ops::Range<usize>, &mut Vec<u8>) -> serde_json::Result<()> + Sync,
{
    let blocks = len.div_ceil(ROWS_PER_BLOCK);
    let threads = threads().min(blocks).max(1);
    let block = |b: usize, buf: &mut Vec<u8>| {
        buf.clear();
        block(b * ROWS_PER_BLOCK..((b + 1) * ROWS_PER_BLOCK).min(len), buf)
    };
    let mut out = BufWriter::with_capacity(JSON_BUFFER, std::io::stdout().lock());
    if len == 0 {
        return stdout_result(out.write_all(b"[]\n").and_then(|()| out.flush()));
    }
    std::thread::scope(|s| -> anyhow::Result<()> {
        // Worker `w` serialises blocks `w`, `w + threads`, ...; this thread the blocks `0`,
        // `threads`, ... and writes them all. A worker runs at most one block ahead (its
        // channel holds one) and gets its buffers back to fill again.
        let mut workers = Vec::new();
        for w in 1..threads {
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
            let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let block = &block;
            s.spawn(move || {
                for b in (w..blocks).step_by(threads) {
                    let mut buf = back_rx.try_recv().unwrap_or_default();
                    let made = block(b, &mut buf).map(|()| buf);
                    let failed = made.is_err();
                    if done_tx.send(made).is_err() || failed {
                        return;
                    }
                }
            });
            workers.push((done_rx, back_tx));
        }
        let mut own = Vec::new();
        for b in 0..blocks {
            let w = b % threads;
            let buf = if w == 0 {
                block(b, &mut own)?;
                std::mem::take(&mut own)
            } else {
                workers[w - 1]
                    .0
                    .recv()
                    .expect("a serialising thread stopped early")?
            };
            let items = join_point(&buf, b == 0);
            let io = if b == 0 {
                out.write_all(items)
            } else {
                out.write_all(b",\n").and_then(|()| out.write_all(items))
            };
            stdout_result(io)?;
            if w == 0 {
                own = buf;
            } else {
                // A worker that has finished has dropped its end: the buffer is freed.
                let _ = workers[w - 1].1.send(buf);
            }
        }
        stdout_result(out.write_all(b"\n]\n").and_then(|()| out.flush()))
    })
}

/// The part of a block (a non-empty pretty JSON list, `[\n  ...\n]`) that goes into the
/// whole list: all but its closing `\n]`, and but its opening `[\n` unless it is the
/// first.
fn join_point(block: &[u8], first: bool) -> &[u8] {
    debug_assert!(block.starts_with(b"[\n") && block.ends_with(b"\n]"));
    &block[if first { 0 } else { 2 }..block.len() - 2]
}

/// A write to standard output's result, a closed pipe as [`StdoutClosed`].
fn stdout_result(written: std::io::Result<()>) -> anyhow::Result<()> {
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// A JSON list serialised from an iterator as it goes, with the same bytes a `Vec` of the
/// same items gives: rows are made one at a time and written, never collected. The closure
/// makes the iterator (serialising takes `&self`).
pub struct JsonList<F>(pub F);

impl<F, I> Serialize for JsonList<F>
where
    F: Fn() -> I,
    I: IntoIterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
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
    use super::JsonList;

    #[test]
    fn a_streamed_list_has_the_bytes_of_a_vec() {
        for rows in [
            vec![],
            vec![serde_json::json!({"a": {"b": [1, 2]}, "c": "d"}); 3],
        ] {
            let streamed = serde_json::to_string_pretty(&JsonList(|| rows.iter())).unwrap();
            assert_eq!(streamed, serde_json::to_string_pretty(&rows).unwrap());
            // A filtered iterator does not know its length: still the same bytes.
            let filtered = JsonList(|| rows.iter().filter(|_| true));
            assert_eq!(
                serde_json::to_string_pretty(&filtered).unwrap(),
                serde_json::to_string_pretty(&rows).unwrap()
            );
        }
    }

    #[test]
    fn aligns_columns() {
        let t = super::table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }
}
