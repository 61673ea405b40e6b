//! `kavro-bench`: the load generator's command line (see `kavro-bench --help`
//! and docs/BENCHMARKS.md).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;
use kavro_bench::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest is built without a default TLS provider; without one installed,
    // building a client panics even for plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kavro-bench: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    if let Some(plan) = cli.seed_plan() {
        return seed(&runtime, &plan, json);
    }
    match runtime.block_on(kavro_bench::run(cli)) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(err) => {
                        eprintln!("kavro-bench: cannot write the report as JSON: {err}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", kavro_bench::report::render(&report));
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("kavro-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `kavro-bench seed`: fills the database, then says what it added.
fn seed(runtime: &tokio::runtime::Runtime, plan: &kavro_bench::seed::Plan, json: bool) -> ExitCode {
    if let Err(message) = kavro_bench::seed::validate(plan) {
        eprintln!("kavro-bench: {message}");
        return ExitCode::from(2);
    }
    match runtime.block_on(kavro_bench::seed::run(plan)) {
        Ok(seeded) => {
            if json {
                println!("{}", serde_json::json!(seeded));
            } else {
                println!(
                    "seeded {} users ({}1 … {}{}, password as the benchmark users') and {} \
                     messages in {:.1} s",
                    seeded.users,
                    seeded.prefix,
                    seeded.prefix,
                    seeded.users,
                    seeded.messages,
                    seeded.seconds
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("kavro-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
