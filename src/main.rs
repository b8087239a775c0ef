use clap::Parser;

use shipit::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    // rustls logs each certificate it refuses; shipit says so itself, with what to do.
    let filter = match (cli.quiet, cli.verbose) {
        (true, _) => "error,rustls=off",
        (false, 0) => "warn,rustls=off",
        (false, 1) => "shipit=info",
        (false, _) => "shipit=debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHIPIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(shipit::ui::log_writer)
        .with_ansi(shipit::ui::colour())
        .with_target(false)
        .init();
    shipit::ui::set_quiet(cli.quiet);
    shipit::fleet::raise_open_file_limit();
    shipit::ui::set_verbose(cli.verbose > 0 || std::env::var_os("SHIPIT_LOG").is_some());

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say_error(&format!("cannot start the async runtime: {e}"));
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        let result = cli::run(cli).await;
        // The forwards of the run's checks, closed before a kept master outlives the run.
        shipit::probe::finish().await;
        result
    });
    if let Err(e) = result {
        // `shipit exec`'s command said what it had to say; its code is ours.
        if !matches!(e, shipit::error::Error::CommandExit { .. }) {
            say_error(&e.to_string());
        }
        std::process::exit(e.exit_code());
    }
}

/// `error: ...` on stderr; a stderr that is gone (a closed terminal) is no reason to panic.
fn say_error(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "error: {message}");
}
