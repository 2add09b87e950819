//! Writing to the terminal without `println!`'s panic. `println!` and `eprintln!` panic when
//! the stream cannot be written: a log file on a full disk, a pipe whose reader left
//! (`dat-mirror status | head`). A daemon must outlive its log's disk filling up, and a
//! command whose output cannot be written reports that as its error.
//!
//! - [`outln!`]/[`out!`]: a command's output on stdout; they return `io::Result` (use `?`).
//! - [`bannerln!`]: a daemon's start-up lines on stdout (scripts wait for them); a failed
//!   write is dropped, the daemon goes on.
//! - [`noteln!`]: notes and errors on stderr; a failed write is dropped (there is nowhere
//!   left to report it).

/// `println!` to stdout, returning the write's `io::Result` instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        writeln!(::std::io::stdout().lock(), $($arg)*).map_err($crate::util::console::output_error)
    }};
}

/// `print!` to stdout (flushed), returning the write's `io::Result` instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut stdout = ::std::io::stdout().lock();
        write!(stdout, $($arg)*)
            .and_then(|()| stdout.flush())
            .map_err($crate::util::console::output_error)
    }};
}

/// A daemon's line on stdout; a stdout that cannot be written is ignored.
#[macro_export]
macro_rules! bannerln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!(::std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` without the panic: a stderr that cannot be written is ignored.
#[macro_export]
macro_rules! noteln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

/// A failed write to stdout, said as such (the bare error reads "No space left on device").
pub fn output_error(e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot write the output: {e}"))
}
