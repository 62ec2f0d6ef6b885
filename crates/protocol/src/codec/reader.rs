//! Reading a message body: its frames in order, the fixed-size meta
//! frame, and the checks every string, count and id passes.

use super::DecodeError;
use crate::close::CloseCode;
use crate::message::{is_name, Field, HttpHeader, Initiator, List, Payload};

/// The body frames of a message not read yet.
pub(super) struct Body<'a> {
    pub(super) frames: &'a [&'a [u8]],
}

/// A fixed-size meta frame, read field by field (big-endian).
pub(super) struct Meta<'a> {
    rest: &'a [u8],
}

/// The one check of a string field, for decode and encode alike: length,
/// then syntax (service and header names), then UTF-8.
pub(super) fn check_string(field: Field, bytes: &[u8]) -> Result<&str, DecodeError> {
    check_len(field, bytes.len())?;
    let syntax_ok = match field {
        Field::Service => is_name(bytes),
        Field::HeaderName => bytes.iter().all(|&byte| is_lowercase_tchar(byte)),
        _ => true,
    };
    if !syntax_ok {
        return Err(DecodeError::InvalidName(field));
    }
    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8(field))
}

/// RFC 9110 section 5.6.2 `tchar`, letters lowercase only: header names
/// travel lowercased, so each field has one spelling.
pub(super) fn is_lowercase_tchar(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

pub(super) fn check_len(field: Field, len: usize) -> Result<(), DecodeError> {
    if field.fits(len) {
        Ok(())
    } else {
        Err(DecodeError::Length(field))
    }
}

/// A list length, checked, as the byte CONNECT carries it.
pub(super) fn count_byte(field: Field, len: usize) -> Result<u8, DecodeError> {
    check_len(field, len)?;
    u8::try_from(len).map_err(|_| DecodeError::Length(field))
}

pub(super) fn conn_id(id: u64) -> Result<u64, DecodeError> {
    if id == 0 {
        Err(DecodeError::ZeroConnId)
    } else {
        Ok(id)
    }
}

/// A CLOSE code: one a Close frame may carry.
pub(super) fn close_code(code: CloseCode) -> Result<CloseCode, DecodeError> {
    if code.is_valid_on_wire() {
        Ok(code)
    } else {
        Err(DecodeError::InvalidCloseCode(code.0))
    }
}

/// A DISCONNECT code: a CLOSE code, or one of the two codes that report a
/// Close without a code (1005) and no Close at all (1006).
pub(super) fn disconnect_code(code: CloseCode) -> Result<CloseCode, DecodeError> {
    match code {
        CloseCode::NO_STATUS | CloseCode::ABNORMAL => Ok(code),
        _ => close_code(code),
    }
}

pub(super) fn initiator(byte: u8) -> Result<Initiator, DecodeError> {
    match byte {
        0 => Ok(Initiator::Client),
        1 => Ok(Initiator::Node),
        2 => Ok(Initiator::Worker),
        _ => Err(DecodeError::InvalidInitiator(byte)),
    }
}

impl<'a> Body<'a> {
    pub(super) fn next(&mut self) -> Result<&'a [u8], DecodeError> {
        let (&frame, rest) = self.frames.split_first().ok_or(DecodeError::FrameCount)?;
        self.frames = rest;
        Ok(frame)
    }

    /// The next `n` frames.
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [&'a [u8]], DecodeError> {
        if n > self.frames.len() {
            return Err(DecodeError::FrameCount);
        }
        let (taken, rest) = self.frames.split_at(n);
        self.frames = rest;
        Ok(taken)
    }

    /// The next `n` frames, each a `field` string.
    pub(super) fn strings(
        &mut self,
        field: Field,
        n: usize,
    ) -> Result<List<'a, &'a str>, DecodeError> {
        let frames = self.take(n)?;
        for &frame in frames {
            check_string(field, frame)?;
        }
        Ok(List::wire(frames))
    }

    /// The next `n` header pairs (name, value).
    pub(super) fn headers(&mut self, n: usize) -> Result<List<'a, HttpHeader<'a>>, DecodeError> {
        let frames = self.take(2 * n)?;
        for pair in frames.chunks_exact(2) {
            if let [name, value] = *pair {
                check_string(Field::HeaderName, name)?;
                check_len(Field::HeaderValue, value.len())?;
            }
        }
        Ok(List::wire(frames))
    }

    pub(super) fn meta(&mut self) -> Result<Meta<'a>, DecodeError> {
        self.next().map(|rest| Meta { rest })
    }

    pub(super) fn string(&mut self, field: Field) -> Result<&'a str, DecodeError> {
        check_string(field, self.next()?)
    }

    pub(super) fn conn_ids(&mut self, field: Field) -> Result<List<'a, u64>, DecodeError> {
        let frame = self.take(1)?;
        let len = frame.first().map_or(0, |bytes| bytes.len());
        if len % 8 != 0 {
            return Err(DecodeError::FrameLength);
        }
        check_len(field, len / 8)?;
        let ids = List::<u64>::wire(frame);
        ids.iter().try_for_each(|id| conn_id(id).map(drop))?;
        Ok(ids)
    }

    pub(super) fn payload(&mut self, kind: u8) -> Result<Payload<'a>, DecodeError> {
        let bytes = self.next()?;
        check_len(Field::Payload, bytes.len())?;
        match kind {
            1 => std::str::from_utf8(bytes)
                .map(Payload::Text)
                .map_err(|_| DecodeError::InvalidUtf8(Field::Payload)),
            2 => Ok(Payload::Binary(bytes)),
            _ => Err(DecodeError::InvalidKind(kind)),
        }
    }

    pub(super) fn end(&self) -> Result<(), DecodeError> {
        match self.frames {
            [] => Ok(()),
            _ => Err(DecodeError::FrameCount),
        }
    }
}

impl Meta<'_> {
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(DecodeError::FrameLength)?;
        self.rest = rest;
        Ok(*head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(|[byte]| byte)
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    pub(super) fn end(self) -> Result<(), DecodeError> {
        match self.rest {
            [] => Ok(()),
            _ => Err(DecodeError::FrameLength),
        }
    }
}
