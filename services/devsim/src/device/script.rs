//! The script runner: parses a RouterOS script (`rosconfig::parse_script`) and hands each
//! line to the executor ([`Device::exec`]) with the script's [`Origin`]. It stops at the
//! first failing line (the error names it, `... (line N column M)`) or when a line takes
//! the device down (reboot, backup load, upgrade). Which commands a script may use is the
//! executor's business, not the runner's.
//!
//! Like RouterOS, a line's bracket substitutions (`[/system clock get time]` as an
//! argument, a `key=[...]` value, or nested in a `find`) run before the line itself, as
//! lines of the same origin (their value is not simulated, and a failure inside one is
//! ignored). A literal `[ find ... ]` is a
//! selector, not a substitution. `$` variables are not simulated.

use super::Device;
use super::exec::{Origin, Request};
use crate::state::DeviceState;

impl Device {
    /// Runs a script source that a command of `origin` starts (`/import`,
    /// `/system/script/run`, a scheduler entry, the console), then its lines. When the
    /// origin counts changes, the change ids the source carries count as applied once its
    /// first line has run: a script refused at its first line (the push's apply guard,
    /// `docs/push.md` step 5) changed nothing and is not an application.
    pub(crate) fn run_source(
        &self,
        st: &mut DeviceState,
        origin: Origin<'_>,
        source: &str,
    ) -> Result<(), String> {
        let count = origin.counts_changes().then_some(source);
        self.run_lines(st, source, origin.of_script_lines(), count, None)
    }

    /// Runs a line typed on an SSH console by `user` (lines as [`Origin::Ssh`], change ids
    /// counted like a script's), appending what each command prints to `out` (one line
    /// break after each output). The error names the failing command like a script's.
    pub(crate) fn run_console_line(
        &self,
        st: &mut DeviceState,
        user: &str,
        line: &str,
        out: &mut String,
    ) -> Result<(), String> {
        self.run_lines(st, line, Origin::Ssh(user), Some(line), Some(out))
    }

    /// Runs each line of a script as `origin`. Returns RouterOS-like error text naming the
    /// failing line.
    pub(crate) fn run_script(
        &self,
        st: &mut DeviceState,
        source: &str,
        origin: Origin<'_>,
    ) -> Result<(), String> {
        self.run_lines(st, source, origin, None, None)
    }

    fn run_lines(
        &self,
        st: &mut DeviceState,
        source: &str,
        origin: Origin<'_>,
        mut count: Option<&str>,
        mut out: Option<&mut String>,
    ) -> Result<(), String> {
        let cmds = rosconfig::parse_script(source).map_err(|e| e.message)?;
        for c in &cmds {
            for sub in &c.substitutions {
                if let Some(inner) = sub.text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                    // its value is not simulated, nor are commands devsim lacks (`get`):
                    // what it does run, it runs
                    let _ = self.run_script(st, inner, origin);
                }
            }
            let r = self.exec(st, origin, &Request::script(c));
            if r.is_ok()
                && let Some(text) = count.take()
            {
                super::count_changes(st, text);
            }
            if let (Ok(done), Some(out)) = (&r, out.as_deref_mut())
                && let Some(text) = &done.output
            {
                out.push_str(text);
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            }
            match r {
                Ok(done) if done.down => return Ok(()),
                Ok(_) => {}
                Err(refusal) => return Err(refusal.script_text(c, source)),
            }
        }
        Ok(())
    }
}
