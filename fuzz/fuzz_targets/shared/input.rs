//! The fuzzer's bytes as a stream of parameters, shared by the targets
//! that read their input step by step.

/// The bytes left, read one at a time (zero once spent).
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    /// The next byte, or 0 once the input is spent.
    pub fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    /// As many bytes as the next byte says, at most `most`.
    pub fn bytes(&mut self, most: usize) -> &[u8] {
        let n = usize::from(self.byte()).min(most).min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }
}
