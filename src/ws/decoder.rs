//! Receive side of one server connection: frames in, events out.
//!
//! The decoder enforces every receive rule of RFC 6455 sections 5 and 7 and
//! keeps only what a split read forces it to keep:
//!
//! - a partial frame header (at most 14 bytes) in a fixed spill array;
//! - a partial control frame payload (at most 125 bytes) in a fixed array,
//!   allocated the first time a control frame is split across reads;
//! - a data message that is fragmented or split across reads, in a growable
//!   buffer capped by [`Limits`].
//!
//! A whole unfragmented data frame or a whole control frame found in the
//! caller's buffer is unmasked in place and handed out without a copy.

use super::close::CloseCode;
use super::frame::{parse_header, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{Error, Limits};

/// Message buffer capacity kept after a message is delivered; a larger
/// allocation left by one big message is dropped rather than held.
const RETAINED_CAPACITY: usize = 64 << 10;

/// One complete message or control frame from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message, validated as UTF-8.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A Ping; the application data must be echoed in a Pong
    /// (RFC 6455 section 5.5.2).
    Ping(&'a [u8]),
    /// A Pong.
    Pong(&'a [u8]),
    /// A close frame: None for an empty payload, else the code and UTF-8 reason.
    Close(Option<(CloseCode, &'a str)>),
    /// A complete data message compressed with permessage-deflate (RSV1
    /// on its first frame, RFC 7692 section 6): not yet inflated, so text
    /// is not yet validated.
    Compressed {
        /// A text message (else binary).
        text: bool,
        /// The compressed payload.
        payload: &'a [u8],
    },
}

/// Receive side of one server connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    /// The front of a header cut short by the end of a read.
    spill: [u8; MAX_HEADER_LEN],
    spill_len: u8,
    /// The frame whose payload is being received, once its header is in.
    frame: Option<Frame>,
    /// Payload of the control frame in `frame`, when it is split across
    /// reads: allocated the first time that happens (rare), so an idle
    /// connection's decoder stays small.
    control: Option<Box<[u8; MAX_CONTROL_PAYLOAD]>>,
    control_len: u8,
    /// Text or Binary while a message is assembled in `message`.
    assembling: Option<OpCode>,
    /// Unmasked payload of the message being assembled.
    message: Vec<u8>,
    /// `message` holds a message already handed out; clear it on next use.
    delivered: bool,
    /// Validates `message` as it grows when it is text.
    utf8: Utf8Validator,
    /// permessage-deflate was negotiated: RSV1 may mark a message.
    compression: bool,
    /// The message being received is compressed.
    compressed: bool,
}

/// Receive state of the frame whose header has been parsed.
#[derive(Debug, Clone, Copy)]
struct Frame {
    fin: bool,
    opcode: OpCode,
    key: [u8; 4],
    payload_len: u64,
    /// Payload bytes received so far.
    received: u64,
}

/// What `advance` found, as positions rather than borrows so the event can
/// borrow either the input or the decoder.
enum Ready {
    /// A whole frame unmasked in place at `input[start..end]`.
    InPlace {
        opcode: OpCode,
        start: usize,
        end: usize,
    },
    /// A message complete in `message`.
    Message(OpCode),
    /// A control frame complete in `control`.
    Control(OpCode),
}

impl Decoder {
    /// A decoder for a fresh connection, enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            spill: [0; MAX_HEADER_LEN],
            spill_len: 0,
            frame: None,
            control: None,
            control_len: 0,
            assembling: None,
            message: Vec::new(),
            delivered: false,
            utf8: Utf8Validator::default(),
            compression: false,
            compressed: false,
        }
    }

    /// permessage-deflate was negotiated: a data message whose first frame
    /// sets RSV1 is compressed (RFC 7692 section 6.1).
    pub fn accept_compressed(&mut self) {
        self.compression = true;
    }

    /// Decode client bytes. Returns how many bytes of `input` were consumed
    /// and at most one event.
    ///
    /// When it returns no event it has consumed all of `input`: a partial
    /// header is kept in an internal spill array and partial payload is
    /// unmasked into an internal buffer. So the caller loops:
    ///
    /// ```
    /// # use averyws::ws::{Decoder, Limits};
    /// # let mut dec = Decoder::new(Limits::default());
    /// # let mut buf = vec![0x89, 0x80, 1, 2, 3, 4];
    /// # fn handle(_: averyws::ws::Event<'_>) {}
    /// let mut pos = 0;
    /// while pos < buf.len() {
    ///     let (n, ev) = dec.decode(&mut buf[pos..])?;
    ///     pos += n;
    ///     if let Some(ev) = ev {
    ///         handle(ev)
    ///     }
    /// }
    /// # Ok::<(), averyws::ws::Error>(())
    /// ```
    ///
    /// A whole unfragmented data frame or a whole control frame present in
    /// `input` while no message is assembled is unmasked in place and the
    /// event borrows `input`; otherwise the event borrows the decoder. After
    /// an error the decoder must not be used again: the caller fails the
    /// connection with [`Error::close_code`].
    pub fn decode<'a>(
        &'a mut self,
        input: &'a mut [u8],
    ) -> Result<(usize, Option<Event<'a>>), Error> {
        let (consumed, ready) = self.advance(input)?;
        let event = match ready {
            None => None,
            Some(Ready::InPlace { opcode, start, end }) => {
                let payload = input.get(start..end).unwrap_or_default();
                Some(event(opcode, payload, self.compressed)?)
            }
            Some(Ready::Message(opcode)) => Some(event(opcode, &self.message, self.compressed)?),
            Some(Ready::Control(opcode)) => {
                let payload = match &self.control {
                    Some(control) => control.get(..usize::from(self.control_len)),
                    None => None,
                };
                let payload = payload.unwrap_or_default();
                Some(event(opcode, payload, false)?)
            }
        };
        Ok((consumed, event))
    }

    /// Bytes currently held for an incomplete frame or message (for memory
    /// accounting).
    pub fn buffered(&self) -> usize {
        let control = match self.frame {
            Some(frame) if frame.opcode.is_control() => usize::from(self.control_len),
            _ => 0,
        };
        let message = if self.delivered {
            0
        } else {
            self.message.len()
        };
        usize::from(self.spill_len) + control + message
    }

    /// How far the frame being received has come, as (bytes received,
    /// bytes in the whole frame), header included; `None` between frames.
    /// While the header itself is cut short the frame's size is not known
    /// yet, and the largest header is reported as its size.
    pub fn frame_progress(&self) -> Option<(u64, u64)> {
        match self.frame {
            Some(frame) => {
                let header = frame_header_len(frame.payload_len);
                Some((header + frame.received, header + frame.payload_len))
            }
            None if self.spill_len > 0 => Some((u64::from(self.spill_len), MAX_HEADER_LEN as u64)),
            None => None,
        }
    }

    /// Release memory held between messages: drops the message buffer's
    /// allocation when no message is in progress, and the control frame
    /// array when no control frame is. Called when a connection goes idle.
    pub fn release_memory(&mut self) {
        if self.assembling.is_none() {
            self.message = Vec::new();
            self.delivered = false;
        }
        if !self.frame.is_some_and(|frame| frame.opcode.is_control()) {
            self.control = None;
        }
    }

    /// Consume frames from `input` until one yields an event or the input
    /// runs out.
    fn advance(&mut self, input: &mut [u8]) -> Result<(usize, Option<Ready>), Error> {
        if self.delivered {
            self.delivered = false;
            self.message.clear();
            if self.message.capacity() > RETAINED_CAPACITY {
                self.message = Vec::new();
            }
        }
        let mut pos = 0;
        loop {
            let mut frame = match self.frame {
                Some(frame) => frame,
                None => {
                    let rest = input.get(pos..).unwrap_or_default();
                    let Some((header, header_len)) = self.read_header(rest)? else {
                        return Ok((input.len(), None));
                    };
                    pos += header_len;
                    let frame = self.begin_frame(header)?;
                    if let Some(end) = self.unmask_in_place(frame, input, pos) {
                        let opcode = frame.opcode;
                        return Ok((
                            end,
                            Some(Ready::InPlace {
                                opcode,
                                start: pos,
                                end,
                            }),
                        ));
                    }
                    if matches!(frame.opcode, OpCode::Text | OpCode::Binary) {
                        self.assembling = Some(frame.opcode);
                    }
                    frame
                }
            };
            let rest = input.get(pos..).unwrap_or_default();
            let left = frame.payload_len - frame.received;
            let take = usize::try_from(left).map_or(rest.len(), |left| left.min(rest.len()));
            self.receive(frame, rest.get(..take).unwrap_or_default())?;
            pos += take;
            frame.received += take as u64;
            if frame.received < frame.payload_len {
                // Short of payload means the input is used up.
                self.frame = Some(frame);
                return Ok((input.len(), None));
            }
            self.frame = None;
            if let Some(ready) = self.complete(frame)? {
                return Ok((pos, Some(ready)));
            }
        }
    }

    /// Take the header from the front of `input`, joined to any spilled
    /// bytes. Returns the header and how many bytes of `input` it used, or
    /// `None` after spilling all of `input`.
    fn read_header(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, usize)>, Error> {
        if self.spill_len == 0 {
            if let Some(found) = parse_header(input)? {
                return Ok(Some(found));
            }
        }
        let held = usize::from(self.spill_len);
        // Never more than a whole header, so a `None` below means all of
        // `input` went into the spill.
        let take = input.len().min(MAX_HEADER_LEN - held);
        self.spill[held..held + take].copy_from_slice(&input[..take]);
        match parse_header(&self.spill[..held + take])? {
            None => {
                // At most MAX_HEADER_LEN (14).
                self.spill_len = (held + take) as u8;
                Ok(None)
            }
            Some((header, header_len)) => {
                self.spill_len = 0;
                Ok(Some((header, header_len - held)))
            }
        }
    }

    /// Check a new frame's header against the connection's state, before any
    /// of its payload is looked at.
    fn begin_frame(&mut self, header: FrameHeader) -> Result<Frame, Error> {
        // "MUST be 0 unless an extension is negotiated" (RFC 6455 section
        // 5.2). permessage-deflate gives RSV1 a meaning on the first frame
        // of a data message only: on a control frame or a continuation it
        // is an error (RFC 7692 section 6.1), as RSV2 and RSV3 always are.
        let first_of_message = matches!(header.opcode, OpCode::Text | OpCode::Binary);
        let compressed = header.rsv == 0b100 && self.compression && first_of_message;
        if header.rsv != 0 && !compressed {
            return Err(Error::Protocol("reserved bits set"));
        }
        if first_of_message {
            self.compressed = compressed;
        }
        // "a client MUST mask all frames that it sends" (RFC 6455 section 5.1)
        let Some(key) = header.mask else {
            return Err(Error::Protocol("unmasked client frame"));
        };
        let opcode = header.opcode;
        if opcode.is_control() {
            // "All control frames MUST have a payload length of 125 bytes or
            // less and MUST NOT be fragmented" (RFC 6455 section 5.5).
            if !header.fin {
                return Err(Error::Protocol("fragmented control frame"));
            }
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(Error::Protocol("control frame too long"));
            }
            // A body is a 2-byte code and a reason (RFC 6455 section 5.5.1).
            if opcode == OpCode::Close && header.payload_len == 1 {
                return Err(Error::Protocol("close payload of one byte"));
            }
            self.control_len = 0;
        } else {
            // Fragments of one message are not interleaved and each message
            // starts with Text or Binary (RFC 6455 section 5.4).
            match (opcode, self.assembling) {
                (OpCode::Continuation, None) => {
                    return Err(Error::Protocol("continuation without a message"))
                }
                (OpCode::Text | OpCode::Binary, Some(_)) => {
                    return Err(Error::Protocol("new message inside a fragmented message"))
                }
                _ => {}
            }
            let message_len = self.message.len() as u64;
            if header.payload_len > self.limits.max_frame_size
                || message_len.saturating_add(header.payload_len) > self.limits.max_message_size
            {
                return Err(Error::TooBig);
            }
        }
        Ok(Frame {
            fin: header.fin,
            opcode,
            key,
            payload_len: header.payload_len,
            received: 0,
        })
    }

    /// The zero-copy path: a whole control frame, or a whole unfragmented
    /// data frame while no message is assembled, sitting in `input` from
    /// `start` is unmasked there. Returns where its payload ends.
    fn unmask_in_place(&self, frame: Frame, input: &mut [u8], start: usize) -> Option<usize> {
        let standalone = frame.opcode.is_control() || (frame.fin && self.assembling.is_none());
        if !standalone {
            return None;
        }
        let end = start.checked_add(usize::try_from(frame.payload_len).ok()?)?;
        apply_mask(input.get_mut(start..end)?, frame.key, 0);
        Some(end)
    }

    /// Unmask the next `chunk` of `frame`'s payload into the control array or
    /// the message buffer; text is validated as it arrives, failing fast
    /// (RFC 6455 section 8.1).
    fn receive(&mut self, frame: Frame, chunk: &[u8]) -> Result<(), Error> {
        if chunk.is_empty() {
            return Ok(());
        }
        let offset = (frame.received % 4) as usize;
        if frame.opcode.is_control() {
            let start = usize::from(self.control_len);
            let end = start + chunk.len();
            let control = self
                .control
                .get_or_insert_with(|| Box::new([0; MAX_CONTROL_PAYLOAD]));
            let slot = control
                .get_mut(start..end)
                .ok_or(Error::Protocol("control frame too long"))?;
            slot.copy_from_slice(chunk);
            apply_mask(slot, frame.key, offset);
            // At most MAX_CONTROL_PAYLOAD (125).
            self.control_len = end as u8;
            return Ok(());
        }
        self.reserve(chunk.len());
        let start = self.message.len();
        self.message.extend_from_slice(chunk);
        let fresh = self.message.get_mut(start..).unwrap_or_default();
        apply_mask(fresh, frame.key, offset);
        if self.assembling == Some(OpCode::Text) && !self.compressed {
            self.utf8.feed(fresh)?;
        }
        Ok(())
    }

    /// Grow the message buffer for `more` bytes: doubling, as arrivals
    /// demand, but never past `max_message_size` (which `begin_frame` has
    /// checked the message stays within).
    fn reserve(&mut self, more: usize) {
        let needed = self.message.len() + more;
        if needed <= self.message.capacity() {
            return;
        }
        let cap = usize::try_from(self.limits.max_message_size).unwrap_or(usize::MAX);
        let target = needed.max(self.message.capacity() * 2).min(cap).max(needed);
        self.message.reserve_exact(target - self.message.len());
    }

    /// A frame's payload is all in: say what is ready to hand out.
    fn complete(&mut self, frame: Frame) -> Result<Option<Ready>, Error> {
        if frame.opcode.is_control() {
            return Ok(Some(Ready::Control(frame.opcode)));
        }
        if !frame.fin {
            return Ok(None);
        }
        let Some(opcode) = self.assembling.take() else {
            return Err(Error::Protocol("continuation without a message"));
        };
        if opcode == OpCode::Text && !self.compressed {
            self.utf8.finish()?;
        }
        self.delivered = true;
        Ok(Some(Ready::Message(opcode)))
    }
}

