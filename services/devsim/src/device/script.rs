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
    /// `/system/script/run`, a scheduler entry, the console): counts the change ids it
    /// carries when the origin counts changes, then runs its lines.
    pub(crate) fn run_source(
        &self,
        st: &mut DeviceState,
        origin: Origin,
        source: &str,
    ) -> Result<(), String> {
        if origin.counts_changes() {
            super::count_changes(st, source);
        }
        self.run_script(st, source, origin.of_script_lines())
    }

    /// Runs each line of a script as `origin`. Returns RouterOS-like error text naming the
    /// failing line.
    pub(crate) fn run_script(
        &self,
        st: &mut DeviceState,
        source: &str,
        origin: Origin,
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
            match self.exec(st, origin, &Request::script(c)) {
                Ok(done) if done.down => return Ok(()),
                Ok(_) => {}
                Err(refusal) => return Err(refusal.script_text(c)),
            }
        }
        Ok(())
    }
}
