//! Sans-IO wire codec for the RouterOS API: word length prefixes, words and sentences.
//!
//! A *word* is a length-prefixed run of raw bytes (no charset is implied); a *sentence* is a
//! sequence of words terminated by the zero-length word (a single `0x00` byte). This module
//! knows nothing about what the words mean; [`crate::proto`] types them.
//!
//! Length prefixes (ROUTEROS-NOTES §1.1, MikroTik manual "API"), most significant byte first:
//!
//! | length                  | bytes | first byte   |
//! |-------------------------|-------|--------------|
//! | `0x00..=0x7F`           | 1     | `0xxxxxxx`   |
//! | `0x80..=0x3FFF`         | 2     | `10xxxxxx`   |
//! | `0x4000..=0x1F_FFFF`    | 3     | `110xxxxx`   |
//! | `0x20_0000..=0xFFF_FFFF`| 4     | `1110xxxx`   |
//! | `0x1000_0000..`         | 5     | `0xF0` + 4 bytes of length |
//! | —                       | —     | `>= 0xF8` reserved control byte: fatal |
//!
//! The encoder always emits the shortest form. The decoder is tolerant: it accepts
//! non-minimal prefixes (as tik4net's reader does) and treats a first byte `0xF1..=0xF7` as a
//! five-byte prefix whose low three bits extend the length beyond 32 bits — such a length is
//! refused whatever the [`Limits`], as [`CodecError::WordTooLong`].
//!
//! The [`Decoder`] is bounded: every length prefix is checked against [`Limits`] before the
//! word's bytes are awaited, so a hostile peer cannot make it buffer more than
//! `max_word_len` plus one read's worth of bytes per word, and it never allocates on a
//! peer's say-so. After an error it stays failed (the stream is out of sync).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest word length the wire format can carry (the five-byte form holds a 32-bit length).
pub const MAX_ENCODABLE_LEN: u64 = u32::MAX as u64;

/// Errors from encoding or decoding the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The first byte of a length prefix was a reserved control byte (`>= 0xF8`).
    #[error("reserved control byte {byte:#04x} in a length prefix")]
    ReservedControlByte {
        /// The offending byte.
        byte: u8,
    },
    /// A word's announced length is above [`Limits::max_word_len`].
    #[error("word of {len} bytes exceeds the limit of {max}")]
    WordTooLong {
        /// Length announced by the prefix.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// The words of one sentence add up to more than [`Limits::max_sentence_len`] bytes.
    #[error("sentence of at least {len} bytes exceeds the limit of {max}")]
    SentenceTooLong {
        /// Payload bytes of the sentence so far, including the word that broke the limit.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A sentence has more than [`Limits::max_words`] words.
    #[error("sentence has more than {max} words")]
    TooManyWords {
        /// The configured limit.
        max: usize,
    },
    /// A word to encode is empty: on the wire a zero-length word is the sentence terminator,
    /// so it would end the sentence early.
    #[error("word {index} of the sentence is empty")]
    EmptyWord {
        /// Position of the word in the sentence.
        index: usize,
    },
    /// A word to encode is longer than the format can express.
    #[error("word of {len} bytes cannot be encoded (maximum {MAX_ENCODABLE_LEN})")]
    Unencodable {
        /// Length of the word.
        len: u64,
    },
}

/// Bounds the decoder enforces on untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted word, in bytes.
    pub max_word_len: usize,
    /// Largest accepted sentence, as the sum of its words' lengths (prefixes not counted).
    pub max_sentence_len: usize,
    /// Largest accepted number of words in one sentence (the terminator not counted).
    pub max_words: usize,
}

