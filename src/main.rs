//! The `litefs` binary: argument handling lives in `litefs::cli`.

// The global allocator (mimalloc) is declared in the library, so tests and benchmarks that
// mount in-process use it too (see `litefs::GLOBAL`).

fn main() {
    let code = litefs::cli::run(std::env::args().collect());
    std::process::exit(code);
}
