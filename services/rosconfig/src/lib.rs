//! RouterOS configuration export text: parse, model, render, normalise, diff, mask. Pure, no IO.
