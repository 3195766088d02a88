//! The `loadgen` binary: everything it does is [`loadgen::run_command_line`] (the command
//! line, its subcommands and their exit codes live in the library's `commands`).

fn main() -> std::process::ExitCode {
    loadgen::run_command_line()
}
