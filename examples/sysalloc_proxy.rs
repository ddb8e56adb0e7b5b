//! The `sticky-proxy` program with the system allocator instead of mimalloc, for heap profilers
//! that intercept `malloc` (valgrind's massif and DHAT): `benches/load/idle-massif.sh` uses it
//! to say where the memory of an idle kept-alive connection goes. Same command line and
//! configuration as `sticky-proxy`; not for production (mimalloc is faster, see benches/README.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    match sticky_proxy::run(sticky_proxy::extension::Extensions::default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
