//! `/init` in the initrd (PID 1), or `ze-init <command>` on a live system.

fn main() {
    if std::process::id() == 1 {
        ze_init::pid1::run();
    }
    std::process::exit(ze_init::cli::main(std::env::args_os().skip(1).collect()));
}
