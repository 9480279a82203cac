//! The binary: parse flags, set up logging, snapshot the environment, run,
//! and turn the result into output and an exit code — in this one place.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use hoist::cli::{Cli, OutputFormat};
use hoist::env::Env;

/// The exit code of a bug in hoist (sysexits' EX_SOFTWARE): never a code a
/// pipeline would mistake for a blocked gate or a bad flag.
const INTERNAL_ERROR: i32 = 70;

/// A panic is a bug, whatever caused it: say so in one `error:` block, with
/// where to report it, and exit with a code of its own instead of Rust's 101
/// and its raw message.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error in hoist {}: {}{at}\nhint: this is a bug in hoist, not in your set-up: please report it at {}/issues with the command you ran and these lines (RUST_BACKTRACE=1 adds a backtrace). Exit code {INTERNAL_ERROR}.",
            env!("CARGO_PKG_VERSION"),
            hoist::text::external(&what, 500),
            env!("CARGO_PKG_REPOSITORY"),
        );
        std::process::exit(INTERNAL_ERROR);
    }));
}

fn main() -> ExitCode {
    install_panic_hook();
    let cli = Cli::parse();
    let env = Env::from_process();
    let level = match cli.global.verbose {
        0 => "warn,hoist=info",
        1 => "info,hoist=debug",
        // Never the HTTP and SDK plumbing at debug: their request dumps
        // carry signed headers and session tokens.
        _ => {
            "debug,aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_sigv4=info,hyper=info,hyper_util=info,reqwest=info,h2=info,rustls=info"
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(env.get("HOIST_LOG").unwrap_or(level))
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();

    let format = cli.global.output;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: could not start hoist's async runtime: {e}\nhint: the machine is out of threads or file descriptors (ulimit -u / -n)"
            );
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(hoist::run(cli, env)) {
        Ok(outcome) => {
            eprintln!("{}", outcome.log());
            println!("{}", outcome.stdout(format));
            ExitCode::from(outcome.exit_code())
        }
        Err(e) => {
            if format == OutputFormat::Json {
                println!(
                    "{}",
                    serde_json::json!({ "error": e.to_string(), "hint": e.hint(), "exit_code": e.class().exit_code() })
                );
            }
            eprintln!("{}", e.report());
            ExitCode::from(e.class().exit_code())
        }
    }
}
