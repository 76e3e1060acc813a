//! Annex-B byte streams (ITU-T H.264 Annex B, H.265 Annex B): NAL units separated by start
//! codes `00 00 01` or `00 00 00 01`.
//!
//! Two readers, neither of which allocates per NAL unit:
//! - [`NalUnits`]: an iterator over a complete buffer (a whole file in memory).
//! - [`NalSplitter`]: incremental, for input that arrives in chunks (a pipe, a socket); it
//!   owns one buffer sized at construction and hands out NAL units that end at the next start
//!   code, or at [`NalSplitter::finish`].
//!
//! NAL units are returned without their start code and without trailing zero bytes
//! (`trailing_zero_8bits`, B.2: a NAL unit ends with `rbsp_stop_one_bit` or with a
//! `cabac_zero_word` `00 00 03`, so its last byte is never zero).

/// Finds the next start code `00 00 01` at or after `from`; returns the index of its first
/// zero byte (the `01` is at index + 2).
pub fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= data.len() {
        // Skip quickly: the third byte of a start code is 1, so if data[i + 2] > 1 no start
        // code can begin at i, i + 1 or i + 2.
        let b2 = data[i + 2];
        if b2 > 1 {
            i += 3;
            continue;
        }
        if b2 == 1 && data[i] == 0 && data[i + 1] == 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn trim_trailing_zeros(nal: &[u8]) -> &[u8] {
    let mut end = nal.len();
    while end > 0 && nal[end - 1] == 0 {
        end -= 1;
    }
    &nal[..end]
}

/// Iterator over the NAL units of a complete Annex-B buffer. Bytes before the first start code
/// are skipped (use [`NalUnits::leading_garbage`] to detect them); empty NAL units are skipped.
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    data: &'a [u8],
    /// Index of the first byte after the start code of the next NAL unit.
    pos: usize,
    first: Option<usize>,
}

impl<'a> NalUnits<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let first = find_start_code(data, 0);
        NalUnits {
            data,
            pos: first.map_or(data.len(), |i| i + 3),
            first,
        }
    }

    /// Resumes iteration at byte `pos` of `data`, which must be a value returned by
    /// [`NalUnits::position`] (or 0).
    pub fn resume(data: &'a [u8], pos: usize) -> Self {
        if pos == 0 {
            return Self::new(data);
        }
        NalUnits {
            data,
            pos: pos.min(data.len()),
            first: Some(0),
        }
    }

    /// Where the next NAL unit starts (after its start code); pass to [`NalUnits::resume`].
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Index of the first 3-byte start code `00 00 01` (so 1 for a stream that begins with a
    /// 4-byte start code); `None`: no start code at all.
    pub fn leading_garbage(&self) -> Option<usize> {
        self.first
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.pos < self.data.len() {
            let start = self.pos;
            let (end, next) = match find_start_code(self.data, start) {
                Some(i) => (i, i + 3),
                None => (self.data.len(), self.data.len()),
            };
            self.pos = next;
            let nal = trim_trailing_zeros(&self.data[start..end]);
            if !nal.is_empty() {
                return Some(nal);
            }
        }
        None
    }
}

/// The incremental splitter's buffer is full and holds no complete NAL unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("NAL unit larger than the {capacity}-byte Annex-B buffer")]
pub struct NalTooLarge {
    pub capacity: usize,
}

/// Incremental Annex-B splitter over chunked input, with one buffer allocated at construction.
///
/// Protocol: [`push`](Self::push) a chunk, then call [`next_nal`](Self::next_nal) until it
/// returns `None`, then push the next chunk. At end of input call [`finish`](Self::finish) and
/// drain `next_nal` once more to get the last NAL unit.
#[derive(Debug)]
pub struct NalSplitter {
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    head: usize,
    /// Index where scanning for the next start code resumes.
    scan: usize,
    /// Start of the current NAL unit's payload (after its start code), once one was seen.
    nal_start: Option<usize>,
    finished: bool,
}

impl NalSplitter {
    /// `capacity` bounds the largest NAL unit (plus one chunk) the splitter can hold.
    pub fn with_capacity(capacity: usize) -> Self {
        NalSplitter {
            buf: Vec::with_capacity(capacity),
            head: 0,
            scan: 0,
            nal_start: None,
            finished: false,
        }
    }

