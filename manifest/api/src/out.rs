//! Standard output for commands: a reader that goes away (`fvfsc diff A B | head`) ends
//! the command quietly, as it ends `cat` or `git log`, instead of a panic with a
//! backtrace. Use [`outln!`](crate::outln) and [`out!`](crate::out) where `println!`
//! and `print!` would go, and [`quiet_on_closed_pipe`] on a command's error.

use std::error::Error;
use std::fmt::Arguments;
use std::io::{ErrorKind, Write};

/// The exit status of a command whose reader went away: what a shell reports for a
/// process ended by SIGPIPE (128 + 13).
pub const CLOSED_PIPE: i32 = 141;

/// Writes to stdout; exits with [`CLOSED_PIPE`] if its reader is gone.
pub fn write(args: Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(CLOSED_PIPE);
        }
        panic!("cannot write to stdout: {e}");
    }
}

/// Prints `value` as pretty JSON, or its human form (`human`).
pub fn json_or<T: serde::Serialize + ?Sized>(
    value: &T,
    json: bool,
    human: impl FnOnce(&T) -> String,
) {
    if json {
        let text = serde_json::to_string_pretty(value).expect("API values serialise");
        write(format_args!("{text}\n"));
    } else {
        write(format_args!("{}", human(value)));
    }
}

/// Prints `value` as pretty JSON.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) {
    json_or(value, true, |_| String::new());
}

/// Exits quietly with [`CLOSED_PIPE`] if an error's chain of causes (`anyhow`'s
/// `chain()`) holds a closed pipe.
pub fn quiet_on_closed_pipe<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) {
    let closed = chain.into_iter().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    });
    if closed {
        std::process::exit(CLOSED_PIPE);
    }
}

/// `println!` to stdout that ends the process quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` to stdout that ends the process quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}
