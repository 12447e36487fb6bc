//! `fleetwave completions SHELL`: the shell completion script, generated from the clap
//! definition of the command line, printed to stdout.
//!
//! ```sh
//! fleetwave completions bash > /etc/bash_completion.d/fleetwave
//! fleetwave completions zsh > "${fpath[1]}/_fleetwave"
//! fleetwave completions fish > ~/.config/fish/completions/fleetwave.fish
//! ```

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
pub use clap_complete::Shell;

use crate::app::args::Cli;

/// Write the completion script for `shell` to `out`.
pub fn write(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// The `completions` command: the script on stdout, exit 0 (2 when stdout cannot be written).
pub fn print(shell: Shell, stdout: &mut dyn Write) -> ExitCode {
    let mut buf = Vec::new();
    write(shell, &mut buf);
    match stdout.write_all(&buf).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the completion script: {e}");
            ExitCode::from(2)
        }
    }
}
