//! The binary: parse flags, set up logging, snapshot the environment, run,
//! and turn the result into output and an exit code — in this one place.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use hoist::cli::{Cli, OutputFormat};
use hoist::env::Env;

fn main() -> ExitCode {
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
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
