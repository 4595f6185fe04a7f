//! Any bytes given to the PGM reader must give a value or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mammo_io::pgm::decode_pgm(std::path::Path::new("fuzz.pgm"), data);
});
