//! The `orrery` binary: everything lives in the library; see `orrery::cli`.

fn main() -> std::process::ExitCode {
    orrery::cli::main()
}