impl Limits {
    /// Generous limits for a client: 1 MiB words (file `contents` are at most 60 KB, `/file/read`
    /// chunks 32 KiB), 4 MiB sentences, 4096 words per sentence.
    pub const DEFAULT: Limits = Limits {
        max_word_len: 1 << 20,
        max_sentence_len: 4 << 20,
        max_words: 4096,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A sentence: the words between two terminators, in order. Words are raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Sentence {
    words: Vec<Bytes>,
}

impl Sentence {
    /// A sentence of the given words.
    pub fn new(words: Vec<Bytes>) -> Self {
        Self { words }
    }

    /// Appends a word.
    pub fn push(&mut self, word: impl Into<Bytes>) {
        self.words.push(word.into());
    }

    /// The words, in order.
    pub fn words(&self) -> &[Bytes] {
        &self.words
    }

    /// Consumes the sentence, returning its words.
    pub fn into_words(self) -> Vec<Bytes> {
        self.words
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when the sentence has no words (such a sentence encodes to a bare terminator).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Appends the wire form (every word, then the terminator) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_sentence(&self.words, dst)
    }

    /// The wire form as a fresh buffer.
    pub fn to_bytes(&self) -> Result<Bytes, CodecError> {
        let mut dst = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut dst)?;
        Ok(dst.freeze())
    }

    fn encoded_len(&self) -> usize {
        self.words
            .iter()
            .map(|w| {
                prefix_len(w.len() as u64)
                    .unwrap_or(5)
                    .saturating_add(w.len())
            })
            .fold(1usize, usize::saturating_add)
    }
}

impl<W: Into<Bytes>> FromIterator<W> for Sentence {
    fn from_iter<I: IntoIterator<Item = W>>(iter: I) -> Self {
        Self::new(iter.into_iter().map(Into::into).collect())
    }
}

/// Number of prefix bytes the shortest encoding of `len` uses, or `None` above
/// [`MAX_ENCODABLE_LEN`].
pub fn prefix_len(len: u64) -> Option<usize> {
    match len {
        0..=0x7F => Some(1),
        0x80..=0x3FFF => Some(2),
        0x4000..=0x1F_FFFF => Some(3),
        0x20_0000..=0xFFF_FFFF => Some(4),
        0x1000_0000..=MAX_ENCODABLE_LEN => Some(5),
        _ => None,
    }
}

/// Appends the shortest length prefix for `len` to `dst`.
///
/// This is exposed on its own so that huge lengths can be tested without allocating the word.
pub fn encode_len(len: u64, dst: &mut impl BufMut) -> Result<(), CodecError> {
    let Some(n) = prefix_len(len) else {
        return Err(CodecError::Unencodable { len });
    };
    match n {
        1 => dst.put_u8(len as u8),
        2 => dst.put_u16((len as u16) | 0x8000),
        3 => {
            let v = (len as u32) | 0x00C0_0000;
            dst.put_slice(&v.to_be_bytes()[1..]);
        }
        4 => dst.put_u32((len as u32) | 0xE000_0000),
        _ => {
            dst.put_u8(0xF0);
            dst.put_u32(len as u32);
        }
    }
    Ok(())
}

/// Result of reading a length prefix from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// Not enough bytes yet to know the length.
    Incomplete,
    /// The prefix occupies `prefix_len` bytes and announces `len` bytes of word.
    Complete {
        /// The announced word length (up to 35 bits for the `0xF1..=0xF7` forms).
        len: u64,
        /// Bytes taken by the prefix itself.
        prefix_len: usize,
    },
}

/// Reads a length prefix from the start of `src` without consuming it.
pub fn decode_len(src: &[u8]) -> Result<Prefix, CodecError> {
    let Some(&b0) = src.first() else {
        return Ok(Prefix::Incomplete);
    };
    let (extra, first_bits) = match b0 {
        0x00..=0x7F => (0usize, u64::from(b0)),
        0x80..=0xBF => (1, u64::from(b0 & 0x3F)),
        0xC0..=0xDF => (2, u64::from(b0 & 0x1F)),
        0xE0..=0xEF => (3, u64::from(b0 & 0x0F)),
        0xF0..=0xF7 => (4, u64::from(b0 & 0x07)),
        _ => return Err(CodecError::ReservedControlByte { byte: b0 }),
    };
    let Some(rest) = src.get(1..=extra) else {
        return Ok(Prefix::Incomplete);
    };
    let len = rest
        .iter()
        .fold(first_bits, |acc, &b| (acc << 8) | u64::from(b));
    Ok(Prefix::Complete {
        len,
        prefix_len: extra + 1,
    })
}

/// Appends one word (prefix and bytes) to `dst`. Empty words are refused (see
/// [`CodecError::EmptyWord`]).
pub fn encode_word(word: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
    if word.is_empty() {
        return Err(CodecError::EmptyWord { index: 0 });
    }
    encode_len(word.len() as u64, dst)?;
    dst.put_slice(word);
    Ok(())
}

/// Appends a sentence (each word, then the zero-length terminator) to `dst`.
///
/// On error `dst` is left as it was.
pub fn encode_sentence<W: AsRef<[u8]>>(words: &[W], dst: &mut BytesMut) -> Result<(), CodecError> {
    for (index, w) in words.iter().enumerate() {
        let len = w.as_ref().len() as u64;
        if len == 0 {
            return Err(CodecError::EmptyWord { index });
        }
        if prefix_len(len).is_none() {
            return Err(CodecError::Unencodable { len });
        }
    }
    for w in words {
        encode_word(w.as_ref(), dst)?;
    }
    dst.put_u8(0);
    Ok(())
}

