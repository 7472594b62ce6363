//! Issue #14, security events are events: each action below is followed by its event in the
//! store, with the client address where the action has one: successful and failed logins,
//! logouts, refresh-token reuse, API keys issued, used (first use of each UTC day) and
//! revoked, role and password changes, audit bundle downloads (with the file's SHA-256) and
//! verification runs. Reading them needs `audit:read`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use netledger_domain::identity::Role;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tower::ServiceExt;

mod support;
use support::{ADMIN_EMAIL, App, PASSWORD, Reply, app, change_content};

const CLIENT: &str = "198.51.100.7";

/// A request from [`CLIENT`] (as a peer address the API sees).
async fn from_client(
    app: &App,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let mut req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let peer: SocketAddr = format!("{CLIENT}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    app.send(req).await
}

/// The tenant's events of `category`, oldest first: (type, payload).
async fn events(app: &App, category: &str) -> Vec<(String, Value)> {
    events_as(app, &app.admin, category).await
}

async fn events_as(app: &App, token: &str, category: &str) -> Vec<(String, Value)> {
    let r = app
        .get(
            &format!("/api/v1/events/categories/{category}?limit=500"),
            token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_owned(),
                e["payload"].clone(),
            )
        })
        .collect()
}

fn of_type<'a>(events: &'a [(String, Value)], t: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|(et, _)| et == t)
        .map(|(_, p)| p)
        .collect()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn logins_failed_logins_and_session_ends_are_events_with_the_source_address(pool: PgPool) {
    let app = app(pool).await;
    let (user_id, _) = app.user("ops@example.net", Role::Operator).await;

    // A successful login: UserLoggedIn with the address.
    let ok = from_client(
        &app,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "ops@example.net", "password": PASSWORD})),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let logins = events(&app, "session").await;
    let last = of_type(&logins, "UserLoggedIn").pop().unwrap().clone();
    assert_eq!(last["user_id"], user_id.as_str());
    assert_eq!(last["source"], CLIENT);

    // A wrong password for a known account: LoginFailed, never the password.
    let bad = from_client(
        &app,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "ops@example.net", "password": "not-the-password-1"})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let security = events(&app, "security").await;
    let failed = of_type(&security, "LoginFailed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["user_id"], user_id.as_str());
    assert_eq!(failed[0]["reason"], "bad_password");
    assert_eq!(failed[0]["source"], CLIENT);
    assert!(
        !security
            .iter()
            .any(|(_, p)| p.to_string().contains("not-the-password"))
    );

    // A disabled account, with the right password: LoginFailed (disabled).
    let patch = app
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{user_id}"),
            Some(&app.admin),
            Some(json!({"disabled": true})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{:?}", patch.body);
    let refused = from_client(
        &app,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "ops@example.net", "password": PASSWORD})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let security = events(&app, "security").await;
    let failed = of_type(&security, "LoginFailed");
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[1]["reason"], "disabled");

    // No account of any tenant: nothing to record in a tenant (logged and rate-limited).
    let before = events(&app, "security").await.len();
    let nobody = app.login_reply("nobody@example.net", PASSWORD).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    assert_eq!(events(&app, "security").await.len(), before);

    // Logout ends the session with an event.
    let (_, token) = app.user("second@example.net", Role::Viewer).await;
    let login = app.login_reply("second@example.net", PASSWORD).await;
    let cookie = login
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .unwrap();
    let out = app
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&token),
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{:?}", out.body);
    let sessions = events(&app, "session").await;
    assert_eq!(
        of_type(&sessions, "UserSessionRevoked").last().unwrap()["reason"],
        "logout"
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn api_keys_issued_used_once_a_day_and_revoked_are_events(pool: PgPool) {
    let app = app(pool).await;
    let r = app
        .post(
            "/api/v1/api-keys",
            &app.admin,
            json!({"name": "ci", "scopes": ["events:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    let key_id = r.body["key"]["id"].as_str().unwrap().to_owned();
    let tenant = events(&app, "tenant").await;
    assert_eq!(
        of_type(&tenant, "ApiKeyCreated").last().unwrap()["key_id"],
        key_id.as_str()
    );

    for _ in 0..3 {
        let used = from_client(
            &app,
            Method::GET,
            "/api/v1/events?limit=1",
            Some(&secret),
            None,
        )
        .await;
        assert_eq!(used.status, StatusCode::OK);
    }
    let security = events(&app, "security").await;
    let uses = of_type(&security, "ApiKeyUsed");
    assert_eq!(uses.len(), 1, "three uses on one day are one event");
    assert_eq!(uses[0]["key_id"], key_id.as_str());
    assert_eq!(uses[0]["source"], CLIENT);
    let day = uses[0]["day"].as_str().unwrap().to_owned();

    // The next UTC day, the first use is recorded again.
    app.clock.advance(Duration::from_secs(86_400));
    let used = from_client(
        &app,
        Method::GET,
        "/api/v1/events?limit=1",
        Some(&secret),
        None,
    )
    .await;
    assert_eq!(used.status, StatusCode::OK);
    let admin = app.login(ADMIN_EMAIL, PASSWORD).await;
    let security = events_as(&app, &admin, "security").await;
    let uses = of_type(&security, "ApiKeyUsed");
    assert_eq!(uses.len(), 2);
    assert_ne!(uses[1]["day"].as_str().unwrap(), day);

    let revoked = app
        .call(
            Method::DELETE,
            &format!("/api/v1/api-keys/{key_id}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    let tenant = events_as(&app, &admin, "tenant").await;
    assert_eq!(
        of_type(&tenant, "ApiKeyRevoked").last().unwrap()["key_id"],
        key_id.as_str()
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn role_and_password_changes_are_events(pool: PgPool) {
    let app = app(pool).await;
    let (user_id, token) = app.user("someone@example.net", Role::Viewer).await;
    let changed = app
        .post(
            "/api/v1/auth/password",
            &token,
            json!({"current_password": PASSWORD, "new_password": "another-long-password-2"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    let patch = app
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{user_id}"),
            Some(&app.admin),
            Some(json!({"role": "auditor"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{:?}", patch.body);
    let users = events(&app, "user").await;
    assert_eq!(
        of_type(&users, "UserUpdated").last().unwrap()["role"],
        "auditor"
    );
    assert_eq!(of_type(&users, "UserPasswordChanged").len(), 1);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn audit_downloads_and_verification_runs_are_events_and_need_their_permissions(pool: PgPool) {
    let app = app(pool).await;
    let (_, auditor) = app.user("auditor@example.net", Role::Auditor).await;
    let (_, operator) = app.user("op@example.net", Role::Operator).await;

    // Only audit:export downloads; only audit:read reads the security events.
    let denied = app.get("/api/v1/audit/export", &operator).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.body["required_permission"], "audit:export");
    let denied = app
        .get("/api/v1/events/categories/security", &operator)
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let mut req = Request::builder()
        .uri("/api/v1/audit/export")
        .header(header::AUTHORIZATION, format!("Bearer {auditor}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        format!("{CLIENT}:1").parse::<SocketAddr>().unwrap(),
    ));
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/x-tar");
    assert!(
        res.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"netledger-audit-")
    );
    let header_sha = res.headers()["netledger-bundle-sha256"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(hex::encode(Sha256::digest(&body)), header_sha);
    // It is a v2 bundle whose first member is the manifest.
    let mut tar = tar::Archive::new(body.as_ref());
    let first = tar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(first.path_bytes().as_ref(), b"manifest.json");

    let bad = app
        .get("/api/v1/audit/export?from=yesterday", &auditor)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{:?}", bad.body);

    // A bundle of one device: downloaded, and recorded with its filter; a device with no
    // events in the tenant is not found (and records nothing).
    let d = app.register_device("edge-1").await;
    let one = app
        .get(&format!("/api/v1/audit/export?devices={d}"), &auditor)
        .await;
    assert_eq!(one.status, StatusCode::OK);
    let stranger = app
        .get(
            &format!("/api/v1/audit/export?devices={d},{}", uuid::Uuid::new_v4()),
            &auditor,
        )
        .await;
    assert_eq!(
        stranger.status,
        StatusCode::NOT_FOUND,
        "{:?}",
        stranger.body
    );
    // An empty filter is refused, not read as "every device".
    let empty = app.get("/api/v1/audit/export?devices=", &auditor).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{:?}", empty.body);
    assert!(
        empty.detail().contains("`devices` is empty"),
        "{}",
        empty.detail()
    );

    let verify = from_client(
        &app,
        Method::GET,
        "/api/v1/audit/verify",
        Some(&auditor),
        None,
    )
    .await;
    assert_eq!(verify.status, StatusCode::OK);
    assert_eq!(verify.body["ok"], true);

    let security = events(&app, "security").await;
    let exported = of_type(&security, "AuditBundleExported");
    assert_eq!(
        exported.len(),
        2,
        "the refused, malformed and not-found requests record nothing"
    );
    assert!(exported[0].get("devices").is_none(), "{:?}", exported[0]);
    assert_eq!(exported[1]["devices"], json!([d]));
    assert_eq!(exported[0]["sha256"], header_sha.as_str());
    assert_eq!(exported[0]["bytes"], body.len() as u64);
    assert_eq!(exported[0]["source"], CLIENT);
    let runs = of_type(&security, "AuditVerificationRun");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["ok"], true);
    assert_eq!(runs[0]["source"], CLIENT);
}

/// The audit feed's filters (correlation id, time range, device) and its CSV export of the
/// same view.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_audit_feed_filters_by_correlation_and_time_and_exports_csv(pool: PgPool) {
    let app = app(pool).await;
    let (_, _) = app.user("ops@example.net", Role::Operator).await;
    for _ in 0..2 {
        let bad = app
            .login_reply("ops@example.net", "not-the-password-1")
            .await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    }
    netledger_projections::catch_up(&app.state.pools().system, None, 500)
        .await
        .unwrap();
    let all = app.get("/api/v1/audit/feed?limit=500", &app.admin).await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    let items = all.body["items"].as_array().unwrap().clone();
    let failed: Vec<&Value> = items
        .iter()
        .filter(|e| e["event_type"] == "LoginFailed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(
        failed[0]["summary"]
            .as_str()
            .unwrap()
            .contains("login refused (bad password)")
    );

    // One correlation id: exactly the entries that share it.
    let corr = failed[0]["correlation_id"].as_str().unwrap();
    let by_corr = app
        .get(
            &format!("/api/v1/audit/feed?correlation_id={corr}"),
            &app.admin,
        )
        .await;
    let got = by_corr.body["items"].as_array().unwrap();
    assert!(!got.is_empty());
    assert!(got.iter().all(|e| e["correlation_id"] == corr));
    let expected = items.iter().filter(|e| e["correlation_id"] == corr).count();
    assert_eq!(got.len(), expected);

    // A time range ending before the newest failure leaves it out.
    let newest = failed[0]["recorded_at"].as_str().unwrap();
    let older = failed[1]["recorded_at"].as_str().unwrap();
    let range = app
        .get(
            &format!(
                "/api/v1/audit/feed?event_type=LoginFailed&to={}",
                older.replace(':', "%3A").replace('+', "%2B")
            ),
            &app.admin,
        )
        .await;
    assert_eq!(range.status, StatusCode::OK, "{:?}", range.body);
    let got = range.body["items"].as_array().unwrap();
    assert_eq!(got.len(), 1, "{newest} {older}: {got:?}");
    assert_eq!(got[0]["position"], failed[1]["position"]);
    let bad = app
        .get("/api/v1/audit/feed?from=yesterday", &app.admin)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // The same view as CSV.
    let csv = app
        .get("/api/v1/audit/feed.csv?event_type=LoginFailed", &app.admin)
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.body.as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "position,recorded_at,event_type,stream,category,actor,actor_name,subject,subject_name,summary,correlation_id,causation_id,event_id,emergency"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].contains(",LoginFailed,security-"), "{text}");
    // The refused account, by name as it was then.
    assert!(
        lines[1].contains(",operator user <ops@example.net>,"),
        "{text}"
    );
    assert!(
        lines[1].contains(",login refused (bad password) from unknown,"),
        "{text}"
    );
}

/// A refresh token presented twice ends the session with `refresh_token_reused`, after the
/// reuse and not before.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_refresh_token_reused_is_an_event(pool: PgPool) {
    let app = app(pool).await;
    let (_, _) = app.user("ops@example.net", Role::Operator).await;
    let login = app.login_reply("ops@example.net", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
    let cookie = |r: &Reply| {
        r.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .find_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .unwrap()
    };
    let first = cookie(&login);
    let refresh = |c: String| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/api/v1/auth/refresh",
                None,
                None,
                &[("cookie", &c)],
            )
            .await
        }
    };
    let ok = refresh(first.clone()).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let revoked = |events: &[(String, Value)]| {
        of_type(events, "UserSessionRevoked")
            .into_iter()
            .filter(|p| p["reason"] == "refresh_token_reused")
            .count()
    };
    assert_eq!(revoked(&events(&app, "session").await), 0);
    let again = refresh(first).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        again.problem_type(),
        "urn:netledger:problem:refresh-token-reused"
    );
    assert_eq!(revoked(&events(&app, "session").await), 1);
}

/// Break-glass use: an emergency change request started without approval is in the audit
/// feed with its reason, flagged `emergency`, with the operator's name as it was.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn break_glass_use_is_in_the_feed_flagged_and_named(pool: PgPool) {
    let app = app(pool).await;
    let (_, op) = app.named_user("olga", Role::Operator).await;
    let d = app.register_device("edge-1").await;
    let mut body = change_content(
        "hotfix",
        &[d.as_str()],
        "/system identity\nset name=hot",
        "low",
    );
    body["emergency"] = json!(true);
    body["emergency_reason"] = json!("core link down");
    let r = app.post("/api/v1/change-requests", &op, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["change_request_id"].as_str().unwrap().to_owned();
    let s = app
        .post(
            &format!("/api/v1/change-requests/{id}/submit"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    let st = app
        .post(
            &format!("/api/v1/change-requests/{id}/start"),
            &op,
            json!({}),
        )
        .await;
    assert_eq!(st.status, StatusCode::ACCEPTED, "{:?}", st.body);
    netledger_projections::catch_up(&app.state.pools().system, None, 500)
        .await
        .unwrap();
    let feed = app
        .get(
            &format!("/api/v1/audit/feed?correlation_id={id}&limit=500"),
            &app.admin,
        )
        .await;
    assert_eq!(feed.status, StatusCode::OK, "{:?}", feed.body);
    let items = feed.body["items"].as_array().unwrap();
    assert!(items.len() >= 3, "{items:?}");
    assert!(items.iter().all(|e| e["emergency"] == true), "{items:?}");
    let created = items
        .iter()
        .find(|e| e["event_type"] == "ChangeRequestCreated")
        .unwrap();
    assert!(
        created["summary"].as_str().unwrap().contains("emergency"),
        "{created:?}"
    );
    assert_eq!(created["actor_name"], "olga <olga@example.net>");
    assert_eq!(created["subject"], format!("change_request:{id}"));
    assert_eq!(created["subject_name"], "hotfix");
    // The start is the break-glass act: by the operator, with no approval before it.
    let types: Vec<&str> = items
        .iter()
        .rev()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(!types.contains(&"ChangeRequestApproved"), "{types:?}");
    let started_by_olga = items.iter().any(|e| {
        e["event_type"] != "ChangeRequestCreated"
            && e["event_type"] != "ChangeRequestSubmitted"
            && e["actor_name"] == "olga <olga@example.net>"
    });
    assert!(started_by_olga, "{types:?}");
}
