//! The `strata` binary: a SQL shell over an embedded Strata database (see `strata_cli`).

fn main() -> std::process::ExitCode {
    strata_cli::main()
}
