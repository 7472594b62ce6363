//! Config history: one ordinary git repository per tenant (git2), one file per device, a
//! commit per snapshot that changed something; normalised and secret-masked before it is
//! written. Knows nothing of devices' network access, HTTP or the event store.
