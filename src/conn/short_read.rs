//! Telling a drained socket from a full buffer, so an edge-triggered
//! reader can stop without a read that only returns `WouldBlock`.

use std::io;

/// A reader that says whether its last read returned less than it was
/// asked for, which on a TCP socket means the receive queue was empty.
pub(super) struct ShortRead<'a, R> {
    inner: &'a mut R,
    pub(super) drained: bool,
}

impl<'a, R: io::Read> ShortRead<'a, R> {
    pub(super) fn new(inner: &'a mut R) -> Self {
        ShortRead {
            inner,
            drained: false,
        }
    }
}

impl<R: io::Read> io::Read for ShortRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.drained = 0 < n && n < buf.len();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn only_a_read_that_fills_less_than_asked_says_drained() {
        let table: [(&[u8], usize, bool); 4] = [
            (b"abc", 8, true),
            (b"abcdefgh", 8, false),
            (b"abcdefghij", 8, false),
            (b"", 8, false),
        ];
        for (data, asked, drained) in table {
            let mut source = data;
            let mut reader = ShortRead::new(&mut source);
            let mut buf = vec![0; asked];
            let n = reader.read(&mut buf).expect("a slice reads");
            assert_eq!(n, data.len().min(asked));
            assert_eq!(reader.drained, drained, "{} of {asked}", data.len());
        }
    }
}
