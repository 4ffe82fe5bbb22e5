use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = loadtest::Args::parse();
    match loadtest::run(args).await {
        Ok(outcome) if outcome.passed() => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::from(1),
        Err(err) => {
            eprintln!("loadtest: {err:#} ({err:?})");
            std::process::ExitCode::from(2)
        }
    }
}
