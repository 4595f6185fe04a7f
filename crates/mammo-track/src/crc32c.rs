//! CRC-32C (Castagnoli), the checksum of the TFRecord framing TensorBoard reads. Written here rather than
//! taken from a crate because it is a dozen lines, and event files are small enough that a byte-wise
//! table is fast enough (hardware CRC would not show in a training step).

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// The byte-wise lookup table, built at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The CRC-32C of `data` (initial value and final xor `0xFFFF_FFFF`, as in RFC 3720 and TFRecord).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = TABLE[((crc ^ byte as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The "masked" CRC TFRecord stores: rotated and offset, because a CRC of data that itself contains
/// CRCs is weak (TensorFlow's `crc32c::Mask`).
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    ((crc >> 15) | (crc << 17)).wrapping_add(0xA282_EAD8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // The check value of CRC-32C (the catalogue's "123456789" vector).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        // RFC 3720 B.4: 32 bytes of 0xFF.
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn mask_matches_tensorflow() {
        // TensorFlow masks the CRC as rotate-right-15 plus a constant; check the formula on a known CRC.
        let crc = crc32c(b"123456789");
        assert_eq!(masked_crc32c(b"123456789"), crc.rotate_right(15).wrapping_add(0xA282_EAD8));
    }
}
