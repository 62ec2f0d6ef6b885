//! Plaintext rustls did not accept yet, kept out of line.

use std::ops::Deref;

/// A byte buffer that costs one pointer while empty and released: most
/// connections never back up, so the `Vec` (24 bytes) lives on the heap
/// only while there is something in it.
/// The box is the point: `Option<Box<_>>` is 8 bytes in the connection.
#[allow(clippy::box_collection)]
#[derive(Default)]
pub struct Backlog(Option<Box<Vec<u8>>>);

impl Backlog {
    /// The buffer to append to, allocated if needed.
    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        self.0.get_or_insert_with(Box::default)
    }

    /// Appends `bytes`; appending nothing allocates nothing.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.vec_mut().extend_from_slice(bytes);
        }
    }

    /// The bytes, to be changed in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().map_or(&mut [], Vec::as_mut_slice)
    }

    /// Drops the first `n` bytes.
    pub fn consume(&mut self, n: usize) {
        if let Some(buf) = &mut self.0 {
            buf.drain(..n.min(buf.len()));
        }
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        if let Some(buf) = &mut self.0 {
            buf.clear();
        }
    }

    /// Frees the allocation once the buffer is empty.
    pub fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.0 = None;
        }
    }
}

#[cfg(test)]
impl Backlog {
    /// Whether the buffer holds an allocation.
    pub fn is_allocated(&self) -> bool {
        self.0.is_some()
    }
}

impl Deref for Backlog {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::Backlog;

    #[test]
    fn allocates_only_while_holding_bytes() {
        let mut b = Backlog::default();
        b.extend_from_slice(&[]);
        assert!(b.0.is_none());
        b.extend_from_slice(b"abcdef");
        b.consume(2);
        assert_eq!(&*b, b"cdef");
        b.release_if_empty();
        assert!(b.0.is_some());
        b.consume(10);
        assert!(b.is_empty());
        b.release_if_empty();
        assert!(b.0.is_none());
        b.vec_mut().push(1);
        b.clear();
        assert!(b.is_empty());
    }
}
