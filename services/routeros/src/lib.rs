//! RouterOS API client: sans-IO wire codec plus a tokio/rustls client. Depends on nothing of ours.
