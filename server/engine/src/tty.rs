//! A passphrase typed at the terminal, not echoed.

use std::io::BufRead;

use anyhow::Result;

/// Asks `prompt` on stderr and reads a line from the terminal without echo; `None`
/// when standard input is not a terminal.
pub fn read_hidden(prompt: &str) -> Result<Option<String>> {
    use rustix::termios::{isatty, tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let stdin = std::io::stdin();
    if !isatty(&stdin) {
        return Ok(None);
    }
    eprint!("{prompt}: ");
    let old = tcgetattr(&stdin)?;
    let mut quiet = old.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, OptionalActions::Now, &old)?;
    eprintln!();
    read?;
    Ok(Some(line.trim_end_matches(['\n', '\r']).to_owned()))
}
