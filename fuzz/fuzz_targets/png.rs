//! Any bytes given to the PNG reader must give a value or a one-line error, never a panic, a hang or an
//! allocation beyond the pixel and byte budget.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mammo_io::png_io::decode_png(std::path::Path::new("fuzz.png"), std::io::Cursor::new(data));
});