/// Incremental, bounded sentence decoder. Feed it bytes as they arrive; take sentences out.
///
/// Empty sentences (a terminator with no words before it) are skipped: the router ignores
/// them (ROUTEROS-NOTES §1.2) and no reply is ever empty.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    buf: BytesMut,
    words: Vec<Bytes>,
    sentence_len: u64,
    failed: Option<CodecError>,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: BytesMut::new(),
            words: Vec::new(),
            sentence_len: 0,
            failed: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends received bytes. Nothing is parsed until [`Decoder::next_sentence`].
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes fed but not yet consumed into a word.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True when no partial sentence is pending (no buffered bytes, no words collected).
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.words.is_empty()
    }

    /// The next complete sentence, `Ok(None)` if more bytes are needed, or the error that
    /// desynchronised the stream (returned again on every later call).
    pub fn next_sentence(&mut self) -> Result<Option<Sentence>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.step() {
            Ok(s) => Ok(s),
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf = BytesMut::new();
                self.words = Vec::new();
                Err(e)
            }
        }
    }

    fn step(&mut self) -> Result<Option<Sentence>, CodecError> {
        loop {
            let (len, prefix_len) = match decode_len(&self.buf)? {
                Prefix::Incomplete => return Ok(None),
                Prefix::Complete { len, prefix_len } => (len, prefix_len),
            };
            if len == 0 {
                self.buf.advance(prefix_len);
                if self.words.is_empty() {
                    continue;
                }
                self.sentence_len = 0;
                return Ok(Some(Sentence::new(std::mem::take(&mut self.words))));
            }
            let limits = self.limits;
            // Lengths beyond 32 bits (the `0xF1..=0xF7` forms) are refused whatever the limit.
            if len > MAX_ENCODABLE_LEN || len > limits.max_word_len as u64 {
                return Err(CodecError::WordTooLong {
                    len,
                    max: limits.max_word_len,
                });
            }
            let sentence_len = self.sentence_len.saturating_add(len);
            if sentence_len > limits.max_sentence_len as u64 {
                return Err(CodecError::SentenceTooLong {
                    len: sentence_len,
                    max: limits.max_sentence_len,
                });
            }
            if self.words.len() >= limits.max_words {
                return Err(CodecError::TooManyWords {
                    max: limits.max_words,
                });
            }
            // `len <= max_word_len`, a usize, so this cannot truncate.
            let len = len as usize;
            if self.buf.len() < prefix_len + len {
                // Let the buffer grow to hold the whole word, but never beyond it on the
                // strength of the prefix alone: bytes are reserved as they arrive.
                return Ok(None);
            }
            self.buf.advance(prefix_len);
            let word = self.buf.split_to(len).freeze();
            self.words.push(word);
            self.sentence_len = sentence_len;
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(Limits::DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc_len(len: u64) -> Vec<u8> {
        let mut v = Vec::new();
        encode_len(len, &mut v).unwrap();
        v
    }

    #[test]
    fn length_prefixes_match_the_manual_table() {
        assert_eq!(enc_len(0), [0x00]);
        assert_eq!(enc_len(0x7F), [0x7F]);
        assert_eq!(enc_len(0x80), [0x80, 0x80]);
        assert_eq!(enc_len(0x3FFF), [0xBF, 0xFF]);
        assert_eq!(enc_len(0x4000), [0xC0, 0x40, 0x00]);
        assert_eq!(enc_len(0x1F_FFFF), [0xDF, 0xFF, 0xFF]);
        assert_eq!(enc_len(0x20_0000), [0xE0, 0x20, 0x00, 0x00]);
        assert_eq!(enc_len(0xFFF_FFFF), [0xEF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(enc_len(0x1000_0000), [0xF0, 0x10, 0x00, 0x00, 0x00]);
        assert_eq!(enc_len(0xFFFF_FFFF), [0xF0, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(
            encode_len(0x1_0000_0000, &mut Vec::new()),
            Err(CodecError::Unencodable { len: 0x1_0000_0000 })
        );
    }

    #[test]
    fn boundary_prefixes_decode_back() {
        for len in [
            0u64,
            0x7F,
            0x80,
            0x3FFF,
            0x4000,
            0x1F_FFFF,
            0x20_0000,
            0xFFF_FFFF,
            0x1000_0000,
            0xFFFF_FFFF,
        ] {
            let bytes = enc_len(len);
            assert_eq!(bytes.len(), prefix_len(len).unwrap());
            assert_eq!(
                decode_len(&bytes),
                Ok(Prefix::Complete {
                    len,
                    prefix_len: bytes.len()
                }),
                "len {len:#x}"
            );
            for cut in 0..bytes.len() {
                assert_eq!(decode_len(&bytes[..cut]), Ok(Prefix::Incomplete));
            }
        }
    }

    #[test]
    fn manual_login_example_encodes_byte_exact() {
        let s: Sentence = ["/login", "=name=admin"].into_iter().collect();
        let expected = [
            0x06, 0x2F, 0x6C, 0x6F, 0x67, 0x69, 0x6E, 0x0B, 0x3D, 0x6E, 0x61, 0x6D, 0x65, 0x3D,
            0x61, 0x64, 0x6D, 0x69, 0x6E, 0x00,
        ];
        assert_eq!(&s.to_bytes().unwrap()[..], &expected[..]);
        let mut d = Decoder::default();
        d.feed(&expected);
        assert_eq!(d.next_sentence().unwrap(), Some(s));
        assert_eq!(d.next_sentence().unwrap(), None);
        assert!(d.is_idle());
    }

    #[test]
    fn reserved_control_byte_is_fatal_and_sticky() {
        let mut d = Decoder::default();
        d.feed(&[0x01, b'a', 0xF8]);
        let err = CodecError::ReservedControlByte { byte: 0xF8 };
        assert_eq!(d.next_sentence(), Err(err.clone()));
        d.feed(&[0x00]);
        assert_eq!(d.next_sentence(), Err(err));
    }

    #[test]
    fn non_minimal_prefixes_are_accepted() {
        // "ab" with a five-byte prefix, then "c" with a two-byte prefix.
        let mut d = Decoder::default();
        d.feed(&[0xF0, 0, 0, 0, 2, b'a', b'b', 0x80, 0x01, b'c', 0x00]);
        let s = d.next_sentence().unwrap().unwrap();
        assert_eq!(
            s.words(),
            &[Bytes::from_static(b"ab"), Bytes::from_static(b"c")]
        );
    }

    #[test]
    fn high_five_byte_forms_are_over_any_limit() {
        let mut d = Decoder::new(Limits {
            max_word_len: usize::MAX,
            max_sentence_len: usize::MAX,
            max_words: 10,
        });
        d.feed(&[0xF7, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(
            d.next_sentence(),
            Err(CodecError::WordTooLong {
                len: 0x7_FFFF_FFFF,
                max: usize::MAX
            })
        );
    }

    #[test]
    fn huge_announced_word_is_refused_before_buffering() {
        let mut d = Decoder::default();
        let mut prefix = Vec::new();
        encode_len(0xFFFF_FFFF, &mut prefix).unwrap();
        d.feed(&prefix);
        assert!(matches!(
            d.next_sentence(),
            Err(CodecError::WordTooLong {
                len: 0xFFFF_FFFF,
                ..
            })
        ));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn sentence_and_word_count_limits() {
        let limits = Limits {
            max_word_len: 4,
            max_sentence_len: 6,
            max_words: 2,
        };
        let mut d = Decoder::new(limits);
        d.feed(&[3, b'a', b'b', b'c', 4, b'a', b'b', b'c', b'd']);
        assert_eq!(
            d.next_sentence(),
            Err(CodecError::SentenceTooLong { len: 7, max: 6 })
        );

        let mut d = Decoder::new(limits);
        d.feed(&[1, b'a', 1, b'b', 1, b'c', 0]);
        assert_eq!(d.next_sentence(), Err(CodecError::TooManyWords { max: 2 }));

        let mut d = Decoder::new(limits);
        d.feed(&[5]);
        assert_eq!(
            d.next_sentence(),
            Err(CodecError::WordTooLong { len: 5, max: 4 })
        );

        // Exactly at the limits is fine, and the count restarts per sentence.
        let mut d = Decoder::new(limits);
        d.feed(&[
            4, b'a', b'b', b'c', b'd', 2, b'e', b'f', 0, 1, b'x', 1, b'y', 0,
        ]);
        assert_eq!(d.next_sentence().unwrap().unwrap().len(), 2);
        assert_eq!(d.next_sentence().unwrap().unwrap().len(), 2);
    }

    #[test]
    fn empty_sentences_are_skipped() {
        let mut d = Decoder::default();
        d.feed(&[0, 0, 0, 1, b'a', 0, 0]);
        assert_eq!(d.next_sentence().unwrap().unwrap().len(), 1);
        assert_eq!(d.next_sentence().unwrap(), None);
    }

    #[test]
    fn empty_words_cannot_be_encoded() {
        // An empty word would be read back as the terminator, splitting the sentence.
        let s: Sentence = [&b"/x"[..], b"", b"=a=b"].into_iter().collect();
        assert_eq!(s.to_bytes(), Err(CodecError::EmptyWord { index: 1 }));
        let mut dst = BytesMut::new();
        assert!(encode_sentence(&[&b"a"[..], b""], &mut dst).is_err());
        assert!(dst.is_empty(), "nothing written on error");
    }

    #[test]
    fn words_are_bytes_not_utf8() {
        let s = Sentence::new(vec![Bytes::from_static(&[0xFF, 0xFE, 0x00, 0x80])]);
        let mut d = Decoder::default();
        d.feed(&s.to_bytes().unwrap());
        assert_eq!(d.next_sentence().unwrap(), Some(s));
    }

    fn word_of_class() -> impl Strategy<Value = Vec<u8>> {
        // Lengths spread over the 1-, 2- and 3-byte classes with their boundaries; the 4- and
        // 5-byte classes are covered by prefix-only tests (a 2 MiB word per case is too slow).
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 1..=0x7F),
            proptest::collection::vec(any::<u8>(), 0x80..=0x3FFF),
            Just(vec![0xAA; 0x7F]),
            Just(vec![0xAB; 0x80]),
            Just(vec![0xAC; 0x3FFF]),
            Just(vec![0xAD; 0x4000]),
            proptest::collection::vec(any::<u8>(), 0x4000..=0x4100),
        ]
    }

    fn sentences() -> impl Strategy<Value = Vec<Sentence>> {
        proptest::collection::vec(
            proptest::collection::vec(word_of_class(), 1..6)
                .prop_map(|ws| ws.into_iter().collect::<Sentence>()),
            0..4,
        )
    }

    proptest! {
        #[test]
        fn prefix_round_trips_for_every_class(len in prop_oneof![
            0u64..=0x7F,
            0x80u64..=0x3FFF,
            0x4000u64..=0x1F_FFFF,
            0x20_0000u64..=0xFFF_FFFF,
            0x1000_0000u64..=MAX_ENCODABLE_LEN,
            Just(0x7Fu64), Just(0x80), Just(0x3FFF), Just(0x4000), Just(0x1F_FFFF),
            Just(0x20_0000), Just(0xFFF_FFFF), Just(0x1000_0000), Just(MAX_ENCODABLE_LEN),
        ]) {
            let bytes = enc_len(len);
            prop_assert_eq!(Some(bytes.len()), prefix_len(len));
            prop_assert_eq!(decode_len(&bytes), Ok(Prefix::Complete { len, prefix_len: bytes.len() }));
        }

        #[test]
        fn sentences_round_trip(ss in sentences()) {
            let mut wire = BytesMut::new();
            for s in &ss { s.encode(&mut wire).unwrap(); }
            let mut d = Decoder::default();
            d.feed(&wire);
            for s in &ss {
                prop_assert_eq!(d.next_sentence().unwrap(), Some(s.clone()));
            }
            prop_assert_eq!(d.next_sentence().unwrap(), None);
            prop_assert!(d.is_idle());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = Decoder::new(Limits { max_word_len: 64, max_sentence_len: 128, max_words: 8 });
            d.feed(&data);
            // Each successful call consumes at least one byte, so this terminates.
            for _ in 0..=data.len() {
                match d.next_sentence() {
                    Ok(Some(s)) => prop_assert!(s.len() <= 8),
                    Ok(None) | Err(_) => break,
                }
            }
            prop_assert!(d.buffered() <= data.len());
        }

        #[test]
        fn byte_by_byte_equals_all_at_once(
            data in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                sentences().prop_map(|ss| {
                    let mut w = BytesMut::new();
                    for s in &ss { s.encode(&mut w).unwrap(); }
                    w.to_vec()
                }),
            ]
        ) {
            let limits = Limits { max_word_len: 0x5000, max_sentence_len: 0x10000, max_words: 8 };
            let drain = |d: &mut Decoder, out: &mut Vec<Result<Sentence, CodecError>>| loop {
                match d.next_sentence() {
                    Ok(Some(s)) => out.push(Ok(s)),
                    Ok(None) => break,
                    Err(e) => { out.push(Err(e)); break; }
                }
            };
            let mut whole = Decoder::new(limits);
            whole.feed(&data);
            let mut a = Vec::new();
            drain(&mut whole, &mut a);

            let mut bytewise = Decoder::new(limits);
            let mut b = Vec::new();
            for byte in &data {
                bytewise.feed(std::slice::from_ref(byte));
                drain(&mut bytewise, &mut b);
                if matches!(b.last(), Some(Err(_))) { break; }
            }
            prop_assert_eq!(a, b);
        }
    }
}
