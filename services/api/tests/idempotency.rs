//! Issue #15 item 10: `idempotency_keys` must not hold a digest of a device password that a
//! database reader can test guesses against, and rows must not be kept for ever.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use netledger_api::routes::devices::NewDevice;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

const OPERATION: &str = "register_device";

fn device(name: &str, password: &str) -> Value {
    json!({
        "name": name, "host": "10.250.0.9", "port": 8729,
        "transport": {"mode": "tls_verified"},
        "username": "api", "password": password, "tags": [],
    })
}

/// What a reader of the table could compute for a guessed password (the old scheme: SHA-256
/// of the operation, a NUL and the body as the API serialises it).
fn unkeyed_digest(body: &Value, guess: &str) -> Vec<u8> {
    let mut d: NewDevice = serde_json::from_value(body.clone()).unwrap();
    d.password = guess.to_owned();
    let mut bytes = OPERATION.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend(serde_json::to_vec(&d).unwrap());
    Sha256::digest(&bytes).to_vec()
}

async fn stored(owner: &PgPool, key: &str) -> Option<Vec<u8>> {
    sqlx::query_scalar("SELECT request_hash FROM idempotency_keys WHERE key = $1")
        .bind(key)
        .fetch_optional(owner)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn idempotency_rows_resist_a_password_dictionary_and_expire(owner: PgPool) {
    let app = support::app(owner.clone()).await;
    let password = "canary-device-pw-4711";
    let body = device("edge-idem-1", password);
    let r = app
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(&app.admin),
            Some(body.clone()),
            &[("idempotency-key", "reg-a")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let hash = stored(&owner, "reg-a").await.expect("the key is stored");
    // A dictionary attack with the right password among the guesses finds nothing.
    for guess in ["admin", "password", "hunter2", password] {
        assert_ne!(
            hash,
            unkeyed_digest(&body, guess),
            "the stored request hash is an unkeyed digest of the body: guessing the device \
             password `{guess}` against it succeeds"
        );
    }
    // A retry still replays; another body under the key is still refused.
    let again = app
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(&app.admin),
            Some(body.clone()),
            &[("idempotency-key", "reg-a")],
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers["idempotency-replayed"], "true");
    let other = app
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(&app.admin),
            Some(device("edge-idem-1", "another-password-1")),
            &[("idempotency-key", "reg-a")],
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Past the window, the tenant's next keyed request purges the old row.
    app.clock
        .advance(app.state.config().idempotency_window + Duration::from_secs(1));
    let admin = app.login(support::ADMIN_EMAIL, support::PASSWORD).await;
    let r = app
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(&admin),
            Some(device("edge-idem-2", "canary-device-pw-4712")),
            &[("idempotency-key", "reg-b")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        stored(&owner, "reg-a").await,
        None,
        "a key older than the idempotency window is kept"
    );
    assert!(stored(&owner, "reg-b").await.is_some());

    // The periodic sweep purges what the tenant's own requests did not.
    app.clock
        .advance(app.state.config().idempotency_window + Duration::from_secs(1));
    let purged = netledger_api::idempotency::purge_expired(&app.state)
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(stored(&owner, "reg-b").await, None);
}
