//! The `werk` binary: parse flags, start logging, bind, run.

use std::process::ExitCode;
use werk::config::{Action, Config, HELP};
use werk::net::Server;

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(Action::Run(c)) => c,
        Ok(Action::Version) => {
            println!(
                "werk {} (Faktory protocol {}), MIT OR Apache-2.0",
                env!("CARGO_PKG_VERSION"),
                werk::core::FAKTORY_COMPAT_VERSION
            );
            return ExitCode::SUCCESS;
        }
        Ok(Action::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("werk: {e}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::new()
        .filter_level(config.log_level)
        .parse_env("WERK_LOG")
        .format_timestamp_millis()
        .init();
    let server = match Server::bind((*config).clone()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", config.bind);
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "werk {} listening on {} (environment {:?}, password {})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        config.environment,
        if config.password.is_some() { "required" } else { "off" }
    );
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