/// Header size of a masked client frame with the minimal length encoding
/// (a non-minimal encoding is a few bytes longer: close enough for pacing).
fn frame_header_len(payload_len: u64) -> u64 {
    let extended = match payload_len {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    2 + extended + 4
}

/// Build the event for a complete payload.
fn event(opcode: OpCode, payload: &[u8], compressed: bool) -> Result<Event<'_>, Error> {
    Ok(match opcode {
        OpCode::Text | OpCode::Binary | OpCode::Continuation if compressed => Event::Compressed {
            text: opcode == OpCode::Text,
            payload,
        },
        // Assembled text was validated as it arrived; checking again is the
        // price of a safe `&str` (no `from_utf8_unchecked` here).
        OpCode::Text => Event::Text(core::str::from_utf8(payload).map_err(|_| Error::InvalidUtf8)?),
        OpCode::Binary | OpCode::Continuation => Event::Binary(payload),
        OpCode::Ping => Event::Ping(payload),
        OpCode::Pong => Event::Pong(payload),
        OpCode::Close => Event::Close(close_body(payload)?),
    })
}

/// Parse a Close frame's body (RFC 6455 section 5.5.1): empty, or a code
/// that may be sent on the wire followed by a UTF-8 reason.
fn close_body(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, Error> {
    let [hi, lo, reason @ ..] = payload else {
        return match payload {
            [] => Ok(None),
            _ => Err(Error::Protocol("close payload of one byte")),
        };
    };
    let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
    if !code.is_valid_on_wire() {
        return Err(Error::Protocol("invalid close code"));
    }
    // "the body of a Close frame ... MAY contain UTF-8-encoded data" whose
    // invalidity fails the connection (RFC 6455 sections 5.5.1 and 8.1).
    let reason = core::str::from_utf8(reason).map_err(|_| Error::InvalidUtf8)?;
    Ok(Some((code, reason)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::encoder::encode_frame;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// An owned copy of an [`Event`], to compare event sequences.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
        Compressed(bool, Vec<u8>),
    }

    impl From<Event<'_>> for Owned {
        fn from(event: Event<'_>) -> Self {
            match event {
                Event::Text(s) => Owned::Text(s.to_owned()),
                Event::Binary(b) => Owned::Binary(b.to_vec()),
                Event::Ping(b) => Owned::Ping(b.to_vec()),
                Event::Pong(b) => Owned::Pong(b.to_vec()),
                Event::Close(c) => {
                    Owned::Close(c.map(|(code, reason)| (code.0, reason.to_owned())))
                }
                Event::Compressed { text, payload } => Owned::Compressed(text, payload.to_vec()),
            }
        }
    }

    fn text(s: &str) -> Owned {
        Owned::Text(s.to_owned())
    }

    /// A masked client frame with the given first byte (FIN, RSV, opcode).
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Binary, payload);
        let mut out = mask(&out, KEY);
        out[0] = b0;
        out
    }

    /// Turn a server frame into a client frame: set MASK, insert `key`,
    /// mask the payload.
    fn mask(server_frame: &[u8], key: [u8; 4]) -> Vec<u8> {
        let (_, header_len) = parse_header(server_frame).unwrap().unwrap();
        let mut out = server_frame[..header_len].to_vec();
        out[1] |= 0x80;
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(&server_frame[header_len..]);
        apply_mask(&mut out[start..], key, 0);
        out
    }

    /// Close payload: code then reason bytes.
    fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut out = code.to_be_bytes().to_vec();
        out.extend_from_slice(reason);
        out
    }

    /// Feed `stream` as reads of the given sizes (the last read takes the
    /// rest), the way the reactor does: each read is used up before the next.
    fn run(
        limits: Limits,
        stream: &[u8],
        sizes: impl FnMut() -> usize,
    ) -> (Vec<Owned>, Option<Error>, usize) {
        run_decoder(Decoder::new(limits), stream, sizes)
    }

    /// [`run`] on a given decoder.
    fn run_decoder(
        mut dec: Decoder,
        stream: &[u8],
        mut sizes: impl FnMut() -> usize,
    ) -> (Vec<Owned>, Option<Error>, usize) {
        let mut events = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let size = sizes().clamp(1, stream.len() - at);
            let mut read = stream[at..at + size].to_vec();
            at += size;
            let mut pos = 0;
            while pos < read.len() {
                let remaining = read.len() - pos;
                match dec.decode(&mut read[pos..]) {
                    Ok((n, Some(event))) => {
                        assert!(n <= remaining);
                        events.push(event.into());
                        pos += n;
                    }
                    Ok((n, None)) => {
                        assert_eq!(n, remaining, "no event, so all input is consumed");
                        pos += n;
                    }
                    Err(e) => return (events, Some(e), at),
                }
            }
        }
        let buffered = dec.buffered();
        (events, None, buffered)
    }

    fn whole(limits: Limits, stream: &[u8]) -> (Vec<Owned>, Option<Error>, usize) {
        run(limits, stream, || usize::MAX)
    }

    fn bytewise(limits: Limits, stream: &[u8]) -> (Vec<Owned>, Option<Error>, usize) {
        run(limits, stream, || 1)
    }

    #[test]
    fn rsv1_marks_a_compressed_message_once_negotiated() {
        // "Hello" compressed (RFC 7692 section 7.2.3.1); not inflated here.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let compressed = |text| vec![Owned::Compressed(text, hello.to_vec())];
        let split = [
            frame(0x41, &hello[..3]),
            frame(0x00, &hello[3..5]),
            frame(0x80, &hello[5..]),
        ];
        let reserved = Some(Error::Protocol("reserved bits set"));
        // (case, client bytes, events, the error that ends them)
        type Case<'a> = (&'a str, Vec<u8>, Vec<Owned>, Option<Error>);
        let table: &[Case] = &[
            ("text", frame(0xc1, &hello), compressed(true), None),
            ("binary", frame(0xc2, &hello), compressed(false), None),
            (
                "fragmented, RSV1 on the first frame",
                split.concat(),
                compressed(true),
                None,
            ),
            (
                "a ping between fragments",
                [
                    frame(0x41, &hello[..3]),
                    frame(0x89, b"p"),
                    frame(0x80, &hello[3..]),
                ]
                .concat(),
                vec![
                    Owned::Ping(b"p".to_vec()),
                    Owned::Compressed(true, hello.to_vec()),
                ],
                None,
            ),
            // Compressed text is validated once inflated, not before.
            (
                "not UTF-8 yet",
                frame(0xc1, &[0xff]),
                vec![Owned::Compressed(true, vec![0xff])],
                None,
            ),
            (
                "plain text still",
                frame(0x81, &[0xff]),
                vec![],
                Some(Error::InvalidUtf8),
            ),
            (
                "plain after compressed",
                [frame(0xc1, &hello), frame(0x81, b"hi")].concat(),
                vec![Owned::Compressed(true, hello.to_vec()), text("hi")],
                None,
            ),
            // RFC 7692 section 6.1: RSV1 on a continuation or control frame.
            (
                "RSV1 on a continuation",
                [frame(0x01, b"a"), frame(0xc0, b"b")].concat(),
                vec![],
                reserved,
            ),
            ("RSV1 on a ping", frame(0xc9, b""), vec![], reserved),
            ("RSV1 on a close", frame(0xc8, b""), vec![], reserved),
            ("RSV2", frame(0xa1, b"a"), vec![], reserved),
            ("RSV1 and RSV3", frame(0xd1, b"a"), vec![], reserved),
        ];
        for (name, stream, events, error) in table {
            for (how, size) in [("whole", usize::MAX), ("bytewise", 1)] {
                let mut dec = Decoder::new(SMALL);
                dec.accept_compressed();
                let (got, got_error, _) = run_decoder(dec, stream, || size);
                assert_eq!((&got, &got_error), (events, error), "{name}, {how}");
            }
        }
        // Without the extension, RSV1 is an error like any reserved bit.
        let (_, error, _) = whole(SMALL, &frame(0xc1, &hello));
        assert_eq!(error, reserved);
    }

    const SMALL: Limits = Limits {
        max_frame_size: 1024,
        max_message_size: 2048,
    };

    /// RFC 6455 section 5.7, as a client would send them (masked).
    #[test]
    fn decodes_rfc_examples() {
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut fragmented = frame(0x01, b"Hel");
        fragmented.extend(frame(0x80, b"lo"));
        let ping = mask(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], KEY);
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut b256 = vec![0x82, 0x7E, 0x01, 0x00];
        b256.extend(vec![7; 256]);
        let mut b64k = vec![0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];
        b64k.extend(vec![9; 65536]);
        let table: &[(&str, Vec<u8>, Owned)] = &[
            ("masked text", hello.to_vec(), text("Hello")),
            ("fragmented text", fragmented, text("Hello")),
            ("masked ping", ping, Owned::Ping(b"Hello".to_vec())),
            ("masked pong", pong.to_vec(), Owned::Pong(b"Hello".to_vec())),
            (
                "256-byte binary",
                mask(&b256, KEY),
                Owned::Binary(vec![7; 256]),
            ),
            (
                "65536-byte binary",
                mask(&b64k, KEY),
                Owned::Binary(vec![9; 65536]),
            ),
        ];
        for (name, stream, want) in table {
            let expected = (vec![want.clone()], None, 0);
            assert_eq!(whole(Limits::default(), stream), expected, "{name} whole");
            assert_eq!(
                bytewise(Limits::default(), stream),
                expected,
                "{name} bytewise"
            );
        }
    }

    /// The RFC's unmasked examples are server frames: a server MUST fail
    /// them (RFC 6455 section 5.1).
    #[test]
    fn rejects_rfc_unmasked_examples() {
        let table: &[&[u8]] = &[
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            &[0x01, 0x03, 0x48, 0x65, 0x6c],
            &[0x80, 0x02, 0x6c, 0x6f],
            &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
            &[0x82, 0x7E, 0x01, 0x00],
            &[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
        ];
        for stream in table {
            let (_, err, _) = whole(Limits::default(), stream);
            assert_eq!(
                err,
                Some(Error::Protocol("unmasked client frame")),
                "{stream:x?}"
            );
        }
    }

    #[test]
    fn round_trips_every_length_encoding() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut server = Vec::new();
            encode_frame(&mut server, OpCode::Binary, &payload);
            let client = mask(&server, [0xde, 0xad, 0xbe, 0xef]);
            let expected = (vec![Owned::Binary(payload)], None, 0);
            assert_eq!(whole(Limits::default(), &client), expected, "len {len}");
            if len < 1000 {
                assert_eq!(bytewise(Limits::default(), &client), expected, "len {len}");
            }
        }
    }

    /// Name, client stream, events before the end, error if any.
    type Rule = (&'static str, Vec<u8>, Vec<Owned>, Option<Error>);

    /// Every receive rule of RFC 6455 sections 5 and 7, with [`SMALL`]
    /// limits.
    fn rules() -> Vec<Rule> {
        let proto = |why| Some(Error::Protocol(why));
        let cat = |frames: &[Vec<u8>]| frames.concat();
        let mut rows = vec![
            (
                "unmasked text",
                vec![0x81, 0x00],
                vec![],
                proto("unmasked client frame"),
            ),
            (
                "RSV1",
                frame(0xC1, b"a"),
                vec![],
                proto("reserved bits set"),
            ),
            (
                "RSV2",
                frame(0xA1, b"a"),
                vec![],
                proto("reserved bits set"),
            ),
            (
                "RSV3",
                frame(0x91, b"a"),
                vec![],
                proto("reserved bits set"),
            ),
            (
                "RSV on ping",
                frame(0xF9, b""),
                vec![],
                proto("reserved bits set"),
            ),
            (
                "fragmented ping",
                frame(0x09, b""),
                vec![],
                proto("fragmented control frame"),
            ),
            (
                "fragmented close",
                frame(0x08, b""),
                vec![],
                proto("fragmented control frame"),
            ),
            (
                "ping of 126",
                frame(0x89, &[0; 126]),
                vec![],
                proto("control frame too long"),
            ),
            (
                "close of 126",
                frame(0x88, &[0; 126]),
                vec![],
                proto("control frame too long"),
            ),
            (
                "ping of 125",
                frame(0x89, &[1; 125]),
                vec![Owned::Ping(vec![1; 125])],
                None,
            ),
            (
                "pong of 125",
                frame(0x8A, &[2; 125]),
                vec![Owned::Pong(vec![2; 125])],
                None,
            ),
            (
                "empty ping",
                frame(0x89, b""),
                vec![Owned::Ping(vec![])],
                None,
            ),
            (
                "continuation first",
                frame(0x80, b"x"),
                vec![],
                proto("continuation without a message"),
            ),
            (
                "continuation after a finished message",
                cat(&[frame(0x81, b"a"), frame(0x80, b"b")]),
                vec![text("a")],
                proto("continuation without a message"),
            ),
            (
                "text inside fragmented text",
                cat(&[frame(0x01, b"a"), frame(0x81, b"b")]),
                vec![],
                proto("new message inside a fragmented message"),
            ),
            (
                "binary inside fragmented binary",
                cat(&[frame(0x02, b"a"), frame(0x02, b"b")]),
                vec![],
                proto("new message inside a fragmented message"),
            ),
            (
                "controls between fragments are delivered at once",
                cat(&[
                    frame(0x01, b"Hel"),
                    frame(0x89, b"p"),
                    frame(0x00, b""),
                    frame(0x8A, b"q"),
                    frame(0x80, b"lo"),
                ]),
                vec![
                    Owned::Ping(b"p".to_vec()),
                    Owned::Pong(b"q".to_vec()),
                    text("Hello"),
                ],
                None,
            ),
            (
                "close between fragments is delivered at once",
                cat(&[
                    frame(0x02, b"ab"),
                    frame(0x88, &close_payload(1000, b"")),
                    frame(0x80, b"c"),
                ]),
                vec![
                    Owned::Close(Some((1000, String::new()))),
                    Owned::Binary(b"abc".to_vec()),
                ],
                None,
            ),
            (
                "invalid UTF-8 text",
                frame(0x81, &[b'a', 0xFF]),
                vec![],
                Some(Error::InvalidUtf8),
            ),
            (
                "invalid UTF-8 in an unfinished fragment",
                frame(0x01, &[0xED, 0xA0, 0x80]),
                vec![],
                Some(Error::InvalidUtf8),
            ),
            (
                "code point split across fragments",
                cat(&[frame(0x01, &[0xE2, 0x82]), frame(0x80, &[0xAC])]),
                vec![text("\u{20ac}")],
                None,
            ),
            (
                "text ends inside a code point",
                cat(&[frame(0x01, b"a"), frame(0x80, &[0xE2, 0x82])]),
                vec![],
                Some(Error::InvalidUtf8),
            ),
            (
                "binary is not UTF-8 checked",
                frame(0x82, &[0xFF]),
                vec![Owned::Binary(vec![0xFF])],
                None,
            ),
            (
                "empty close",
                frame(0x88, b""),
                vec![Owned::Close(None)],
                None,
            ),
            (
                "close of one byte",
                frame(0x88, &[0x03]),
                vec![],
                proto("close payload of one byte"),
            ),
            (
                "close with reason",
                frame(0x88, &close_payload(1001, b"bye \xe2\x82\xac")),
                vec![Owned::Close(Some((1001, "bye \u{20ac}".to_owned())))],
                None,
            ),
            (
                "close with invalid UTF-8 reason",
                frame(0x88, &close_payload(1000, &[0xC0])),
                vec![],
                Some(Error::InvalidUtf8),
            ),
            ("empty text", frame(0x81, b""), vec![text("")], None),
            (
                "empty binary",
                frame(0x82, b""),
                vec![Owned::Binary(vec![])],
                None,
            ),
            (
                "all fragments empty",
                cat(&[frame(0x01, b""), frame(0x00, b""), frame(0x80, b"")]),
                vec![text("")],
                None,
            ),
            (
                "empty first fragment",
                cat(&[frame(0x02, b""), frame(0x80, b"xy")]),
                vec![Owned::Binary(b"xy".to_vec())],
                None,
            ),
            (
                "frame of max_frame_size",
                frame(0x82, &[5; 1024]),
                vec![Owned::Binary(vec![5; 1024])],
                None,
            ),
            (
                "frame over max_frame_size",
                frame(0x82, &[5; 1025]),
                vec![],
                Some(Error::TooBig),
            ),
            (
                "message of max_message_size",
                cat(&[frame(0x02, &[1; 1024]), frame(0x80, &[1; 1024])]),
                vec![Owned::Binary(vec![1; 2048])],
                None,
            ),
            (
                "message over max_message_size",
                cat(&[
                    frame(0x02, &[1; 1024]),
                    frame(0x00, &[1; 1000]),
                    frame(0x80, &[1; 25]),
                ]),
                vec![],
                Some(Error::TooBig),
            ),
            (
                "64-bit length with the top bit",
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                vec![],
                proto("64-bit payload length has its top bit set"),
            ),
            (
                "huge 64-bit length",
                vec![
                    0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
                ],
                vec![],
                Some(Error::TooBig),
            ),
        ];
        for bits in (0x3..=0x7).chain(0xB..=0xF) {
            rows.push((
                "reserved opcode",
                frame(0x80 | bits, b""),
                vec![],
                proto("reserved opcode"),
            ));
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let stream = frame(0x88, &close_payload(code, b""));
            rows.push((
                "close code not for the wire",
                stream,
                vec![],
                proto("invalid close code"),
            ));
        }
        for code in [1000, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999] {
            let stream = frame(0x88, &close_payload(code, b""));
            rows.push((
                "close code for the wire",
                stream,
                vec![Owned::Close(Some((code, String::new())))],
                None,
            ));
        }
        rows
    }

    #[test]
    fn enforces_every_receive_rule() {
        for (name, stream, events, error) in rules() {
            for (how, got) in [
                ("whole", whole(SMALL, &stream)),
                ("bytewise", bytewise(SMALL, &stream)),
            ] {
                assert_eq!(got.0, events, "{name} ({how}): events");
                assert_eq!(got.1, error, "{name} ({how}): error");
                if error.is_none() {
                    assert_eq!(got.2, 0, "{name} ({how}): nothing left buffered");
                }
            }
        }
    }

    #[test]
    fn errors_map_to_close_codes() {
        let table = [
            (Error::Protocol("x"), 1002),
            (Error::InvalidUtf8, 1007),
            (Error::TooBig, 1009),
        ];
        for (error, code) in table {
            assert_eq!(error.close_code().0, code);
        }
    }

    /// Too-big frames fail on the header alone, before payload is buffered.
    #[test]
    fn too_big_fails_on_the_header() {
        let mut header = vec![0x82, 0xFE, 0x04, 0x01];
        header.extend_from_slice(&KEY);
        let mut dec = Decoder::new(SMALL);
        assert_eq!(dec.decode(&mut header), Err(Error::TooBig));
        assert_eq!(dec.message.capacity(), 0);

        let mut dec = Decoder::new(SMALL);
        let mut first = frame(0x02, &[0; 1024]);
        assert!(matches!(dec.decode(&mut first), Ok((_, None))));
        let mut next = frame(0x00, &[0; 1025])[..8].to_vec();
        assert_eq!(dec.decode(&mut next), Err(Error::TooBig));
        assert!(dec.message.capacity() <= 2048);
    }

    #[test]
    fn utf8_split_at_every_boundary_across_fragments() {
        let samples: &[(&[u8], bool)] = &[
            ("a\u{e9}\u{20ac}\u{1F600}z".as_bytes(), true),
            ("\u{10FFFF}\u{800}".as_bytes(), true),
            (&[b'a', 0xF4, 0x90, 0x80, 0x80], false),
            (&[0xE2, 0x82, 0xAC, 0xED, 0xA0, 0x80], false),
            (&[0xF0, 0x9F, 0x98], false),
            (&[0xC3, b'a'], false),
        ];
        for &(bytes, valid) in samples {
            let want_events = if valid {
                vec![text(std::str::from_utf8(bytes).unwrap())]
            } else {
                vec![]
            };
            let want_error = if valid {
                None
            } else {
                Some(Error::InvalidUtf8)
            };
            for a in 0..=bytes.len() {
                for b in a..=bytes.len() {
                    let stream = [
                        frame(0x01, &bytes[..a]),
                        frame(0x00, &bytes[a..b]),
                        frame(0x80, &bytes[b..]),
                    ]
                    .concat();
                    for got in [whole(SMALL, &stream), bytewise(SMALL, &stream)] {
                        assert_eq!(got.0, want_events, "{bytes:x?} split {a}/{b}");
                        assert_eq!(got.1, want_error, "{bytes:x?} split {a}/{b}");
                    }
                }
            }
        }
    }

    /// Fed a byte at a time, invalid text fails at the first impossible
    /// byte, long before the frame or message is complete (RFC 6455 8.1).
    #[test]
    fn utf8_fails_fast() {
        let first = frame(0x01, b"ok");
        let header_len = 6;
        let bad: &[u8] = &[b'a', b'b', 0xF4, 0x90, b'c', b'd', b'e', b'f'];
        // Byte 3 (0x90) of the payload is where it can never become valid.
        let table = [
            ("unfragmented", frame(0x81, bad), header_len + 3),
            (
                "second fragment",
                [first.clone(), frame(0x80, bad)].concat(),
                first.len() + header_len + 3,
            ),
        ];
        for (name, stream, at) in table {
            let (events, error, fed) = bytewise(SMALL, &stream);
            assert!(events.is_empty(), "{name}");
            assert_eq!(error, Some(Error::InvalidUtf8), "{name}");
            assert_eq!(fed, at + 1, "{name}: failed after {fed} bytes");
        }
    }

    /// A varied valid stream: every frame kind, every length encoding,
    /// fragmentation with interleaved control frames.
    fn valid_stream() -> Vec<u8> {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        [
            frame(0x81, "h\u{e9}llo \u{1F600}".as_bytes()),
            frame(0x82, &big[..300]),
            frame(0x89, b"ping"),
            frame(0x01, &[0xF0, 0x9F]),
            frame(0x8A, b""),
            frame(0x00, &[0x98, 0x80, b'!']),
            frame(0x89, &[3; 125]),
            frame(0x80, b""),
            frame(0x82, &big),
            frame(0x81, b""),
            frame(0x02, &big[..5000]),
            frame(0x00, &big[..126]),
            frame(0x80, &big[..127]),
            mask(&[0x82, 0x7E, 0x00, 0x03, 1, 2, 3], [9, 8, 7, 6]),
            frame(0x88, &close_payload(1000, b"done")),
        ]
        .concat()
    }

    #[test]
    fn events_do_not_depend_on_how_input_is_split() {
        let stream = valid_stream();
        let expected = whole(Limits::default(), &stream);
        assert_eq!(expected.0.len(), 11);
        assert_eq!(expected.1, None);
        assert_eq!(bytewise(Limits::default(), &stream), expected);
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for max in [2, 7, 15, 64, 1000, 20_000] {
            for _ in 0..20 {
                let sizes = || {
                    // xorshift64
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % max) as usize + 1
                };
                assert_eq!(
                    run(Limits::default(), &stream, sizes),
                    expected,
                    "max {max}"
                );
            }
        }
    }

    #[test]
    fn whole_frames_are_unmasked_in_place() {
        let mut stream = [frame(0x81, b"Hello"), frame(0x89, b"p")].concat();
        let range = stream.as_ptr_range();
        let mut dec = Decoder::new(Limits::default());
        let (n, event) = dec.decode(&mut stream).unwrap();
        let Some(Event::Text(s)) = event else {
            panic!("{event:?}")
        };
        assert!(range.contains(&s.as_ptr()), "text borrows the input");
        assert_eq!(n, 11);
        let (_, event) = dec.decode(&mut stream[n..]).unwrap();
        let Some(Event::Ping(p)) = event else {
            panic!("{event:?}")
        };
        assert!(range.contains(&p.as_ptr()), "ping borrows the input");
    }

    #[test]
    fn accounts_and_releases_memory() {
        let mut dec = Decoder::new(Limits::default());
        let mut part = frame(0x82, &[4; 100]);
        assert_eq!(dec.decode(&mut part[..3]), Ok((3, None)));
        assert_eq!(dec.buffered(), 3, "partial header in the spill");
        assert_eq!(dec.decode(&mut part[3..50]), Ok((47, None)));
        assert_eq!(dec.buffered(), 50 - 6, "payload so far");
        let (n, event) = dec.decode(&mut part[50..]).unwrap();
        assert_eq!((n, event), (56, Some(Event::Binary(&[4; 100]))));
        assert_eq!(dec.buffered(), 0, "a delivered message is not held");
        assert!(dec.message.capacity() >= 100);
        dec.release_memory();
        assert_eq!(dec.message.capacity(), 0);

        let mut ping = frame(0x89, b"abc");
        assert_eq!(dec.decode(&mut ping[..7]), Ok((7, None)));
        assert_eq!(dec.buffered(), 1, "partial control payload");
        dec.release_memory();
        assert!(dec.control.is_some(), "a control frame in progress is kept");
        let (n, event) = dec.decode(&mut ping[7..]).unwrap();
        assert_eq!((n, event), (2, Some(Event::Ping(b"abc"))));
        dec.release_memory();
        assert!(
            dec.control.is_none(),
            "the control array is only held in use"
        );

        let mut dec = Decoder::new(Limits::default());
        let mut first = frame(0x01, b"abc");
        let len = first.len();
        assert_eq!(dec.decode(&mut first), Ok((len, None)));
        dec.release_memory();
        assert_eq!(dec.buffered(), 3, "a message in progress is kept");
        let mut last = frame(0x80, b"d");
        assert_eq!(dec.decode(&mut last).unwrap().1, Some(Event::Text("abcd")));
    }

    #[test]
    fn drops_large_allocations_after_delivery() {
        let mut dec = Decoder::new(Limits::default());
        let big = frame(0x82, &vec![0; RETAINED_CAPACITY + 1]);
        let (events, error, _) = run(Limits::default(), &big, || 1000);
        assert_eq!((events.len(), error), (1, None));
        let mut stream = big.clone();
        let mut pos = 0;
        while pos < stream.len() {
            let end = (pos + 1000).min(stream.len());
            let (n, _) = dec.decode(&mut stream[pos..end]).unwrap();
            pos += n;
        }
        assert!(dec.message.capacity() > RETAINED_CAPACITY);
        let mut ping = frame(0x89, b"");
        dec.decode(&mut ping).unwrap();
        assert_eq!(dec.message.capacity(), 0);
    }

    /// Growth doubles but never past `max_message_size`.
    #[test]
    fn message_buffer_capacity_stays_within_limits() {
        let limits = Limits {
            max_frame_size: 3000,
            max_message_size: 3000,
        };
        let stream = [frame(0x02, &[1; 1000]), frame(0x80, &[1; 2000])].concat();
        let mut dec = Decoder::new(limits);
        let mut copy = stream.clone();
        let mut pos = 0;
        let mut delivered = false;
        while pos < copy.len() {
            let end = (pos + 17).min(copy.len());
            let (n, event) = dec.decode(&mut copy[pos..end]).unwrap();
            delivered |= event.is_some();
            pos += n;
            assert!(dec.message.capacity() <= 3000);
        }
        assert!(delivered);
    }

    #[test]
    fn frame_progress_tracks_the_frame_in_flight() {
        let mut dec = Decoder::new(Limits::default());
        assert_eq!(dec.frame_progress(), None);
        let whole = frame(0x82, &[7; 300]);
        // Two header bytes: the size is not known yet.
        dec.decode(&mut whole[..2].to_vec()).unwrap();
        assert_eq!(dec.frame_progress(), Some((2, MAX_HEADER_LEN as u64)));
        // The rest of the header and 100 payload bytes.
        dec.decode(&mut whole[2..108].to_vec()).unwrap();
        assert_eq!(dec.frame_progress(), Some((108, 308)));
        let mut rest = whole[108..].to_vec();
        let (_, event) = dec.decode(&mut rest).unwrap();
        assert!(event.is_some());
        assert_eq!(dec.frame_progress(), None);
    }
}
