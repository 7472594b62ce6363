//! Simulated RouterOS devices speaking the real API protocol, with fault knobs and a control API.
