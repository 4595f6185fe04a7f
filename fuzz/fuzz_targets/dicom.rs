//! Any bytes given to the DICOM reader must give a value or an error, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Fuzz both with and without a valid preamble, so the parser behind it is reached quickly.
    let _ = mammo_io::dicom::decode_dicom_bytes(std::path::Path::new("fuzz.dcm"), data);
    if data.len() < 1 << 20 {
        let mut with_preamble = vec![0u8; 128];
        with_preamble.extend_from_slice(b"DICM");
        with_preamble.extend_from_slice(data);
        let _ = mammo_io::dicom::decode_dicom_bytes(std::path::Path::new("fuzz.dcm"), &with_preamble);
    }
});
