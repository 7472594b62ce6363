//! Issue #15 items 11, 14 and 19 against a real PostgreSQL: access tokens are checked
//! against the user's state on every request (forged, disabled, re-roled, logged out and
//! password-changed tokens are 401 at once), live-event streams close at revocation and at
//! expiry, refresh sessions end at their absolute lifetime, and API keys expire by default,
//! within a maximum, and die with their creator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use netledger_domain::clock::Clock;
use netledger_domain::identity::Role;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;
use tower::ServiceExt;

mod support;
use support::{ADMIN_EMAIL, App, PASSWORD, Reply, app};

/// An HS256 token over `claims` signed with `secret`, built by hand (as an attacker would).
fn forge(secret: &[u8], claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    let sig = mac.finalize().into_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn refresh_cookie(r: &Reply) -> String {
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn refresh(app: &App, cookie: &str) -> Reply {
    app.call(
        Method::POST,
        "/api/v1/auth/refresh",
        None,
        None,
        &[("cookie", cookie)],
    )
    .await
}

async fn patch_user(app: &App, id: &str, body: Value) -> Reply {
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(&app.admin),
            Some(body),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r
}

fn status_of(r: &Reply) -> StatusCode {
    r.status
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn forged_tokens_are_refused(pool: PgPool) {
    let app = app(pool).await;
    let me = app.get("/api/v1/auth/me", &app.admin).await.body;
    let now = app.clock.now().unix_timestamp();
    let claims = |sub: &str, role: &str| {
        json!({
            "iss": "netledger", "sub": sub, "tid": me["tenant_id"], "role": role,
            "sid": uuid::Uuid::new_v4(), "sv": 1, "iat": now, "exp": now + 600,
        })
    };
    // The development secret used to be this public constant: it signs nothing now.
    let public = b"netledger-development-secret-do-not-use-in-production";
    let t = forge(public, &claims(me["id"].as_str().unwrap(), "super_admin"));
    let r = app.get("/api/v1/auth/me", &t).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);

    // Even with the real secret, claims are checked against the state: a user that does not
    // exist, or a session that was never started, is refused.
    let secret = app.state.config().jwt_secret.expose().as_bytes().to_vec();
    let ghost = forge(
        &secret,
        &claims(&uuid::Uuid::new_v4().to_string(), "super_admin"),
    );
    let r = app.get("/api/v1/auth/me", &ghost).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert!(r.is_problem());
    let no_session = forge(&secret, &claims(me["id"].as_str().unwrap(), "super_admin"));
    let r = app.get("/api/v1/auth/me", &no_session).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn disable_role_change_password_change_and_logout_revoke_tokens_at_once(pool: PgPool) {
    let app = app(pool).await;
    let email = "olga@example.net";
    let (id, _) = app.user(email, Role::Operator).await;

    // Role change: the old token stops at once; a refresh gives the new role.
    let login = app.login_reply(email, PASSWORD).await;
    let token = login.body["access_token"].as_str().unwrap().to_owned();
    let cookie = refresh_cookie(&login);
    let r = app.get("/api/v1/auth/me", &token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["role"], "operator");
    patch_user(&app, &id, json!({"role": "viewer"})).await;
    let r = app.get("/api/v1/auth/me", &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert!(r.detail().contains("revoked"), "{}", r.detail());
    let r = refresh(&app, &cookie).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "viewer");
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let me = app.get("/api/v1/auth/me", &token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["role"], "viewer");

    // Logout of one session stops that session's access token; another session lives.
    let other = app.login(email, PASSWORD).await;
    let cookie = refresh_cookie(&r);
    let out = app
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(&app.get("/api/v1/auth/me", &token).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_of(&app.get("/api/v1/auth/me", &other).await),
        StatusCode::OK
    );

    // Logout everywhere: every token of the user stops.
    let third = app.login(email, PASSWORD).await;
    let r = app
        .call(
            Method::POST,
            "/api/v1/auth/logout-all",
            Some(&other),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    for t in [&other, &third] {
        assert_eq!(
            status_of(&app.get("/api/v1/auth/me", t).await),
            StatusCode::UNAUTHORIZED
        );
    }

    // A password change (by the user) stops the tokens of every session.
    let a = app.login(email, PASSWORD).await;
    let b = app.login(email, PASSWORD).await;
    let new_password = "another correct horse staple";
    let r = app
        .post(
            "/api/v1/auth/password",
            &a,
            json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for t in [&a, &b] {
        assert_eq!(
            status_of(&app.get("/api/v1/auth/me", t).await),
            StatusCode::UNAUTHORIZED
        );
    }

    // Disabling: the token stops at once (no waiting for its expiry).
    let t = app.login(email, new_password).await;
    assert_eq!(
        status_of(&app.get("/api/v1/auth/me", &t).await),
        StatusCode::OK
    );
    patch_user(&app, &id, json!({"disabled": true})).await;
    assert_eq!(
        status_of(&app.get("/api/v1/auth/me", &t).await),
        StatusCode::UNAUTHORIZED
    );
    // The administrator's own token was never affected.
    assert_eq!(
        status_of(&app.get("/api/v1/auth/me", &app.admin).await),
        StatusCode::OK
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn refresh_sessions_end_at_their_absolute_lifetime(pool: PgPool) {
    // Default: 12 hours from the login, however often the session slid.
    let app = app(pool).await;
    let login = app.login_reply(ADMIN_EMAIL, PASSWORD).await;
    let mut cookie = refresh_cookie(&login);
    for _ in 0..2 {
        app.clock.advance(Duration::from_secs(5 * 3600));
        let r = refresh(&app, &cookie).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        cookie = refresh_cookie(&r);
    }
    // 10 h in, the cookie lives at most the 2 h the session has left.
    app.clock.advance(Duration::from_secs(3 * 3600));
    let r = refresh(&app, &cookie).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert_eq!(
        r.problem_type(),
        "urn:netledger:problem:refresh-token-invalid"
    );
}

async fn open_live(app: &App, token: &str) -> Body {
    let req = Request::builder()
        .uri("/api/v1/events/stream")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.into_body()
}

/// Reads the stream until it ends; panics if it is still open after a generous safety
/// timeout.
async fn until_closed(body: Body) {
    let mut stream = body.into_data_stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(None) | Ok(Some(Err(_))) => return,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the live-event stream is still open"),
        }
    }
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn live_streams_close_at_revocation_and_at_expiry(pool: PgPool) {
    let app = app(pool).await;
    let (id, token) = app.user("olga@example.net", Role::Operator).await;
    // Revocation: disabling the user closes their stream.
    let body = open_live(&app, &token).await;
    let closed = tokio::spawn(until_closed(body));
    patch_user(&app, &id, json!({"disabled": true})).await;
    closed.await.unwrap();

    // A revoked API key's stream closes too.
    let r = app
        .post(
            "/api/v1/api-keys",
            &app.admin,
            json!({"name": "feed", "scopes": ["events:read"]}),
        )
        .await;
    let key = r.body["secret"].as_str().unwrap().to_owned();
    let key_id = r.body["key"]["id"].as_str().unwrap().to_owned();
    let body = open_live(&app, &key).await;
    let closed = tokio::spawn(until_closed(body));
    let del = app
        .call(
            Method::DELETE,
            &format!("/api/v1/api-keys/{key_id}"),
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(del.status, StatusCode::OK);
    closed.await.unwrap();

    // Expiry: the access token's `exp` passes (the state's clock), the stream closes.
    let (_, token) = app.user("vera@example.net", Role::Viewer).await;
    let body = open_live(&app, &token).await;
    let closed = tokio::spawn(until_closed(body));
    app.clock.advance(Duration::from_secs(16 * 60));
    closed.await.unwrap();
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn api_keys_expire_by_default_within_a_maximum_and_die_with_their_creator(pool: PgPool) {
    let app = app(pool).await;
    let (admin_id, admin) = app.user("tina@example.net", Role::TenantAdmin).await;
    let now = app.clock.now();

    // No expiry asked: 90 days by default.
    let r = app
        .post(
            "/api/v1/api-keys",
            &admin,
            json!({"name": "ci", "scopes": ["events:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let expires = time::OffsetDateTime::parse(
        r.body["key"]["expires_at"].as_str().expect("an expiry"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((expires - now).whole_days(), 90);
    let key = r.body["secret"].as_str().unwrap().to_owned();

    // Past the maximum (365 days): shortened to it, and the response says so.
    let far = (now + time::Duration::days(400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = app
        .post(
            "/api/v1/api-keys",
            &admin,
            json!({"name": "forever", "scopes": [], "expires_at": far}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let granted = time::OffsetDateTime::parse(
        r.body["key"]["expires_at"].as_str().expect("an expiry"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((granted - now).whole_days(), 365);
    assert!(
        granted < now + time::Duration::days(366),
        "{granted} is not shortened"
    );

    // A key made by a key belongs to the same person.
    let r = app
        .post(
            "/api/v1/api-keys",
            &admin,
            json!({"name": "minter", "scopes": ["apikeys:write", "events:read"]}),
        )
        .await;
    let minter = r.body["secret"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/api/v1/api-keys",
            &minter,
            json!({"name": "minted", "scopes": ["events:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let minted = r.body["secret"].as_str().unwrap().to_owned();

    for k in [&key, &minter, &minted] {
        assert_eq!(
            status_of(&app.get("/api/v1/events", k).await),
            StatusCode::OK
        );
    }
    // The creator is disabled: every key they made stops working.
    patch_user(&app, &admin_id, json!({"disabled": true})).await;
    for k in [&key, &minter, &minted] {
        let r = app.get("/api/v1/events", k).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
        assert!(r.detail().contains("creator"), "{}", r.detail());
    }
    // Enabled again, the keys work again (they were not revoked), until their expiry.
    patch_user(&app, &admin_id, json!({"disabled": false})).await;
    assert_eq!(
        status_of(&app.get("/api/v1/events", &key).await),
        StatusCode::OK
    );
    app.clock.advance(Duration::from_secs(91 * 86_400));
    assert_eq!(
        status_of(&app.get("/api/v1/events", &key).await),
        StatusCode::UNAUTHORIZED
    );
}
