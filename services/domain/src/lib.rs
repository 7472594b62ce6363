//! Pure domain: ids, value objects, event envelopes, canonical bytes and hash chains. No IO.