    /// Forgets all buffered data (e.g. when a file source loops).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.scan = 0;
        self.nal_start = None;
        self.finished = false;
    }

    /// Appends a chunk. Compacts the buffer first; fails (without consuming anything) if the
    /// pending data plus the chunk would exceed the capacity.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), NalTooLarge> {
        if self.head > 0 {
            self.buf.copy_within(self.head.., 0);
            let shift = self.head;
            self.buf.truncate(self.buf.len() - shift);
            self.scan -= shift;
            self.nal_start = self.nal_start.map(|s| s - shift);
            self.head = 0;
        }
        if self.buf.len() + chunk.len() > self.buf.capacity() {
            return Err(NalTooLarge {
                capacity: self.buf.capacity(),
            });
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// Marks the end of input: the data after the last start code becomes a NAL unit.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The next complete NAL unit, if the buffered data holds one.
    pub fn next_nal(&mut self) -> Option<&[u8]> {
        loop {
            // Back up two bytes so that a start code split across chunks is found.
            match find_start_code(&self.buf, self.scan) {
                Some(i) => {
                    let prev = self.nal_start.replace(i + 3);
                    self.scan = i + 3;
                    self.head = i + 3;
                    if let Some(s) = prev {
                        let nal = trim_trailing_zeros(&self.buf[s..i]);
                        if !nal.is_empty() {
                            return Some(nal);
                        }
                    }
                }
                None => {
                    if self.finished {
                        let s = self.nal_start.take()?;
                        let end = self.buf.len();
                        self.head = end;
                        self.scan = end;
                        let nal = trim_trailing_zeros(&self.buf[s..end]);
                        if nal.is_empty() {
                            return None;
                        }
                        return Some(nal);
                    }
                    self.scan = self.buf.len().saturating_sub(2).max(self.scan);
                    if self.nal_start.is_none() {
                        // Nothing before the first start code is kept.
                        self.head = self.scan;
                    } else {
                        self.head = self.nal_start.unwrap_or(self.scan).min(self.scan);
                    }
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = &[
        0xAA, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 5, 0, 0, 3, 0, 0,
        1, 0x41, 9, 0, 0,
    ];

    fn expected() -> Vec<Vec<u8>> {
        vec![
            vec![0x67, 1, 2],
            vec![0x68, 3],
            vec![0x65, 4, 5, 0, 0, 3],
            vec![0x41, 9],
        ]
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let it = NalUnits::new(STREAM);
        assert_eq!(it.leading_garbage(), Some(2));
        let got: Vec<Vec<u8>> = it.map(|n| n.to_vec()).collect();
        assert_eq!(got, expected());
        assert_eq!(NalUnits::new(&[1, 2, 3]).count(), 0);
        assert_eq!(NalUnits::new(&[1, 2, 3]).leading_garbage(), None);
        assert_eq!(NalUnits::new(&[]).count(), 0);
        assert_eq!(NalUnits::new(&[0, 0, 1]).count(), 0);
    }

    #[test]
    fn resume_continues_where_it_stopped() {
        let mut it = NalUnits::new(STREAM);
        it.next();
        let pos = it.position();
        let rest: Vec<Vec<u8>> = NalUnits::resume(STREAM, pos).map(|n| n.to_vec()).collect();
        assert_eq!(rest, expected()[1..].to_vec());
    }

    #[test]
    fn incremental_matches_whole_buffer_for_every_chunk_size() {
        for chunk in 1..STREAM.len() + 1 {
            let mut sp = NalSplitter::with_capacity(64);
            let mut got = Vec::new();
            for c in STREAM.chunks(chunk) {
                sp.push(c).unwrap();
                while let Some(n) = sp.next_nal() {
                    got.push(n.to_vec());
                }
            }
            sp.finish();
            while let Some(n) = sp.next_nal() {
                got.push(n.to_vec());
            }
            assert_eq!(got, expected(), "chunk size {chunk}");
        }
    }

    #[test]
    fn incremental_reports_overflow() {
        let mut sp = NalSplitter::with_capacity(8);
        sp.push(&[0, 0, 1, 0x65, 1, 2]).unwrap();
        assert!(sp.next_nal().is_none());
        assert_eq!(
            sp.push(&[3, 4, 5, 6, 7, 8]),
            Err(NalTooLarge { capacity: 8 })
        );
    }
}
