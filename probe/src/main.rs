use std::process::ExitCode;

fn main() -> ExitCode {
    match probe::run(std::env::args().skip(1)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("probe: {err}");
            ExitCode::FAILURE
        }
    }
}
