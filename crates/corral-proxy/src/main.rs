//! `corral`: the caching proxy. `corral serve` runs it (a forward proxy on
//! 127.0.0.1:8080 by default; SIGHUP reloads its configuration, SIGTERM or SIGINT
//! stops it); `corral check-config` validates a configuration (and
//! the files it names) and prints the effective one.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use corral_proxy::cli::{Cli, Command, Options};
use corral_proxy::{Bound, ProxyError, Reloader, telemetry};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    match cli.command {
        Command::CheckConfig(options) => match options.load() {
            Ok(loaded) if let Err(error) = corral_proxy::check_files(&loaded.config) => {
                eprintln!("corral: {error}");
                ExitCode::from(2)
            }
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    eprintln!("corral: warning: {warning}");
                }
                print!("{}", loaded.config.to_toml());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("corral: {error}");
                ExitCode::from(2)
            }
        },
        Command::Serve(options) => {
            let (config, warnings) = match options.load() {
                Ok(loaded) => (loaded.config, loaded.warnings),
                Err(error) => {
                    eprintln!("corral: {error}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("corral: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            {
                // Inside the runtime: the span export (feature `otel`) sends on it.
                let _runtime = runtime.enter();
                telemetry::init_logging(config.log_format);
            }
            for warning in &warnings {
                tracing::warn!("{warning}");
            }
            let served = runtime.block_on(serve(config, options));
            // The last spans, sent while the runtime still runs.
            #[cfg(feature = "otel")]
            if let Err(error) = telemetry::otel::shutdown() {
                eprintln!("corral: {error}");
            }
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("corral: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: corral_proxy::Config, options: Options) -> Result<(), ProxyError> {
    let bound = Bound::bind(config)
        .await?
        .reload_from(move || options.load());
    tokio::spawn(reload_on_hangup(bound.reloader()));
    let admin = bound
        .admin_addr()
        .map_or_else(|| "off".to_owned(), |a| format!("http://{a}"));
    let listening = match bound.tls_addr() {
        Some(tls) if tls == bound.addr() => format!("https://{tls}"),
        Some(tls) => format!("http://{} and https://{tls}", bound.addr()),
        None => format!("http://{}", bound.addr()),
    };
    println!(
        "corral {} listening on {listening} (admin: {admin})",
        bound.describe(),
    );
    bound.serve(shutdown_signal()).await
}

/// Reloads the configuration on each SIGHUP; a refused one is logged and changes
/// nothing.
async fn reload_on_hangup(reloader: Reloader) {
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload through the admin API only");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        if let Err(error) = reloader.reload().await {
            tracing::error!(%error, "reload refused; the running configuration is unchanged");
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
