//! Version 2's records frame (docs/protocol.md section 13): many client
//! messages in one frame, each `u64 conn`, `u8 kind`, `u32 length` and the
//! payload. [`Batch`] is a checked frame that hands out its records
//! without copying; [`BatchBuilder`] appends them into one reused buffer.

use super::codec::DecodeError;
use super::message::{Field, Payload};

/// Largest records frame, bytes.
pub const MAX_BATCH_BYTES: usize = 65536;

/// Bytes of a record before its payload.
pub const RECORD_HEADER: usize = 13;

/// Largest payload that fits a batch of its own; a larger one travels as
/// a v1-layout MESSAGE or SEND.
pub const MAX_BATCHED_PAYLOAD: usize = MAX_BATCH_BYTES - RECORD_HEADER;

/// A records frame, every record checked: conn not 0, kind 1 or 2, text
/// UTF-8, nothing left over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch<'a> {
    frame: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Checks `frame` whole, so a batch with one bad record delivers none.
    pub fn parse(frame: &'a [u8]) -> Result<Batch<'a>, DecodeError> {
        if frame.is_empty() || frame.len() > MAX_BATCH_BYTES {
            return Err(DecodeError::Length(Field::Records));
        }
        let mut rest = frame;
        while next_record(&mut rest)?.is_some() {}
        Ok(Batch { frame })
    }

    /// The frame's bytes, for encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.frame
    }

    /// The records, in order: (conn, payload).
    pub fn records(&self) -> impl Iterator<Item = (u64, Payload<'a>)> + 'a {
        let mut rest = self.frame;
        // Checked by `parse`, so this ends only at the frame's end.
        std::iter::from_fn(move || next_record(&mut rest).ok().flatten())
    }
}

/// Reads and checks the record at the start of `rest`, moving past it;
/// `None` at the end.
fn next_record<'a>(rest: &mut &'a [u8]) -> Result<Option<(u64, Payload<'a>)>, DecodeError> {
    if rest.is_empty() {
        return Ok(None);
    }
    let (header, after) = rest
        .split_first_chunk::<RECORD_HEADER>()
        .ok_or(DecodeError::FrameLength)?;
    let (conn, tail) = header
        .split_first_chunk::<8>()
        .ok_or(DecodeError::FrameLength)?;
    let (&kind, len) = tail.split_first().ok_or(DecodeError::FrameLength)?;
    let conn = u64::from_be_bytes(*conn);
    let len: [u8; 4] = len.try_into().map_err(|_| DecodeError::FrameLength)?;
    let len = u32::from_be_bytes(len) as usize;
    if conn == 0 {
        return Err(DecodeError::ZeroConnId);
    }
    if len > after.len() {
        return Err(DecodeError::FrameLength);
    }
    let (bytes, after) = after.split_at(len);
    let payload = match kind {
        1 => Payload::Text(
            std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8(Field::Payload))?,
        ),
        2 => Payload::Binary(bytes),
        _ => return Err(DecodeError::InvalidKind(kind)),
    };
    *rest = after;
    Ok(Some((conn, payload)))
}

/// An open batch: records appended into one buffer that is reused from
/// batch to batch.
#[derive(Debug, Default, Clone)]
pub struct BatchBuilder {
    buf: Vec<u8>,
}

impl BatchBuilder {
    /// Whether a record of `payload_len` bytes still fits.
    pub fn fits(&self, payload_len: usize) -> bool {
        self.buf.len() + RECORD_HEADER + payload_len <= MAX_BATCH_BYTES
    }

    /// Appends a record; the caller checked [`BatchBuilder::fits`] and
    /// that `conn` is not 0.
    pub fn push(&mut self, conn: u64, payload: Payload<'_>) {
        let bytes = payload.as_bytes();
        let kind = match payload {
            Payload::Text(_) => 1,
            Payload::Binary(_) => 2,
        };
        // `fits` bounds the length far below u32::MAX.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&conn.to_be_bytes());
        self.buf.push(kind);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    /// True when no record was appended since the last clear.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The records so far, as a batch (valid by construction).
    pub fn batch(&self) -> Batch<'_> {
        Batch { frame: &self.buf }
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol.md section 13's example, byte for byte.
    #[test]
    fn the_documented_example_round_trips() {
        let mut builder = BatchBuilder::default();
        builder.push(7, Payload::Text("hi"));
        builder.push(8, Payload::Binary(&[1]));
        let expected: &[u8] = &[
            0, 0, 0, 0, 0, 0, 0, 7, 1, 0, 0, 0, 2, b'h', b'i', //
            0, 0, 0, 0, 0, 0, 0, 8, 2, 0, 0, 0, 1, 1,
        ];
        assert_eq!(builder.batch().as_bytes(), expected);
        let parsed = Batch::parse(expected).unwrap();
        let records: Vec<_> = parsed.records().collect();
        assert_eq!(
            records,
            [(7, Payload::Text("hi")), (8, Payload::Binary(&[1]))]
        );
    }

    #[test]
    fn a_bad_record_anywhere_rejects_the_whole_frame() {
        let mut one = BatchBuilder::default();
        one.push(7, Payload::Text("hi"));
        let good = one.batch().as_bytes().to_vec();
        let after_good = |bad: &[u8]| [&good[..], bad].concat();
        let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
            ("empty", vec![], DecodeError::Length(Field::Records)),
            (
                "cut in the header",
                after_good(&good[..5]),
                DecodeError::FrameLength,
            ),
            (
                "cut in the payload",
                after_good(&good[..14]),
                DecodeError::FrameLength,
            ),
            (
                "conn 0",
                after_good(&edit(&good, 7, 0)),
                DecodeError::ZeroConnId,
            ),
            (
                "kind 3",
                after_good(&edit(&good, 8, 3)),
                DecodeError::InvalidKind(3),
            ),
            (
                "text not UTF-8",
                after_good(&edit(&good, 13, 0xff)),
                DecodeError::InvalidUtf8(Field::Payload),
            ),
            (
                "over 64 KiB",
                vec![0; MAX_BATCH_BYTES + 1],
                DecodeError::Length(Field::Records),
            ),
        ];
        for (name, frame, error) in cases {
            assert_eq!(Batch::parse(&frame), Err(error), "{name}");
        }
    }

    #[test]
    fn a_full_batch_takes_no_more() {
        let mut builder = BatchBuilder::default();
        assert!(builder.fits(MAX_BATCHED_PAYLOAD));
        assert!(!builder.fits(MAX_BATCHED_PAYLOAD + 1));
        builder.push(1, Payload::Binary(&vec![0; MAX_BATCHED_PAYLOAD]));
        assert_eq!(builder.batch().as_bytes().len(), MAX_BATCH_BYTES);
        assert!(!builder.fits(0));
        assert!(Batch::parse(builder.batch().as_bytes()).is_ok());
        builder.clear();
        assert!(builder.is_empty() && builder.fits(0));
    }

    fn edit(frame: &[u8], index: usize, byte: u8) -> Vec<u8> {
        let mut frame = frame.to_vec();
        frame[index] = byte;
        frame
    }
}
