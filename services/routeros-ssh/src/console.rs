//! Recognising RouterOS console errors in command output.
//!
//! Over SSH a RouterOS console command usually ends with exit status 0 and prints its error
//! as text, so "did it work" is read from the output. The prefixes below are the error
//! texts ROUTEROS-NOTES §3 lists for the API and for script/CLI parsing (`bad command name X
//! (line 1 column 1)`, `syntax error (line N column M)`, `expected end of command (line N
//! column M)` from TIK `Docs/findings-cli.md` §10.9; `failure: …`, `no such item`, `input
//! does not match any value of …`, `unknown parameter …` from API traps). That the console
//! prints them in this form, each at the start of its own line, over an SSH exec channel is
//! **unsourced** (an assumption, in ROUTEROS-NOTES §8 terms); devsim follows it.
//!
//! Only lines starting in column 0 count: export continuation lines are indented by four
//! spaces and comments start with `#`, so a wrapped `comment=` value cannot look like an
//! error.

/// Line prefixes taken as console errors (see the module docs for their sources).
pub const CONSOLE_ERROR_PREFIXES: &[&str] = &[
    "bad command name",
    "syntax error",
    "expected end of command",
    "failure:",
    "no such item",
    "input does not match any value",
    "unknown parameter",
];

/// The first line of `output` that is a RouterOS console error, without its line ending.
pub fn console_error(output: &str) -> Option<&str> {
    output
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| CONSOLE_ERROR_PREFIXES.iter().any(|p| l.starts_with(p)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_kind_of_error_line() {
        for line in [
            "bad command name exprot (line 1 column 1)",
            "syntax error (line 1 column 12)",
            "expected end of command (line 1 column 18)",
            "failure: already have such address",
            "no such item",
            "input does not match any value of interface",
            "unknown parameter foo",
        ] {
            let out = format!("Opening script file x.rsc\r\n{line}\r\n");
            assert_eq!(console_error(&out), Some(line), "{out:?}");
        }
    }

    #[test]
    fn ignores_exports_and_indented_or_commented_text() {
        let export = "# 2026-02-21 15:28:26 by RouterOS 7.19.4\n\
                      /ip address\n\
                      add address=192.168.88.1/24 comment=\"see the \\\n    \
                      failure: notes\" interface=ether1\n\
                      # failure: not an error\n";
        assert_eq!(console_error(export), None);
        assert_eq!(
            console_error("Script file loaded and executed successfully\n"),
            None
        );
        assert_eq!(console_error(""), None);
        assert_eq!(console_error("  syntax error (line 1 column 1)"), None);
    }
}
