//! Fuzzes the sans-IO decoder and the typed sentence layer with untrusted bytes.
//!
//! Checks, beyond "never panics": the decoder respects its limits, feeding in arbitrary
//! chunks gives the same sentences and error as feeding at once, and every sentence that
//! parses as a reply or command re-encodes to something that parses back equal.

#![no_main]

use libfuzzer_sys::fuzz_target;
use routeros::codec::{Decoder, Limits, Sentence};
use routeros::proto::{Command, Reply};

const LIMITS: Limits = Limits {
    max_word_len: 512,
    max_sentence_len: 2048,
    max_words: 32,
};

fn drain(d: &mut Decoder, out: &mut Vec<Result<Sentence, routeros::CodecError>>) -> bool {
    loop {
        match d.next_sentence() {
            Ok(Some(s)) => out.push(Ok(s)),
            Ok(None) => return false,
            Err(e) => {
                out.push(Err(e));
                return true;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size for the incremental feed.
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);

    let mut whole = Decoder::new(LIMITS);
    whole.feed(data);
    let mut a = Vec::new();
    drain(&mut whole, &mut a);

    let mut parts = Decoder::new(LIMITS);
    let mut b = Vec::new();
    for piece in data.chunks(chunk) {
        parts.feed(piece);
        if drain(&mut parts, &mut b) {
            break;
        }
    }
    assert_eq!(a, b, "chunked feed differs from whole feed");

    for sentence in a.iter().filter_map(|r| r.as_ref().ok()) {
        assert!(!sentence.is_empty());
        assert!(sentence.len() <= LIMITS.max_words);
        let total: usize = sentence.words().iter().map(|w| w.len()).sum();
        assert!(total <= LIMITS.max_sentence_len);
        assert!(sentence.words().iter().all(|w| !w.is_empty() && w.len() <= LIMITS.max_word_len));

        if let Ok(reply) = Reply::from_sentence(sentence) {
            let again = reply.to_sentence().expect("a parsed reply re-encodes");
            assert_eq!(Reply::from_sentence(&again).as_ref(), Ok(&reply));
        }
        if let Ok(cmd) = Command::from_sentence(sentence) {
            // Parsed names can be ones the encoder refuses (e.g. a query name starting with
            // `-`); when it does encode, it must parse back equal.
            if let Ok(again) = cmd.to_sentence() {
                assert_eq!(Command::from_sentence(&again).as_ref(), Ok(&cmd));
            }
        }
    }
});
