use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = fleetwave::cli::Cli::parse();
    fleetwave::cli::run(cli)
}
