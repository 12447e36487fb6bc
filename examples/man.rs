//! Writes fleetwave's man pages (fleetwave.1 and one page per command, e.g.
//! fleetwave-reconcile.1) into a directory, from the clap definition of the command line.
//! The release workflow puts them in every archive:
//!
//! ```sh
//! cargo run --locked --example man -- target/man
//! man -l target/man/fleetwave.1
//! ```

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target/man".into());
    std::fs::create_dir_all(&out)?;
    let cmd = fleetwave::cli::Cli::command();
    clap_mangen::generate_to(cmd, &out)?;
    eprintln!("man pages written to {}", out.display());
    Ok(())
}
