//! The `werk` binary: parse flags, start logging, bind, run.

use std::process::ExitCode;
use werk::config::{Action, Config, HELP};
use werk::net::Server;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "journal") {
        return ExitCode::from(werk::journal::check::main(&args[1..]));
    }
    let config = match Config::from_args(args, |k| std::env::var(k).ok()) {
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
    werk::logging::init(
        config.log_level,
        config.log_format,
        config.log_filter.as_deref(),
    );
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    log::info!("config: {}", config.summary());
    let mut server = match Server::bind((*config).clone()) {
        Ok(s) => s,
        Err(e) => {
            // Binding a port and recovering the data directory both happen here.
            log::error!(
                "cannot start (protocol on {}, data in {}): {e}",
                config.bind,
                config.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server
        .stop_on_signals()
        .and_then(|()| server.reload_on_hup())
    {
        log::error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    log::info!(
        "werk {} listening on {} (environment {}, password {})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        config.environment.as_str(),
        if config.password.is_some() {
            "required"
        } else {
            "off"
        }
    );
    let (cert, key) = (werk::net::tls::CERT_FILE, werk::net::tls::KEY_FILE);
    if server.tls_on() {
        log::info!(
            "TLS on: both ports speak TLS 1.2 and 1.3 only, with {cert} and {key} from {}",
            config.config_dir.display()
        );
    } else {
        log::info!(
            "TLS off (no {cert} and {key} in {})",
            config.config_dir.display()
        );
    }
    match server.web_addr() {
        Some(addr) => {
            log::info!(
                "web UI on {}://{addr} (basic auth {})",
                if server.tls_on() { "https" } else { "http" },
                if config.web_ui_password().is_some() {
                    "required"
                } else {
                    "off"
                }
            );
            if config.web_ui_password().is_none() && !addr.ip().is_loopback() {
                log::warn!(
                    "SECURITY: the web UI listens on {addr} with no password: anyone who can \
                     reach it can see and delete jobs. Set FAKTORY_PASSWORD, or bind -w to \
                     127.0.0.1."
                );
            }
        }
        None => log::info!("web UI off"),
    }
    if config.password.is_none() && !server.local_addr().ip().is_loopback() {
        log::warn!(
            "SECURITY: listening on {} with no password: anyone who can reach this address can \
             push, read and delete jobs. Set FAKTORY_PASSWORD, or bind to 127.0.0.1.",
            server.local_addr()
        );
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
