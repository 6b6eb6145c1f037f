//! The `litefs` binary: argument handling lives in `litefs::cli`.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let code = litefs::cli::run(std::env::args().collect());
    std::process::exit(code);
}
