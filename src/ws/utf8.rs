//! Incremental UTF-8 validation for text messages (RFC 6455 sections 5.6
//! and 8.1).
//!
//! Built on `core::str::from_utf8`: `Utf8Error::error_len` tells a sequence
//! that can never become valid (`Some`) from one merely cut short (`None`), so
//! only the cut-short tail (at most 3 bytes) is carried to the next call.

use super::Error;

/// Incremental UTF-8 validator that fails at the first byte that can never be
/// valid (fail fast, RFC 6455 section 8.1), also when a code point is split
/// across fragments or reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Validator {
    /// The bytes of a code point cut short by the end of the last feed.
    carry: [u8; 4],
    /// How many bytes of `carry` are in use (0..=3).
    carry_len: u8,
}

impl Utf8Validator {
    /// Validate the next bytes of the text.
    ///
    /// Fails with [`Error::InvalidUtf8`] as soon as `bytes` contains a byte
    /// that no continuation could make valid.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let bytes = self.complete_carry(bytes)?;
        match core::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Error::InvalidUtf8),
            Err(e) => {
                let tail = bytes.get(e.valid_up_to()..).unwrap_or_default();
                self.carry_over(tail)
            }
        }
    }

    /// End of the text: fails if a code point was left incomplete. Either
    /// way the validator is reset for the next message.
    pub fn finish(&mut self) -> Result<(), Error> {
        let pending = self.carry_len;
        *self = Self::default();
        if pending == 0 {
            Ok(())
        } else {
            Err(Error::InvalidUtf8)
        }
    }

    /// Complete the carried code point with the front of `bytes` and return
    /// the bytes after it (empty if it is still incomplete).
    fn complete_carry<'b>(&mut self, bytes: &'b [u8]) -> Result<&'b [u8], Error> {
        let held = usize::from(self.carry_len);
        if held == 0 {
            return Ok(bytes);
        }
        let take = bytes.len().min(self.carry.len() - held);
        let mut joined = self.carry;
        joined[held..held + take].copy_from_slice(&bytes[..take]);
        let joined = &joined[..held + take];
        let valid = match core::str::from_utf8(joined) {
            Ok(s) => s.len(),
            Err(e) if e.valid_up_to() > 0 || e.error_len().is_none() => e.valid_up_to(),
            Err(_) => return Err(Error::InvalidUtf8),
        };
        if valid == 0 {
            // Still cut short: with 4 bytes it would be complete or invalid,
            // so all of `bytes` fit in the carry.
            self.carry_over(joined)?;
            return Ok(&[]);
        }
        // The carried bytes began a code point, so `valid` covers them all.
        self.carry_len = 0;
        Ok(bytes.get(valid.saturating_sub(held)..).unwrap_or_default())
    }

    /// Keep an incomplete tail of at most 3 bytes for the next feed.
    fn carry_over(&mut self, tail: &[u8]) -> Result<(), Error> {
        let slot = self.carry.get_mut(..tail.len()).ok_or(Error::InvalidUtf8)?;
        slot.copy_from_slice(tail);
        // At most 4: `slot` is within `carry`.
        self.carry_len = tail.len() as u8;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `bytes` one at a time; the index of the byte that failed, or
    /// `len` if only `finish` failed, or `None` if all was valid.
    fn failing_byte(bytes: &[u8]) -> Option<usize> {
        let mut v = Utf8Validator::default();
        for (i, b) in bytes.iter().enumerate() {
            if v.feed(std::slice::from_ref(b)).is_err() {
                return Some(i);
            }
        }
        v.finish().err().map(|_| bytes.len())
    }

    /// Each input with the index of the first byte that can never be valid.
    const TABLE: &[(&str, &[u8], Option<usize>)] = &[
        ("empty", b"", None),
        ("ascii", b"Hello", None),
        ("two-byte", "\u{e9}t\u{e9}".as_bytes(), None),
        ("three-byte", "\u{20ac}\u{20ac}".as_bytes(), None),
        ("four-byte", "\u{1F600}x\u{10FFFF}".as_bytes(), None),
        ("lone continuation", &[0x41, 0x80, 0x41], Some(1)),
        ("overlong C0", &[0xC0, 0x80], Some(0)),
        ("overlong C1", &[0xC1, 0xBF], Some(0)),
        ("overlong E0", &[0xE0, 0x80, 0x80], Some(1)),
        ("overlong F0", &[0xF0, 0x80, 0x80, 0x80], Some(1)),
        ("surrogate ED A0", &[0xED, 0xA0, 0x80], Some(1)),
        ("above U+10FFFF: F4 90", &[0xF4, 0x90, 0x80, 0x80], Some(1)),
        ("F5 never valid", &[0xF5, 0x80, 0x80, 0x80], Some(0)),
        ("FF never valid", &[0xFF], Some(0)),
        ("truncated by ASCII", &[0xE2, 0x82, 0x41], Some(2)),
        (
            "truncated 4-byte by ASCII",
            &[0xF0, 0x9F, 0x98, 0x41],
            Some(3),
        ),
        ("incomplete at end", &[0x41, 0xE2, 0x82], Some(3)),
        ("incomplete 4-byte at end", &[0xF0, 0x9F, 0x98], Some(3)),
        ("lone lead at end", &[0xC3], Some(1)),
        (
            "Autobahn 6.4.1 prefix",
            &[
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xf4, 0x90, 0x80,
                0x80,
            ],
            Some(12),
        ),
    ];

    #[test]
    fn fails_at_the_first_impossible_byte() {
        for &(name, bytes, want) in TABLE {
            assert_eq!(failing_byte(bytes), want, "{name}");
        }
    }

    #[test]
    fn every_split_gives_the_same_verdict() {
        for &(name, bytes, want) in TABLE {
            for a in 0..=bytes.len() {
                for b in a..=bytes.len() {
                    let mut v = Utf8Validator::default();
                    let verdict = v
                        .feed(&bytes[..a])
                        .and_then(|()| v.feed(&bytes[a..b]))
                        .and_then(|()| v.feed(&bytes[b..]))
                        .and_then(|()| v.finish());
                    assert_eq!(verdict.is_ok(), want.is_none(), "{name} split {a}/{b}");
                }
            }
        }
    }

    #[test]
    fn the_split_f4_90_is_already_invalid() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xF4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(Error::InvalidUtf8));
    }

    #[test]
    fn carry_completed_then_more_text() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xF0, 0x9F]), Ok(()));
        assert_eq!(v.feed(&[0x98, 0x80, b'a', 0xE2]), Ok(()));
        assert_eq!(v.feed(&[0x82, 0xAC]), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn finish_resets_after_incomplete_text() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[0xE2, 0x82]), Ok(()));
        assert_eq!(v.finish(), Err(Error::InvalidUtf8));
        assert_eq!(v.feed(b"ok"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}
