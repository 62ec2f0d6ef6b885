//! Lists in messages, borrowed from received frames or from values.

use super::HttpHeader;

/// A list of a message: strings, header pairs or connection ids, borrowed
/// either from received frames (as [`decode`](crate::codec::decode) makes
/// it) or from the caller's values (`List::from(&values[..])`, to encode).
#[derive(Clone, Copy)]
pub struct List<'a, T> {
    repr: Repr<'a, T>,
}

#[derive(Clone, Copy)]
enum Repr<'a, T> {
    /// Frames the decoder has checked; [`Item::at`] reads them.
    Wire(&'a [&'a [u8]]),
    Values(&'a [T]),
}

/// How a list entry is read from its frames. Strings and header pairs take
/// one and two frames per entry; connection ids are 8 bytes each, all in
/// one frame.
pub trait Item<'a>: Copy {
    /// The number of entries in `wire`.
    fn count(wire: &'a [&'a [u8]]) -> usize;
    /// Entry `index` of `wire`, or `None` past the end.
    fn at(wire: &'a [&'a [u8]], index: usize) -> Option<Self>;
}

impl<'a> Item<'a> for &'a str {
    fn count(wire: &'a [&'a [u8]]) -> usize {
        wire.len()
    }

    fn at(wire: &'a [&'a [u8]], index: usize) -> Option<Self> {
        // The decoder checked every frame of the wire form, so this holds.
        std::str::from_utf8(wire.get(index)?).ok()
    }
}

impl<'a> Item<'a> for HttpHeader<'a> {
    fn count(wire: &'a [&'a [u8]]) -> usize {
        wire.len() / 2
    }

    fn at(wire: &'a [&'a [u8]], index: usize) -> Option<Self> {
        let name = <&str as Item>::at(wire, index.checked_mul(2)?)?;
        Some((name, wire.get(index * 2 + 1)?))
    }
}

impl<'a> Item<'a> for u64 {
    fn count(wire: &'a [&'a [u8]]) -> usize {
        wire.first().map_or(0, |frame| frame.len() / 8)
    }

    fn at(wire: &'a [&'a [u8]], index: usize) -> Option<Self> {
        let start = index.checked_mul(8)?;
        let bytes = wire.first()?.get(start..start.checked_add(8)?)?;
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

impl<'a, T: Item<'a>> List<'a, T> {
    /// A list over frames the decoder has checked.
    pub(crate) fn wire(frames: &'a [&'a [u8]]) -> Self {
        List {
            repr: Repr::Wire(frames),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        match self.repr {
            Repr::Wire(wire) => T::count(wire),
            Repr::Values(values) => values.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        let repr = self.repr;
        (0..self.len()).map_while(move |index| match repr {
            Repr::Wire(wire) => T::at(wire, index),
            Repr::Values(values) => values.get(index).copied(),
        })
    }
}

impl<'a, T> From<&'a [T]> for List<'a, T> {
    fn from(values: &'a [T]) -> Self {
        List {
            repr: Repr::Values(values),
        }
    }
}

impl<'a, T: Item<'a> + PartialEq> PartialEq for List<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<'a, T: Item<'a> + Eq> Eq for List<'a, T> {}

impl<'a, T: Item<'a> + std::fmt::Debug> std::fmt::Debug for List<'a, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
