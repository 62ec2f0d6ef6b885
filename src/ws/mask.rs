//! Payload masking (RFC 6455 section 5.3).
//!
//! Octet `i` of the payload is XORed with octet `i % 4` of the masking key.
//! Masking and unmasking are the same operation.

/// XOR `buf` with `key`, where `buf` starts `offset` bytes into the frame's
/// payload, so a payload unmasked in several pieces gets the right key byte.
///
/// Works a word at a time in safe code; the compiler vectorises the loop.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    let [k0, k1, k2, k3] = key;
    let word = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let mut words = buf.chunks_exact_mut(8);
    for chunk in &mut words {
        // Always 8 bytes; the conversion cannot fail and compiles away.
        if let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) {
            *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
        }
    }
    // A multiple of 8 bytes was consumed, so the tail starts at key byte 0.
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_naive_xor_for_every_offset_and_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..64u8)
            .map(|i| i.wrapping_mul(151).wrapping_add(7))
            .collect();
        for offset in 0..8 {
            for len in 0..=64 {
                let mut fast = data[..len].to_vec();
                let mut slow = fast.clone();
                apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_whole() {
        let key = [1, 2, 3, 0xff];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for cut in 0..=data.len() {
            let mut pieces = data.clone();
            let (head, tail) = pieces.split_at_mut(cut);
            apply_mask(head, key, 0);
            apply_mask(tail, key, cut);
            assert_eq!(pieces, whole, "cut {cut}");
        }
    }

    /// RFC 6455 section 5.7: masked "Hello".
    #[test]
    fn unmasks_rfc_example() {
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
