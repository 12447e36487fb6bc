use clap::Parser;

// Planning a fleet and loading a tick's cached state make and free millions of small
// strings; glibc's allocator spent a fifth of those runs in malloc/free (see the
// Performance section of README). mimalloc's v2 line halves an idle tick at the same peak.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = fleetwave::cli::Cli::parse();
    // Before any thread, for the commands that reach a Git remote: it sets an environment
    // variable while libgit2 starts (see git::start). The ones on local files skip it, and
    // the 3–4 MB libgit2 and OpenSSL take when started.
    use fleetwave::cli::Command as C;
    if !matches!(
        cli.command,
        C::Plan { .. }
            | C::Apply { .. }
            | C::Clusters { .. }
            | C::Init { .. }
            | C::Explain { .. }
            | C::Completions { .. }
    ) {
        fleetwave::git::start();
    }
    // Logs go to stderr: `RUST_LOG` filters them; by default the service says what it does
    // (ticks, held rollouts, rejected webhooks) and the one-shot commands only warn.
    let default = match cli.command {
        fleetwave::cli::Command::Serve { .. } => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into CI logs or collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        fleetwave::cli::Output::Json => logs.json().init(),
        fleetwave::cli::Output::Text => logs.init(),
    }
    fleetwave::cli::run(cli)
}
