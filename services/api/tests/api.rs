//! API tests against a real PostgreSQL (a fresh database per test with the real
//! migrations) and, for live events, a real NATS. The router is driven in-process
//! (`tower::ServiceExt::oneshot`) or over loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests read NATS_URL and the wall clock; the library never does.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use futures::StreamExt;
use netledger_api::authz::{Permission, role_permissions};
use netledger_api::{ApiState, BootstrapOutcome, bootstrap_admin};
use netledger_domain::clock::Clock;
use netledger_domain::identity::Role;
use netledger_testkit::TestClock;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

mod support;
use support::{ADMIN_EMAIL, App, PASSWORD, Reply, app, app_with, config, setup};

fn refresh_cookie(r: &Reply) -> String {
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

// ---- OpenAPI -------------------------------------------------------------------------------

#[test]
fn openapi_document_matches_the_committed_file() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json");
    let generated = netledger_api::openapi_json();
    if std::env::var_os("NETLEDGER_BLESS_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json differs from the document the code generates. Regenerate it with \
         `cargo run -p netledger -- openapi > openapi/openapi.json` (or \
         `NETLEDGER_BLESS_OPENAPI=1 cargo test -p netledger-api --test api openapi_document`) \
         and commit it"
    );
}

#[test]
fn every_operation_has_an_id_summary_and_documented_errors() {
    let doc: Value = serde_json::from_str(&netledger_api::openapi_json()).unwrap();
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{id}: no summary"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{id}: 500 undocumented");
            if op.get("security").is_some() {
                for code in ["401", "403"] {
                    assert!(responses.contains_key(code), "{id}: {code} undocumented");
                }
            }
            for (code, r) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    let r = if let Some(name) = r["$ref"].as_str() {
                        &doc["components"]["responses"][name.rsplit('/').next().unwrap()]
                    } else {
                        r
                    };
                    if path.starts_with("/health") {
                        continue;
                    }
                    assert!(
                        r["content"].get("application/problem+json").is_some(),
                        "{id}: {code} is not problem+json"
                    );
                }
            }
        }
    }
}

// ---- auth ----------------------------------------------------------------------------------

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn login_refresh_rotation_reuse_detection_and_logout(pool: PgPool) {
    let app = app(pool).await;
    let bad = app.login_reply(ADMIN_EMAIL, "wrong password!!").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad.problem_type(),
        "urn:netledger:problem:invalid-credentials"
    );
    assert!(bad.is_problem());
    let unknown = app.login_reply("nobody@example.net", PASSWORD).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.body["detail"], bad.body["detail"],
        "no user enumeration"
    );

    let ok = app.login_reply(ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK);
    let token = ok.body["access_token"].as_str().unwrap();
    let cookie = refresh_cookie(&ok);
    let me = app.get("/api/v1/auth/me", token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["role"], "super_admin");
    assert_eq!(me.body["user"]["email"], ADMIN_EMAIL);

    // Rotation: the cookie gives a new access token and a new cookie.
    let r1 = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(r1.status, StatusCode::OK, "{:?}", r1.body);
    let cookie2 = refresh_cookie(&r1);
    assert_ne!(cookie, cookie2);
    // Reuse of the first cookie revokes the family: the second stops working too.
    let reuse = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            None,
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reuse.problem_type(),
        "urn:netledger:problem:refresh-token-reused"
    );
    let after = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            None,
            &[("cookie", &cookie2)],
        )
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        after.problem_type(),
        "urn:netledger:problem:refresh-token-invalid"
    );

    // Logout revokes the session of a fresh login.
    let fresh = app.login_reply(ADMIN_EMAIL, PASSWORD).await;
    let c = refresh_cookie(&fresh);
    let out = app
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            None,
            &[("cookie", &c)],
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let dead = app
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            None,
            &[("cookie", &c)],
        )
        .await;
    assert_eq!(dead.status, StatusCode::UNAUTHORIZED);

    // The session events are recorded, with no secrets in them.
    let sessions = app
        .get("/api/v1/events/categories/session", &app.admin)
        .await;
    assert_eq!(sessions.status, StatusCode::OK);
    let types: Vec<&str> = sessions.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"UserLoggedIn"));
    assert!(types.contains(&"UserSessionRevoked"));
    let all = app
        .get("/api/v1/events?limit=500", &app.admin)
        .await
        .body
        .to_string();
    assert!(!all.contains("argon2"), "no password hash in events");
    assert!(!all.contains(cookie.split('=').nth(1).unwrap()));

    // Garbage and tampered tokens are 401 problems.
    let r = app.get("/api/v1/auth/me", "not-a-token").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.is_problem());
    assert!(r.headers.get(header::WWW_AUTHENTICATE).is_some());
    let r = app
        .call(Method::GET, "/api/v1/auth/me", None, None, &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn login_is_rate_limited_per_account_and_per_address(pool: PgPool) {
    let mut c = config();
    c.login_per_account.max = 3;
    c.login_per_ip.max = 5;
    let app = app_with(pool, c, None).await; // one login used by the harness
    for _ in 0..3 {
        let r = app
            .login_reply("victim@example.net", "guess guess guess")
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app
        .login_reply("victim@example.net", "guess guess guess")
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.problem_type(), "urn:netledger:problem:rate-limited");
    let retry: u64 = limited.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Per address: the fifth attempt from the same (unknown) address overall is refused too.
    let r = app
        .login_reply("other@example.net", "guess guess guess")
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn bootstrap_creates_the_first_admin_once(pool: PgPool) {
    let app = app(pool).await;
    let again = bootstrap_admin(&app.state, "second@example.net", PASSWORD)
        .await
        .unwrap();
    assert_eq!(again, BootstrapOutcome::AlreadyInitialised);
    assert_eq!(
        app.login_reply("second@example.net", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
}

// ---- users, ETags, API keys ----------------------------------------------------------------

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn updates_need_if_match_and_a_stale_version_gets_412(pool: PgPool) {
    let app = app(pool).await;
    let (id, _) = app.user("op@example.net", Role::Operator).await;
    let uri = format!("/api/v1/users/{id}");
    let got = app.get(&uri, &app.admin).await;
    let etag = got.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag, "\"1\"");

    let missing = app
        .call(
            Method::PATCH,
            &uri,
            Some(&app.admin),
            Some(json!({"display_name": "X"})),
            &[],
        )
        .await;
    assert_eq!(missing.status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(
        missing.problem_type(),
        "urn:netledger:problem:precondition-required"
    );

    let ok = app
        .call(
            Method::PATCH,
            &uri,
            Some(&app.admin),
            Some(json!({"display_name": "Renamed"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(ok.headers[header::ETAG], "\"2\"");
    let w = &ok.body["events"][0];
    assert_eq!(w["stream"], format!("user-{id}"));
    assert_eq!(w["stream_version"], 2);
    assert!(w["first_position"].as_i64().unwrap() > 0);

    let stale = app
        .call(
            Method::PATCH,
            &uri,
            Some(&app.admin),
            Some(json!({"display_name": "Lost update"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.body["current_version"], 2);
    assert_eq!(
        app.get(&uri, &app.admin).await.body["display_name"],
        "Renamed"
    );

    // Escalation is refused: a tenant admin cannot make someone super admin.
    let (_, ta) = app.user("ta@example.net", Role::TenantAdmin).await;
    let esc = app
        .call(
            Method::PATCH,
            &uri,
            Some(&ta),
            Some(json!({"role": "super_admin"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(esc.status, StatusCode::FORBIDDEN);

    // Disabling ends logins.
    let dis = app
        .call(
            Method::PATCH,
            &uri,
            Some(&app.admin),
            Some(json!({"disabled": true})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(dis.status, StatusCode::OK);
    assert_eq!(
        app.login_reply("op@example.net", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn api_keys_are_shown_once_scoped_and_revocable(pool: PgPool) {
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
    let id = r.body["key"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("nlk_"));

    let me = app.get("/api/v1/auth/me", &secret).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["kind"], "api_key");
    assert_eq!(
        app.get("/api/v1/events", &secret).await.status,
        StatusCode::OK
    );
    let denied = app.get("/api/v1/users", &secret).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.body["required_permission"], "users:read");

    let list = app.get("/api/v1/api-keys", &app.admin).await;
    let text = list.body.to_string();
    assert!(text.contains(&id));
    assert!(!text.contains(&secret), "the secret is never listed");

    // A viewer cannot mint keys; nobody can mint scopes they lack.
    let (_, viewer) = app.user("v@example.net", Role::Viewer).await;
    let r = app
        .post(
            "/api/v1/api-keys",
            &viewer,
            json!({"name": "x", "scopes": []}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (_, auditor) = app.user("a@example.net", Role::Auditor).await;
    assert_eq!(
        app.get("/api/v1/api-keys", &auditor).await.status,
        StatusCode::OK
    );

    let del = app
        .call(
            Method::DELETE,
            &format!("/api/v1/api-keys/{id}"),
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/auth/me", &secret).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The secret is not in any event.
    let events = app
        .get("/api/v1/events/categories/tenant", &app.admin)
        .await
        .body
        .to_string();
    assert!(events.contains("ApiKeyCreated"));
    assert!(!events.contains(&secret[20..]));
}

// ---- role x route table ----------------------------------------------------------------------

/// What each operation requires: the expected table, written from the roles' definitions
/// (docs/api.md), not read from the code.
fn expected_permissions() -> BTreeMap<&'static str, Vec<Permission>> {
    use Permission as P;
    let single: BTreeMap<&'static str, Option<Permission>> = BTreeMap::from([
        ("login", None),
        ("refresh_token", None),
        ("logout", None),
        ("health_live", None),
        ("health_ready", None),
        ("get_me", Some(P::Authenticated)),
        ("change_own_password", Some(P::Authenticated)),
        ("logout_all", Some(P::Authenticated)),
        ("list_tenants", Some(P::TenantsRead)),
        ("get_tenant", Some(P::TenantsRead)),
        ("create_tenant", Some(P::TenantsAdmin)),
        ("rename_tenant", Some(P::TenantsWrite)),
        ("list_users", Some(P::UsersRead)),
        ("get_user", Some(P::UsersRead)),
        ("create_user", Some(P::UsersWrite)),
        ("update_user", Some(P::UsersWrite)),
        ("set_user_password", Some(P::UsersWrite)),
        ("list_api_keys", Some(P::ApiKeysRead)),
        ("create_api_key", Some(P::ApiKeysWrite)),
        ("revoke_api_key", Some(P::ApiKeysWrite)),
        ("list_events", Some(P::EventsRead)),
        ("list_category_events", Some(P::EventsRead)),
        ("list_stream_events", Some(P::EventsRead)),
        ("stream_events", Some(P::EventsRead)),
        ("list_devices", Some(P::DevicesRead)),
        ("get_device", Some(P::DevicesRead)),
        ("list_config_versions", Some(P::ConfigsRead)),
        ("get_config_version", Some(P::ConfigsRead)),
        ("diff_configs", Some(P::ConfigsRead)),
        ("config_as_of", Some(P::ConfigsRead)),
        ("device_as_of", Some(P::ConfigsRead)),
        ("fleet_as_of", Some(P::ConfigsRead)),
        ("list_workflows", Some(P::WorkflowsRead)),
        ("get_workflow", Some(P::WorkflowsRead)),
        ("list_workflow_steps", Some(P::WorkflowsRead)),
        ("list_rollouts", Some(P::RolloutsRead)),
        ("get_rollout", Some(P::RolloutsRead)),
        ("list_rollout_devices", Some(P::RolloutsRead)),
        ("audit_feed", Some(P::AuditRead)),
        ("audit_feed_csv", Some(P::AuditRead)),
        ("list_checkpoints", Some(P::AuditRead)),
        ("verify_history", Some(P::AuditRead)),
        ("export_audit_bundle", Some(P::AuditExport)),
        ("audit_report", Some(P::AuditRead)),
        ("register_device", Some(P::DevicesWrite)),
        ("update_device", Some(P::DevicesWrite)),
        ("remove_device", Some(P::DevicesWrite)),
        ("set_device_tags", Some(P::DevicesWrite)),
        ("set_device_credentials", Some(P::DevicesCredentials)),
        ("get_device_state", Some(P::DevicesRead)),
        ("get_device_metrics", Some(P::DevicesRead)),
        ("start_backup", Some(P::WorkflowsRun)),
        ("start_config_push", Some(P::WorkflowsRun)),
        ("start_firmware_upgrade", Some(P::WorkflowsRun)),
        ("cancel_workflow", Some(P::WorkflowsCancel)),
        ("create_rollout", Some(P::RolloutsWrite)),
        ("pause_rollout", Some(P::RolloutsStop)),
        ("resume_rollout", Some(P::RolloutsApprove)),
        ("cancel_rollout", Some(P::RolloutsStop)),
        ("list_firmware", Some(P::FirmwareRead)),
        ("upload_firmware", Some(P::FirmwareWrite)),
        ("get_change_policy", Some(P::TenantsRead)),
        ("set_change_policy", Some(P::TenantsWrite)),
        ("get_device_settings", Some(P::TenantsRead)),
        ("set_device_settings", Some(P::TenantsWrite)),
        ("list_change_requests", Some(P::ChangesRead)),
        ("get_change_request", Some(P::ChangesRead)),
        ("get_change_preview", Some(P::ChangesRead)),
        ("get_change_timeline", Some(P::ChangesRead)),
        ("create_change_request", Some(P::ChangesWrite)),
        ("edit_change_request", Some(P::ChangesWrite)),
        ("post_change_preview", Some(P::ChangesWrite)),
        ("submit_change_request", Some(P::ChangesWrite)),
        ("withdraw_change_request", Some(P::ChangesWrite)),
        ("approve_change_request", Some(P::ChangesApprove)),
        ("reject_change_request", Some(P::ChangesApprove)),
        ("continue_change_request", Some(P::ChangesApprove)),
    ]);
    let mut out: BTreeMap<&'static str, Vec<Permission>> = single
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect();
    // The author (changes:write) or an approver (changes:approve) starts and cancels.
    out.insert(
        "start_change_request",
        vec![P::ChangesWrite, P::ChangesApprove],
    );
    out.insert(
        "cancel_change_request",
        vec![P::ChangesWrite, P::ChangesApprove],
    );
    out
}

/// Which roles hold each permission: the expected table from docs/api.md.
fn expected_roles(p: Permission) -> Vec<Role> {
    use Permission as P;
    use Role as R;
    let all = R::ALL.to_vec();
    match p {
        P::Authenticated
        | P::TenantsRead
        | P::DevicesRead
        | P::ConfigsRead
        | P::WorkflowsRead
        | P::RolloutsRead
        | P::FirmwareRead
        | P::EventsRead
        | P::ChangesRead => all,
        P::TenantsAdmin => vec![R::SuperAdmin],
        P::TenantsWrite | P::UsersWrite | P::ApiKeysWrite | P::WorkflowsWithoutTimer => {
            vec![R::TenantAdmin, R::SuperAdmin]
        }
        P::UsersRead | P::ApiKeysRead | P::AuditRead | P::AuditExport => {
            vec![R::Auditor, R::TenantAdmin, R::SuperAdmin]
        }
        P::DevicesWrite
        | P::DevicesCredentials
        | P::WorkflowsRun
        | P::RolloutsWrite
        | P::FirmwareWrite
        | P::ChangesWrite => {
            vec![R::Operator, R::TenantAdmin, R::SuperAdmin]
        }
        P::WorkflowsCancel | P::RolloutsStop => {
            vec![R::Operator, R::Approver, R::TenantAdmin, R::SuperAdmin]
        }
        P::RolloutsApprove | P::ChangesApprove => vec![R::Approver, R::TenantAdmin, R::SuperAdmin],
    }
}

/// Every operation of the generated document: (operation id, method, path template,
/// declared scopes).
fn operations() -> Vec<(String, Method, String, Vec<String>)> {
    let doc: Value = serde_json::from_str(&netledger_api::openapi_json()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let scopes = op["security"]
                .as_array()
                .map(|reqs| {
                    reqs.iter()
                        .flat_map(|r| r["bearer"].as_array().cloned().unwrap_or_default())
                        .map(|s| s.as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            ops.push((
                op["operationId"].as_str().unwrap().to_owned(),
                method.to_uppercase().parse().unwrap(),
                path.clone(),
                scopes,
            ));
        }
    }
    ops
}

fn fill(path: &str, ids: &HashMap<&str, String>) -> String {
    let mut out = path.to_owned();
    for (k, v) in ids {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    assert!(!out.contains('{'), "no id for a parameter of {path}");
    out
}

#[test]
fn the_role_table_matches_the_authorization_code() {
    for r in Role::ALL {
        for p in Permission::ALL {
            assert_eq!(
                role_permissions(r).contains(*p),
                expected_roles(*p).contains(&r),
                "{r} / {p}"
            );
        }
    }
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn every_route_allows_and_denies_every_role_as_the_table_says(pool: PgPool) {
    let app = app(pool).await;
    let mut tokens = BTreeMap::new();
    let mut viewer = String::new();
    for role in Role::ALL {
        let (id, t) = app
            .user(&format!("{}@example.net", role.as_str()), role)
            .await;
        if role == Role::Viewer {
            viewer = id;
        }
        tokens.insert(role, t);
    }
    let me = app.get("/api/v1/auth/me", &app.admin).await.body;
    let tenant = me["tenant_id"].as_str().unwrap().to_owned();
    // Users are edited on the viewer, whom every role allowed to edit users may change.
    let user = viewer;
    let key = app
        .post(
            "/api/v1/api-keys",
            &app.admin,
            json!({"name": "k", "scopes": []}),
        )
        .await
        .body["key"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ids: HashMap<&str, String> = HashMap::from([
        ("tenant_id", tenant),
        ("user_id", user.clone()),
        ("key_id", key),
        ("category", "device".to_owned()),
        ("stream", format!("device-{user}")),
        ("device_id", uuid::Uuid::new_v4().to_string()),
        ("workflow_id", uuid::Uuid::new_v4().to_string()),
        ("rollout_id", uuid::Uuid::new_v4().to_string()),
        ("commit", "abcdef12".to_owned()),
        ("version", "7.19.4".to_owned()),
        ("file_name", "routeros-7.19.4-arm64.npk".to_owned()),
        ("change_request_id", uuid::Uuid::new_v4().to_string()),
        ("kind", "change-log".to_owned()),
    ]);
    let expected = expected_permissions();
    let ops = operations();
    assert_eq!(
        ops.iter()
            .map(|o| o.0.as_str())
            .collect::<std::collections::BTreeSet<_>>(),
        expected.keys().copied().collect(),
        "the expected table must list exactly the generated operations"
    );
    let mut checked = 0;
    for (id, method, path, scopes) in &ops {
        let need = &expected[id.as_str()];
        assert_eq!(
            scopes.clone(),
            need.iter()
                .map(|p| p.as_str().to_owned())
                .collect::<Vec<_>>(),
            "{id}: the OpenAPI scopes differ from the expected permissions"
        );
        // Logging out everywhere would end the role's token for the rest of the walk; every
        // role holds `authenticated` (checked in the table above).
        if need.is_empty() || id == "logout_all" {
            continue;
        }
        let uri = fill(path, &ids);
        for (role, token) in &tokens {
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let r = app
                .call(
                    method.clone(),
                    &uri,
                    Some(token),
                    body,
                    &[("if-match", "*")],
                )
                .await;
            if need.iter().any(|p| expected_roles(*p).contains(role)) {
                assert_ne!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role} must reach {id}: {:?}",
                    r.body
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role} must not reach {id}: {:?}",
                    r.body
                );
                assert!(r.is_problem(), "{id}: 403 must be problem+json");
                assert_eq!(r.problem_type(), "urn:netledger:problem:forbidden");
            }
            checked += 1;
        }
    }
    assert!(checked >= 6 * 15, "{checked}");
}

// ---- tenant isolation ------------------------------------------------------------------------

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn tenant_a_sees_none_of_tenant_b(pool: PgPool) {
    let app = app(pool).await;
    // Tenant B with its own admin, user, key and events.
    let b = app
        .post(
            "/api/v1/tenants",
            &app.admin,
            json!({"name": "Tenant B", "change_control": "optional", "admin": {"email": "b-admin@example.net", "display_name": "B", "role": "tenant_admin", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(b.status, StatusCode::CREATED, "{:?}", b.body);
    let b_tenant = b.body["tenant"]["id"].as_str().unwrap().to_owned();
    let b_user = b.body["admin"]["id"].as_str().unwrap().to_owned();
    let b_token = app.login("b-admin@example.net", PASSWORD).await;
    let b_key = app
        .post(
            "/api/v1/api-keys",
            &b_token,
            json!({"name": "b-key", "scopes": []}),
        )
        .await
        .body["key"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_device = app
        .post("/api/v1/devices", &b_token, new_device("b-router"))
        .await
        .body["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_workflow = app
        .post(
            "/api/v1/workflows/backup",
            &b_token,
            json!({"device_id": b_device}),
        )
        .await
        .body["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_other = app
        .post("/api/v1/devices", &b_token, new_device("b-router-2"))
        .await
        .body["device_id"]
        .clone();
    let b_rollout = app
        .post(
            "/api/v1/rollouts",
            &b_token,
            json!({"name": "b-rollout", "target": {"kind": "firmware", "version": "7.19.4"}, "devices": [b_other]}),
        )
        .await
        .body["rollout_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_change = app
        .post(
            "/api/v1/change-requests",
            &b_token,
            json!({"title": "b-change", "reason": "r", "target": {"kind": "devices", "device_ids": [b_other]}, "action": {"kind": "firmware", "version": "7.19.4"}, "plan": {"canaries": 1, "batch_size": 1, "parallelism": 1, "failure_threshold": 1, "rollback_on_halt": false}, "risk": "low"}),
        )
        .await
        .body["change_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Tenant A's most privileged tenant-scoped role.
    let (_, a) = app.user("a-admin@example.net", Role::TenantAdmin).await;
    let ids: HashMap<&str, String> = HashMap::from([
        ("tenant_id", b_tenant.clone()),
        ("user_id", b_user.clone()),
        ("key_id", b_key.clone()),
        ("category", "user".to_owned()),
        ("stream", format!("user-{b_user}")),
        ("device_id", b_device.clone()),
        ("workflow_id", b_workflow.clone()),
        ("rollout_id", b_rollout.clone()),
        ("change_request_id", b_change.clone()),
        ("commit", "abcdef12".to_owned()),
        ("version", "7.19.4".to_owned()),
        ("file_name", "routeros-7.19.4-arm64.npk".to_owned()),
        ("kind", "change-log".to_owned()),
    ]);
    // What A never sent and must never see: B's e-mail, names, and (in responses to
    // routes without ids in their path) B's ids.
    let names = [
        "b-admin@example.net",
        "Tenant B",
        "b-key",
        "b-router",
        "b-rollout",
        "b-change",
    ];
    let ids_of_b = [
        b_tenant.as_str(),
        b_user.as_str(),
        b_key.as_str(),
        b_device.as_str(),
        b_workflow.as_str(),
        b_rollout.as_str(),
        b_change.as_str(),
    ];
    let mut by_id = 0;
    for (id, method, path, scopes) in operations() {
        // Logging out everywhere would end A's token for the rest of the walk.
        if scopes.is_empty() || id == "stream_events" || id == "logout_all" {
            continue;
        }
        // Every query parameter a route may need, so the lookup (not validation) answers.
        let uri = format!(
            "{}?at=2030-01-01T00%3A00%3A00Z&from=abcdef12&to=abcdef12",
            fill(&path, &ids)
        );
        let body = (method != Method::GET && method != Method::DELETE).then(|| {
            json!({"name": "x", "display_name": "x", "password": "long enough password", "role": "viewer", "username": "x", "tags": [],
                "change_control": "optional", "title": "x", "reason": "x", "target": {"kind": "tenant"},
                "action": {"kind": "firmware", "version": "7.19.4"}, "risk": "low"})
        });
        let r = app
            .call(method.clone(), &uri, Some(&a), body, &[("if-match", "*")])
            .await;
        let text = r.body.to_string();
        for s in names {
            assert!(!text.contains(s), "{id} as tenant A leaked {s}: {text}");
        }
        if !path.contains('{') {
            for s in ids_of_b {
                assert!(!text.contains(s), "{id} as tenant A leaked {s}: {text}");
            }
        }
        // The firmware cache is shared by every tenant (MikroTik's public packages).
        if path.contains('{')
            && path != "/api/v1/events/categories/{category}"
            && path != "/api/v1/audit/reports/{kind}"
            && !path.starts_with("/api/v1/firmware")
        {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{id} on B's ids: {text}");
            by_id += 1;
        }
    }
    assert!(by_id >= 7, "{by_id}");
    // A's reports hold nothing of B.
    for kind in ["change-log", "inventory", "verification"] {
        let r = app
            .get(&format!("/api/v1/audit/reports/{kind}?format=csv"), &a)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{kind}");
        let text = r.body.to_string();
        for s in names.iter().chain(ids_of_b.iter()) {
            assert!(
                !text.contains(s),
                "report {kind} as tenant A leaked {s}: {text}"
            );
        }
    }
    // B's data is intact and visible to B.
    assert_eq!(
        app.get(&format!("/api/v1/users/{b_user}"), &b_token)
            .await
            .status,
        StatusCode::OK
    );
}

// ---- events and live events ----------------------------------------------------------------

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn events_page_by_position_and_read_as_of_a_time(pool: PgPool) {
    let app = app(pool).await;
    for i in 0..5 {
        app.user(&format!("u{i}@example.net"), Role::Viewer).await;
    }
    let all = app.get("/api/v1/events?limit=3", &app.admin).await;
    assert_eq!(all.status, StatusCode::OK);
    let first: Vec<i64> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(first.len(), 3);
    let cursor = all.body["next_cursor"].as_str().unwrap();
    let next = app
        .get(
            &format!("/api/v1/events?limit=3&cursor={cursor}"),
            &app.admin,
        )
        .await;
    let second: Vec<i64> = next.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(second[0] > *first.last().unwrap());

    // A viewer does not see identity events.
    let (_, viewer) = app.user("viewer@example.net", Role::Viewer).await;
    let v = app.get("/api/v1/events", &viewer).await;
    assert_eq!(v.status, StatusCode::OK);
    assert!(
        v.body["items"].as_array().unwrap().is_empty(),
        "{:?}",
        v.body
    );
    assert_eq!(
        app.get("/api/v1/events/categories/user", &viewer)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // As of a time between two users: the later one is absent.
    let users = app
        .get("/api/v1/events/categories/user?limit=100", &app.admin)
        .await;
    let items = users.body["items"].as_array().unwrap();
    let cut = items[2]["recorded_at"].as_str().unwrap();
    let as_of = app
        .get(
            &format!("/api/v1/events/categories/user?as_of={}", urlencode(cut)),
            &app.admin,
        )
        .await;
    assert_eq!(as_of.status, StatusCode::OK, "{:?}", as_of.body);
    let n = as_of.body["items"].as_array().unwrap().len();
    assert!(n >= 3 && n < items.len(), "{n} of {}", items.len());

    let stream = items[1]["stream"].as_str().unwrap();
    let s = app
        .get(&format!("/api/v1/events/streams/{stream}"), &app.admin)
        .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.body["items"][0]["event_type"], "UserCreated");
    let missing = app
        .get("/api/v1/events/streams/device-nothing", &app.admin)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad = app
        .get("/api/v1/events/streams/Not%20a%20stream", &app.admin)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.is_problem());
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

/// Reads SSE events (id, event type) from a live response until `n` arrived.
async fn read_sse(body: Body, n: usize) -> Vec<(i64, String)> {
    let mut stream = body.into_data_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("live events arrived in time")
            .expect("stream open")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut ty = None;
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<i64>().unwrap());
                } else if let Some(v) = line.strip_prefix("event:") {
                    ty = Some(v.trim().to_owned());
                }
            }
            if let (Some(i), Some(t)) = (id, ty) {
                out.push((i, t));
            }
        }
    }
    out
}

async fn open_live(app: &App, token: &str, query: &str, last: Option<i64>) -> Body {
    let mut req = Request::builder()
        .uri(format!("/api/v1/events/stream{query}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(l) = last {
        req = req.header(
            "last-event-id",
            HeaderValue::from_str(&l.to_string()).unwrap(),
        );
    }
    let res = app
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    res.into_body()
}

fn assert_gapless(seen: &[(i64, String)], expected: &[i64]) {
    let got: Vec<i64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(got, expected, "every event once, in order");
}

async fn user_positions(app: &App) -> Vec<i64> {
    app.get("/api/v1/events/categories/user?limit=500", &app.admin)
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn live_events_resume_from_last_event_id_without_nats(pool: PgPool) {
    let app = app(pool).await;
    for i in 0..3 {
        app.user(&format!("early{i}@example.net"), Role::Viewer)
            .await;
    }
    let early = user_positions(&app).await;
    // Resume after the first user event: the rest come from the store, then live ones.
    let body = open_live(&app, &app.admin, "?topics=user", Some(early[0])).await;
    let reader = tokio::spawn(read_sse(body, early.len() - 1 + 3));
    for i in 0..3 {
        app.user(&format!("late{i}@example.net"), Role::Viewer)
            .await;
    }
    let seen = reader.await.unwrap();
    let all = user_positions(&app).await;
    assert_gapless(&seen, &all[1..]);
    assert!(seen.iter().all(|s| s.1 == "UserCreated"));
}

/// Reads SSE events until `n` arrived, with a generous safety net (many clients share two
/// loaded cores here).
async fn read_sse_patiently(body: Body, n: usize) -> Vec<(i64, String)> {
    tokio::time::timeout(Duration::from_secs(300), async move {
        let mut stream = body.into_data_stream();
        let mut buf = String::new();
        let mut out = Vec::new();
        while out.len() < n {
            let chunk = stream.next().await.expect("stream open").unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let id = frame.lines().find_map(|l| l.strip_prefix("id:"));
                let ty = frame.lines().find_map(|l| l.strip_prefix("event:"));
                if let (Some(i), Some(t)) = (id, ty) {
                    out.push((i.trim().parse().unwrap(), t.trim().to_owned()));
                }
            }
        }
        out
    })
    .await
    .expect("live events arrived")
}

/// Item 15: 200 live-event clients without NATS (the fallback path) while events are
/// appended. Each open stream used to hold a LISTEN connection of the pool (10 here), so the
/// 11th stream on waited for a connection and every other request (the appends included)
/// starved. Now one shared listener serves them all: every client gets every event, and
/// other requests are served meanwhile.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn two_hundred_live_clients_without_nats_do_not_exhaust_the_pool(pool: PgPool) {
    let mut c = config();
    c.login_per_ip.max = 10_000; // 200 logins from one (in-process) address
    let app = app_with(pool, c, None).await;
    let mut tokens = Vec::new();
    for i in 0..200 {
        tokens.push(
            app.user(&format!("watcher{i}@example.net"), Role::Auditor)
                .await
                .1,
        );
    }
    let start: i64 = *user_positions(&app).await.last().unwrap();
    let mut readers = Vec::new();
    for t in &tokens {
        let body = open_live(&app, t, "?topics=user", Some(start)).await;
        readers.push(tokio::spawn(read_sse_patiently(body, 3)));
    }
    // Other requests are served while the streams are open and waiting (bounded only as a
    // safety net: the old code never answered).
    for i in 0..3 {
        let created = tokio::time::timeout(
            Duration::from_secs(120),
            app.user(&format!("late{i}@example.net"), Role::Viewer),
        )
        .await;
        assert!(
            created.is_ok(),
            "appends are served while 200 streams are open"
        );
    }
    let me = tokio::time::timeout(
        Duration::from_secs(120),
        app.get("/api/v1/auth/me", &app.admin),
    )
    .await
    .expect("reads are served while 200 streams are open");
    assert_eq!(me.status, StatusCode::OK);
    let expected: Vec<i64> = user_positions(&app)
        .await
        .into_iter()
        .filter(|p| *p > start)
        .collect();
    assert_eq!(expected.len(), 3);
    for r in readers {
        let seen = r.await.unwrap();
        assert_gapless(&seen, &expected);
    }
}

/// Item 15: open streams are limited per principal, per tenant and per process.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn live_streams_are_limited_per_principal_tenant_and_process(pool: PgPool) {
    let mut c = config();
    c.sse_max_per_principal = 2;
    c.sse_max_per_tenant = 3;
    c.sse_max_streams = 4;
    let app = app_with(pool, c, None).await;
    let (_, other) = app.user("other@example.net", Role::Viewer).await;
    let get = |token: &str| {
        let req = Request::get("/api/v1/events/stream")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        app.router.clone().oneshot(req)
    };
    let a1 = get(&app.admin).await.unwrap();
    let a2 = get(&app.admin).await.unwrap();
    assert_eq!((a1.status(), a2.status()), (StatusCode::OK, StatusCode::OK));
    let refused = get(&app.admin).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "per principal"
    );
    assert_eq!(
        refused.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let o1 = get(&other).await.unwrap();
    assert_eq!(o1.status(), StatusCode::OK);
    let refused = get(&other).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "per tenant"
    );
    // Closing a stream gives its place back.
    drop(a1);
    let mut again = None;
    for _ in 0..100 {
        let r = get(&other).await.unwrap();
        if r.status() == StatusCode::OK {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a closed stream's place is given back");
    // The process limit: another tenant's admin.
    let t = app
        .post(
            "/api/v1/tenants",
            &app.admin,
            json!({"name": "Other", "admin": {"email": "boss@example.org", "display_name": "Boss", "role": "tenant_admin", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{:?}", t.body);
    let boss = app.login("boss@example.org", PASSWORD).await;
    let b1 = get(&boss).await.unwrap();
    assert_eq!(b1.status(), StatusCode::OK);
    let refused = get(&boss).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "per process"
    );
}

/// A stand-in for the relay of `services/netledger/src/relay.rs`: the same subjects,
/// payload (the recorded event as JSON) and `Nats-Msg-Id`, on a stream of this test's own.
async fn test_relay(system: PgPool, js: async_nats::jetstream::Context, prefix: String, skip: i64) {
    let reader = netledger_store::EventReader::system(system, None);
    let mut after = 0;
    loop {
        let events = reader.read_all(after, 100).await.unwrap();
        for e in &events {
            after = e.position;
            if e.position == skip {
                continue; // a message NATS "lost": the chain check must fill it from the store
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", e.position.to_string().as_str());
            let subject = format!("{prefix}.{}.{}.{}", e.tenant_id, e.category(), e.event_type);
            js.publish_with_headers(subject, headers, serde_json::to_vec(e).unwrap().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn live_events_come_through_nats_and_fill_gaps_from_the_store(pool: PgPool) {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let client = async_nats::connect(&url)
        .await
        .expect("NATS at NATS_URL (scripts/services starts it)");
    let js = async_nats::jetstream::new(client.clone());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("t{}", &tag[..12]);
    let stream = format!("TEST_{}", &tag[..12]);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{prefix}.*.*.*")],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut c = config();
    c.nats_subject_prefix = prefix.clone();
    c.nats_events_stream = stream.clone();
    c.sse_keepalive = Duration::from_secs(1);
    let app = app_with(pool.clone(), c, Some(client)).await;
    app.user("before@example.net", Role::Viewer).await;
    let before = user_positions(&app).await;

    // The live connection starts before the relay runs; then events arrive through NATS,
    // one of them "lost" on the way.
    let body = open_live(&app, &app.admin, "?topics=user", Some(0)).await;
    let reader = tokio::spawn(read_sse(body, before.len() + 4));
    let head: i64 = sqlx::query_scalar("SELECT last_position FROM event_log_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    let pools = app.state.pools().clone();
    let relay = tokio::spawn(test_relay(
        pools.system.clone(),
        js.clone(),
        prefix.clone(),
        head + 3,
    ));
    for i in 0..4 {
        app.user(&format!("live{i}@example.net"), Role::Viewer)
            .await;
    }
    let seen = reader.await.unwrap();
    relay.abort();
    assert_gapless(&seen, &user_positions(&app).await);
    // The connection really subscribed to NATS (a refused consumer would silently fall back
    // to the store and still pass the check above). Which source delivers each event is a
    // race between the consumer and the gap-filling catch-up, so it is not asserted.
    let metrics = app.call(Method::GET, "/metrics", None, None, &[]).await;
    let text = metrics.body.as_str().unwrap();
    let count = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    assert_eq!(
        count("netledger_sse_nats_subscriptions_total{result=\"ok\"}"),
        1,
        "{text}"
    );
    assert_eq!(
        count("netledger_sse_nats_subscriptions_total{result=\"failed\"}"),
        0,
        "{text}"
    );
    js.delete_stream(&stream).await.unwrap();
}

/// Item 16: NATS is only a wake-up. A message published on the tenant's subject by anyone
/// (forged payload, plausible position and chain link) never reaches the client; what it
/// gets is read from the store.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn forged_nats_messages_never_reach_live_clients(pool: PgPool) {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let client = async_nats::connect(&url)
        .await
        .expect("NATS at NATS_URL (scripts/services starts it)");
    let js = async_nats::jetstream::new(client.clone());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("f{}", &tag[..12]);
    let stream = format!("FORGE_{}", &tag[..12]);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{prefix}.*.*.*")],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut c = config();
    c.nats_subject_prefix = prefix.clone();
    c.nats_events_stream = stream.clone();
    c.sse_keepalive = Duration::from_secs(1);
    let app = app_with(pool.clone(), c, Some(client)).await;
    let head: i64 = sqlx::query_scalar("SELECT last_position FROM event_log_head")
        .fetch_one(&pool)
        .await
        .unwrap();
    let body = open_live(&app, &app.admin, "?topics=user", Some(head)).await;
    let reader = tokio::spawn(read_sse(body, 1));
    // Wait until the connection's consumer exists, so the forged message is delivered to it.
    let mut s = js.get_stream(&stream).await.unwrap();
    while s.info().await.unwrap().state.consumer_count == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A forged event: a real one of the tenant, renamed and moved to the next position,
    // linked to the client's last position.
    let real = netledger_store::EventReader::system(app.state.pools().system.clone(), None)
        .read_all(0, 1)
        .await
        .unwrap()
        .remove(0);
    let mut forged = serde_json::to_value(&real).unwrap();
    forged["position"] = json!(head + 1);
    forged["tenant_prev_position"] = json!(head);
    forged["event_type"] = json!("Forged");
    let subject = format!("{prefix}.{}.user.Forged", app.tenant);
    js.publish(subject, serde_json::to_vec(&forged).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Then a real event, relayed.
    let relay = tokio::spawn(test_relay(
        app.state.pools().system.clone(),
        js.clone(),
        prefix.clone(),
        -1,
    ));
    app.user("real@example.net", Role::Viewer).await;
    let seen = reader.await.unwrap();
    relay.abort();
    let real_positions: Vec<i64> = user_positions(&app)
        .await
        .into_iter()
        .filter(|p| *p > head)
        .collect();
    assert_eq!(
        seen[0].1, "UserCreated",
        "the forged event was sent: {seen:?}"
    );
    assert_eq!(seen[0].0, real_positions[0]);
    js.delete_stream(&stream).await.unwrap();
}

/// Text with U+0000 never reaches PostgreSQL (whose `text` and `jsonb` cannot hold it; a
/// search with `%00` was a 500): 400 in a query, 422 in a body, each saying why.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn nul_characters_are_refused_before_the_database(pool: PgPool) {
    let app = app(pool).await;
    let r = app.get("/api/v1/devices?search=a%00b", &app.admin).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("U+0000"),
        "{}",
        r.body
    );
    let r = app.get("/api/v1/audit/feed?actor=%00", &app.admin).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let cr = uuid::Uuid::now_v7();
    let r = app
        .post(
            &format!("/api/v1/change-requests/{cr}/approve"),
            &app.admin,
            json!({ "comment": "looks fine\u{0}" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    // The same text without the NUL is judged on its merits (no such request: 404).
    let r = app
        .post(
            &format!("/api/v1/change-requests/{cr}/approve"),
            &app.admin,
            json!({ "comment": "looks fine" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = app.get("/api/v1/devices?search=a%2500b", &app.admin).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a literal `%00` is text: {}",
        r.body
    );
}

// ---- health, metrics, docs -------------------------------------------------------------------

/// Item 17: methods outside the standard set share one metrics label, and `/metrics` can
/// require a bearer token.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn metrics_collapse_odd_methods_and_can_require_a_token(pool: PgPool) {
    let app = app(pool.clone()).await;
    for m in ["FOO", "BAR", "PURGE"] {
        app.call(
            Method::from_bytes(m.as_bytes()).unwrap(),
            "/health/live",
            None,
            None,
            &[],
        )
        .await;
    }
    let text = app
        .call(Method::GET, "/metrics", None, None, &[])
        .await
        .body;
    let text = text.as_str().unwrap();
    assert!(text.contains("method=\"other\""), "{text}");
    for m in ["FOO", "BAR", "PURGE"] {
        assert!(!text.contains(&format!("method=\"{m}\"")), "{text}");
    }

    let mut c = config();
    c.metrics_token = Some(netledger_api::config::SecretString::new("scrape-secret"));
    let guarded = setup(&pool, c, |_| {}).await;
    let router = netledger_api::router(guarded.state.clone()).0;
    let get = |auth: Option<&str>| {
        let mut req = Request::get("/metrics");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        router.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let none = get(None).await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(
        get(Some("Bearer wrong")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(Some("Bearer scrape-secret")).await.unwrap().status(),
        StatusCode::OK
    );
}

/// Item 17: readiness names the failing check, never the error text.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn readiness_reports_status_not_error_text(pool: PgPool) {
    let parts = setup(&pool, config(), |_| {}).await;
    let router = netledger_api::router(parts.state.clone()).0;
    parts.state.pools().app.close().await;
    let res = router
        .oneshot(Request::get("/health/ready").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let db = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "database")
        .unwrap();
    assert_eq!(db["ok"], false);
    assert_eq!(db["detail"], "failed", "{body}");
    let text = body.to_string();
    assert!(!text.to_lowercase().contains("pool"), "{text}");
}

/// Item 17: API-key lookups are cached (valid and refused keys) and the lookups that reach
/// the database are rate-limited per client address.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn api_key_lookups_are_cached_and_rate_limited(pool: PgPool) {
    let mut c = config();
    c.api_key_lookups = netledger_api::config::RateLimit {
        max: 3,
        window: Duration::from_secs(60),
    };
    let app = app_with(pool, c, None).await;
    let r = app
        .post(
            "/api/v1/api-keys",
            &app.admin,
            json!({"name": "ci", "scopes": ["events:read"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    // One lookup, then the cache: ten requests stay within a limit of three lookups.
    for _ in 0..10 {
        assert_eq!(
            app.get("/api/v1/events", &secret).await.status,
            StatusCode::OK
        );
    }
    // A refused key is cached too: asking again costs no lookup.
    let bogus = |i: u32| format!("nlk_{:032x}_{}", i, "0".repeat(64));
    for _ in 0..5 {
        assert_eq!(
            app.get("/api/v1/events", &bogus(1)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.get("/api/v1/events", &bogus(2)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The fourth lookup from this address within the minute is refused before the database.
    let limited = app.get("/api/v1/events", &bogus(3)).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        limited.body
    );
    assert!(limited.headers.get(header::RETRY_AFTER).is_some());
    // The cached valid key still works.
    assert_eq!(
        app.get("/api/v1/events", &secret).await.status,
        StatusCode::OK
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn health_metrics_docs_and_request_ids(pool: PgPool) {
    let app = app(pool.clone()).await;
    let live = app.call(Method::GET, "/health/live", None, None, &[]).await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = app
        .call(Method::GET, "/health/ready", None, None, &[])
        .await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    assert!(ready.headers.get("x-request-id").is_some());

    // A subscriber far behind makes the process not ready.
    sqlx::query(
        "INSERT INTO subscription_checkpoints (name, position) VALUES ('projector-test', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut c = config();
    c.max_ready_lag = 0;
    let strict_parts = setup(&pool, c, |_| {}).await;
    let strict = netledger_api::router(strict_parts.state.clone()).0;
    let res = strict
        .oneshot(Request::get("/health/ready").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    let metrics = app.call(Method::GET, "/metrics", None, None, &[]).await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(
            "netledger_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("netledger_http_request_duration_seconds_bucket"));
    assert!(text.contains("netledger_subscriber_lag_events{subscriber=\"projector-test\"}"));

    let docs = app.call(Method::GET, "/docs", None, None, &[]).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.body.as_str().unwrap().contains("/openapi.json"));
    let doc = app
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert_eq!(doc.body["info"]["title"], "Netledger API");

    let missing = app.call(Method::GET, "/nope", None, None, &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.is_problem());
    let rid = app
        .call(
            Method::GET,
            "/health/live",
            None,
            None,
            &[("x-request-id", "3c9e6f1a-0000-4000-8000-000000000001")],
        )
        .await;
    assert_eq!(
        rid.headers["x-request-id"],
        "3c9e6f1a-0000-4000-8000-000000000001"
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_web_ui_is_served_with_client_routes_and_api_paths_stay_api(pool: PgPool) {
    // A folder without index.html is refused with the fix in the message.
    let empty = tempfile::tempdir().unwrap();
    let refused = netledger_api::ui::UiDir::new(empty.path()).unwrap_err();
    assert!(refused.to_string().contains("npm run build"), "{refused}");

    let dist = tempfile::tempdir().unwrap();
    std::fs::write(
        dist.path().join("index.html"),
        "<!doctype html><title>Netledger</title><div id=root></div>",
    )
    .unwrap();
    std::fs::create_dir(dist.path().join("assets")).unwrap();
    std::fs::write(dist.path().join("assets/app-3f2a.js"), "console.log(1)").unwrap();
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("secret.txt"), "outside").unwrap();
    let mut c = config();
    c.ui = Some(netledger_api::ui::UiDir::new(dist.path()).unwrap());
    let app = app_with(pool, c, None).await;

    let index = app.call(Method::GET, "/", None, None, &[]).await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.body.as_str().unwrap().contains("<div id=root>"));
    assert_eq!(index.headers[header::CACHE_CONTROL], "no-cache");
    assert!(
        index.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    // A client-side route reloaded in the browser gets the app.
    let route = app
        .call(Method::GET, "/devices/0b8e/configs", None, None, &[])
        .await;
    assert_eq!(route.status, StatusCode::OK);
    assert!(route.body.as_str().unwrap().contains("<div id=root>"));
    // Hashed assets are cached for good, with their type.
    let asset = app
        .call(Method::GET, "/assets/app-3f2a.js", None, None, &[])
        .await;
    assert_eq!(asset.status, StatusCode::OK);
    assert_eq!(
        asset.headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(
        asset.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    // API paths never fall through to the UI.
    for path in ["/api/v1/nope", "/api", "/health/nope"] {
        let r = app.call(Method::GET, path, None, None, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(r.is_problem(), "{path}: {:?}", r.body);
    }
    // API routes still answer, and nothing outside the folder is reachable.
    let doc = app
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert_eq!(doc.body["info"]["title"], "Netledger API");
    let name = secret.path().file_name().unwrap().to_str().unwrap();
    for path in [
        format!("/../{name}/secret.txt"),
        format!("/assets/..%2F..%2F{name}%2Fsecret.txt"),
    ] {
        let r = app.call(Method::GET, &path, None, None, &[]).await;
        assert!(
            !r.body.as_str().unwrap_or("").contains("outside"),
            "{path} escaped the UI folder"
        );
    }
}

// ---- devices, configs, workflows, audit (read models) --------------------------------------

fn meta() -> netledger_domain::EventMetadata {
    netledger_domain::EventMetadata::for_command(
        netledger_domain::Actor::system("test"),
        uuid::Uuid::new_v4(),
    )
}

async fn append<E: netledger_domain::EventType>(
    state: &ApiState,
    tenant: netledger_domain::TenantId,
    stream: &netledger_domain::StreamName,
    e: &E,
) {
    state
        .store()
        .append(
            tenant,
            stream,
            netledger_domain::ExpectedVersion::Any,
            vec![netledger_domain::NewEvent::from_typed(e, meta()).unwrap()],
        )
        .await
        .unwrap();
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn devices_configs_and_audit_come_from_read_models_and_git(pool: PgPool) {
    use netledger_domain::device::*;
    let app = app(pool).await;
    let (state, archive, tenant) = (app.state.clone(), app.archive.clone(), app.tenant);
    let device = netledger_domain::DeviceId::new_random();
    append(
        &state,
        tenant,
        &device.stream(),
        &DeviceRegistered {
            device_id: device,
            name: DeviceName::parse("core-1").unwrap(),
            endpoint: Endpoint {
                host: Host::parse("10.0.0.1").unwrap(),
                port: 8728,
                transport: Transport::Plain,
                ssh: None,
            },
            username: "api".into(),
            credentials_key_id: "k1".into(),
            tags: [Tag::parse("core").unwrap()].into_iter().collect(),
            poll_interval_secs: 60,
            ssh_client_key: None,
        },
    )
    .await;
    let mut commits = Vec::new();
    for (i, name) in ["r1", "r2"].iter().enumerate() {
        let export = format!("# by RouterOS 7.16\n/system identity\nset name={name}\n");
        let at = TestClock::new().now() - time::Duration::minutes(10 - i as i64);
        let rec = archive
            .record(
                tenant,
                device,
                &export,
                &netledger_archive::SnapshotMeta {
                    actor: netledger_domain::Actor::system("test"),
                    reason: SnapshotReason::OnDemand,
                    causation_id: uuid::Uuid::new_v4(),
                    correlation_id: uuid::Uuid::new_v4(),
                    at,
                    routeros_version: "7.16".into(),
                    workflow_id: None,
                },
            )
            .unwrap();
        append(
            &state,
            tenant,
            &device.stream(),
            &ConfigSnapshotRecorded {
                commit: rec.commit.clone(),
                sha256: rec.sha256.clone(),
                changed: true,
                reason: SnapshotReason::OnDemand,
                routeros_version: "7.16".into(),
                workflow_id: None,
            },
        )
        .await;
        commits.push((rec.commit, at));
    }
    netledger_projections::catch_up(&state.pools().system, None, 500)
        .await
        .unwrap();

    let list = app.get("/api/v1/devices?tag=core", &app.admin).await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    assert_eq!(list.body["items"][0]["name"], "core-1");
    let d = app
        .get(&format!("/api/v1/devices/{device}"), &app.admin)
        .await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.headers[header::ETAG], "\"3\"");
    assert!(d.body.get("password").is_none());
    let versions = app
        .get(&format!("/api/v1/devices/{device}/configs"), &app.admin)
        .await;
    assert_eq!(versions.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(versions.body["items"][0]["commit"], commits[1].0.as_str());
    let text = app
        .get(
            &format!("/api/v1/devices/{device}/configs/{}", commits[0].0),
            &app.admin,
        )
        .await;
    assert_eq!(text.status, StatusCode::OK, "{:?}", text.body);
    assert!(text.body["text"].as_str().unwrap().contains("name=r1"));
    let diff = app
        .get(
            &format!(
                "/api/v1/devices/{device}/configs/diff?from={}&to={}",
                commits[0].0, commits[1].0
            ),
            &app.admin,
        )
        .await;
    assert_eq!(diff.status, StatusCode::OK, "{:?}", diff.body);
    assert!(
        diff.body["unified"]
            .as_str()
            .unwrap()
            .contains("+set name=r2")
    );
    let between = commits[0].1 + time::Duration::minutes(1);
    let as_of = app
        .get(
            &format!(
                "/api/v1/devices/{device}/config?at={}",
                urlencode(
                    &between
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap()
                )
            ),
            &app.admin,
        )
        .await;
    assert_eq!(as_of.status, StatusCode::OK, "{:?}", as_of.body);
    assert_eq!(as_of.body["commit"], commits[0].0.as_str());
    let unknown = app
        .get(
            &format!("/api/v1/devices/{device}/configs/deadbeef"),
            &app.admin,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let feed = app
        .get("/api/v1/audit/feed?category=device", &app.admin)
        .await;
    assert_eq!(feed.status, StatusCode::OK, "{:?}", feed.body);
    assert_eq!(feed.body["items"].as_array().unwrap().len(), 3);
    let verify = app.get("/api/v1/audit/verify", &app.admin).await;
    assert_eq!(verify.body["ok"], true, "{:?}", verify.body);
    assert!(verify.body["events"].as_u64().unwrap() >= 5);

    let wf = app.get("/api/v1/workflows", &app.admin).await;
    assert_eq!(wf.status, StatusCode::OK);
    let ro = app.get("/api/v1/rollouts", &app.admin).await;
    assert_eq!(ro.status, StatusCode::OK);
}

fn new_device(name: &str) -> Value {
    json!({
        "name": name,
        "host": "192.0.2.10",
        "username": "api",
        "password": "device-secret-1234",
        "tags": ["edge"],
    })
}

/// Item 13 of issue 15: the firmware cache is per tenant. A tenant lists only its own
/// packages, another tenant's upload of the same name changes nothing of it, and a tenant's
/// packages together stay under its quota (413).
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn firmware_packages_are_per_tenant_and_within_a_quota(pool: PgPool) {
    let mut c = config();
    c.firmware_quota_bytes = 10_000;
    let app = app_with(pool, c, None).await;
    let a = &app.admin;
    let b = app
        .post(
            "/api/v1/tenants",
            a,
            json!({"name": "Tenant B", "change_control": "optional", "admin": {"email": "fw-b@example.net", "display_name": "B", "role": "tenant_admin", "password": PASSWORD}}),
        )
        .await;
    assert_eq!(b.status, StatusCode::CREATED, "{:?}", b.body);
    let b_token = app.login("fw-b@example.net", PASSWORD).await;
    let put = |token: String, file: &'static str, bytes: Vec<u8>| {
        let app = &app;
        async move {
            app.send(
                Request::put(format!("/api/v1/firmware/7.19.4/{file}"))
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(Body::from(bytes))
                    .unwrap(),
            )
            .await
        }
    };
    let mine = put(a.clone(), "routeros-7.19.4-arm64.npk", vec![1u8; 4000]).await;
    assert_eq!(mine.status, StatusCode::CREATED, "{:?}", mine.body);
    // Tenant B sees nothing of A's, and its upload of the same name is its own.
    let b_list = app.get("/api/v1/firmware", &b_token).await;
    assert_eq!(b_list.body["items"], json!([]), "{:?}", b_list.body);
    let theirs = put(
        b_token.clone(),
        "routeros-7.19.4-arm64.npk",
        vec![2u8; 3000],
    )
    .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{:?}", theirs.body);
    let a_list = app.get("/api/v1/firmware", a).await;
    assert_eq!(a_list.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(a_list.body["items"][0]["size"], 4000);
    assert_eq!(
        a_list.body["items"][0]["sha256"],
        mine.body["package"]["sha256"]
    );
    let stored = std::fs::read(
        netledger_store::firmware::tenant_dir(app.state.firmware_dir().unwrap(), app.tenant)
            .join("7.19.4/routeros-7.19.4-arm64.npk"),
    )
    .unwrap();
    assert_eq!(
        stored,
        vec![1u8; 4000],
        "B's upload did not replace A's package"
    );
    // The quota: 4000 used, 7000 more is too much; replacing the package itself is not.
    let over = put(a.clone(), "routeros-7.19.4-mipsbe.npk", vec![3u8; 7000]).await;
    assert_eq!(
        over.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{:?}",
        over.body
    );
    assert!(over.detail().contains("quota"), "{}", over.detail());
    let replaced = put(a.clone(), "routeros-7.19.4-arm64.npk", vec![4u8; 9000]).await;
    assert_eq!(replaced.status, StatusCode::CREATED, "{:?}", replaced.body);
}

/// Item 7 of issue 15: device hosts on loopback, link-local, unspecified or multicast
/// addresses and the platform's own service endpoints are refused (403 naming the rule and
/// how to allow it); private ranges pass; a tenant admin's allow-list lifts the class rules
/// but never the service endpoints.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn device_hosts_outside_device_networks_are_refused_unless_the_tenant_allows_them(
    pool: PgPool,
) {
    let mut c = config();
    c.device_networks = netledger_domain::device::network::DeviceNetworkPolicy {
        allowed: Vec::new(),
        service_endpoints: vec!["10.9.9.9:5432".parse().unwrap()],
    };
    let app = app_with(pool, c, None).await;
    let a = &app.admin;
    let register = |host: &'static str, port: u16| {
        let app = &app;
        async move {
            let mut body = new_device(&format!("d-{}", host.replace([':', '.'], "-")));
            body["host"] = json!(host);
            body["port"] = json!(port);
            app.post("/api/v1/devices", &app.admin, body).await
        }
    };
    for (host, rule) in [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("localhost", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.5", "multicast/broadcast"),
    ] {
        let r = register(host, 8728).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{host}: {:?}", r.body);
        assert!(r.is_problem());
        let detail = r.detail();
        assert!(
            detail.contains(&format!("`{rule}` rule")),
            "{host}: {detail}"
        );
        assert!(detail.contains("device-settings"), "{host}: {detail}");
    }
    let r = register("10.9.9.9", 5432).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(
        r.detail().contains("`service-address` rule"),
        "{}",
        r.detail()
    );
    for host in [
        "10.0.0.1",
        "172.16.5.5",
        "192.168.88.1",
        "fd00::1",
        "192.0.2.10",
    ] {
        let r = register(host, 8728).await;
        assert_eq!(r.status, StatusCode::CREATED, "{host}: {:?}", r.body);
    }
    // PATCH to a refused host is refused too.
    let id = register("10.0.0.2", 8728).await.body["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = app
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{id}"),
            Some(a),
            Some(json!({"host": "127.0.0.1"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(patch.status, StatusCode::FORBIDDEN, "{:?}", patch.body);
    assert!(patch.detail().contains("`loopback` rule"));

    // The tenant's allow-list: set by a tenant admin only.
    let settings = format!("/api/v1/tenants/{}/device-settings", app.tenant);
    let (_, operator) = app.user("op@example.net", Role::Operator).await;
    let denied = app
        .call(
            Method::PUT,
            &settings,
            Some(&operator),
            Some(json!({"allowed_networks": ["127.0.0.0/8"]})),
            &[],
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let bad = app
        .call(
            Method::PUT,
            &settings,
            Some(a),
            Some(json!({"allowed_networks": ["127.0.0.0/33"]})),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let set = app
        .call(
            Method::PUT,
            &settings,
            Some(a),
            Some(json!({"allowed_networks": ["127.0.0.0/8", "10.9.9.0/24"]})),
            &[],
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    assert_eq!(
        set.body["allowed_networks"],
        json!(["10.9.9.0/24", "127.0.0.0/8"])
    );
    let read = app.get(&settings, &operator).await;
    assert_eq!(
        read.body["allowed_networks"],
        json!(["10.9.9.0/24", "127.0.0.0/8"])
    );
    assert_eq!(
        set.body["events"][0]["stream"],
        format!("tenant-{}", app.tenant)
    );
    assert_eq!(
        register("127.0.0.1", 8728).await.status,
        StatusCode::CREATED
    );
    assert_eq!(register("::1", 8728).await.status, StatusCode::FORBIDDEN);
    let r = register("10.9.9.9", 5432).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "service endpoints stay refused"
    );
}

/// Item 8 of issue 15: a device's password never follows a changed endpoint. New devices
/// default to API-SSL; changing host, port or transport deletes the stored credentials
/// (`DeviceCredentialsCleared`, with the row gone in the same transaction) and new ones need
/// `devices:credentials`; production refuses the plain API unless the tenant allows it.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn an_endpoint_change_clears_the_credentials_and_new_devices_use_api_ssl(pool: PgPool) {
    let mut c = config();
    c.production = true;
    c.jwt_secret = netledger_api::config::SecretString::new("x".repeat(48));
    c.cookie_secure = true;
    c.password = netledger_api::config::PasswordParams::RECOMMENDED;
    let app = app_with(pool.clone(), c, None).await;
    let a = &app.admin;
    let r = app.post("/api/v1/devices", a, new_device("ssl-1")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["device_id"].as_str().unwrap().to_owned();
    let history = app
        .get(&format!("/api/v1/events/streams/device-{id}"), a)
        .await;
    let registered = &history.body["items"][0]["payload"]["endpoint"];
    assert_eq!(
        registered["transport"]["mode"], "tls_verified",
        "{registered}"
    );
    assert_eq!(registered["port"], 8729);
    let stored = |pool: PgPool, id: String| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM device_credentials WHERE device_id = $1::uuid",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(stored(pool.clone(), id.clone()).await, 1);

    // Production: plain is refused, naming the rule and the tenant setting.
    let mut plain = new_device("plain-1");
    plain["transport"] = json!({"mode": "plain"});
    let refused = app.post("/api/v1/devices", a, plain.clone()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    assert!(
        refused.detail().contains("`plain-transport` rule"),
        "{}",
        refused.detail()
    );
    assert!(refused.detail().contains("allow_plain_transport"));

    // An operator moves the device: the credentials go with the old endpoint.
    let (_, operator) = app.user("op@example.net", Role::Operator).await;
    let moved = app
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{id}"),
            Some(&operator),
            Some(json!({"host": "192.0.2.77"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(
        moved.body["version"], 3,
        "DeviceUpdated and DeviceCredentialsCleared"
    );
    assert_eq!(
        stored(pool.clone(), id.clone()).await,
        0,
        "the password row is gone"
    );
    let history = app
        .get(&format!("/api/v1/events/streams/device-{id}"), a)
        .await;
    assert_eq!(
        history.body["items"][2]["event_type"], "DeviceCredentialsCleared",
        "{:?}",
        history.body
    );
    assert_eq!(
        history.body["items"][2]["payload"]["reason"],
        "endpoint changed: host"
    );
    // Renaming keeps whatever is stored; re-entering credentials needs devices:credentials.
    let (_, viewer) = app.user("viewer@example.net", Role::Viewer).await;
    let creds = |token: String| {
        let app = &app;
        let id = id.clone();
        async move {
            app.call(
                Method::PUT,
                &format!("/api/v1/devices/{id}/credentials"),
                Some(&token),
                Some(json!({"username": "api", "password": "moved-secret-1"})),
                &[("if-match", "*")],
            )
            .await
        }
    };
    assert_eq!(creds(viewer).await.status, StatusCode::FORBIDDEN);
    assert_eq!(creds(operator.clone()).await.status, StatusCode::OK);
    assert_eq!(stored(pool.clone(), id.clone()).await, 1);

    // A tenant admin allows plain: then it is accepted.
    let set = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{}/device-settings", app.tenant),
            Some(a),
            Some(json!({"allow_plain_transport": true})),
            &[],
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    assert_eq!(set.body["allow_plain_transport"], true);
    let ok = app.post("/api/v1/devices", a, plain).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn device_commands_need_if_match_and_posts_are_idempotent(pool: PgPool) {
    let app = app(pool).await;
    let a = &app.admin;
    // Direct pushes and rollouts: a lab tenant (change control optional).
    app.change_control("optional").await;
    let key = [("idempotency-key", "reg-1")];
    let r = app
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(a),
            Some(new_device("edge-1")),
            &key,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["device_id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["events"][0]["stream"], format!("device-{id}"));
    // The same key and body: the first answer again, nothing new.
    let again = app
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(a),
            Some(new_device("edge-1")),
            &key,
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, r.body);
    assert_eq!(again.headers["idempotency-replayed"], "true");
    let other = app
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(a),
            Some(new_device("edge-2")),
            &key,
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        other.problem_type(),
        "urn:netledger:problem:idempotency-key-reused"
    );

    let uri = format!("/api/v1/devices/{id}");
    let st = app.get(&format!("{uri}/state"), a).await;
    assert_eq!(st.status, StatusCode::OK, "{:?}", st.body);
    assert_eq!(st.headers[header::ETAG], "\"1\"");
    let stale = app
        .call(
            Method::PATCH,
            &uri,
            Some(a),
            Some(json!({"name": "edge-1b"})),
            &[("if-match", "\"0\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.body["current_version"], 1);
    let upd = app
        .call(
            Method::PATCH,
            &uri,
            Some(a),
            Some(json!({"name": "edge-1b", "port": 8730})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(upd.status, StatusCode::OK, "{:?}", upd.body);
    assert_eq!(upd.headers[header::ETAG], "\"3\"");
    // The port changed: the stored credentials were cleared with it (issue 15 item 8).
    assert_eq!(upd.body["events"][0]["stream_version"], 3, "{:?}", upd.body);
    let tags = app
        .call(
            Method::PUT,
            &format!("{uri}/tags"),
            Some(a),
            Some(json!({"tags": ["core", "lab"]})),
            &[("if-match", "\"3\"")],
        )
        .await;
    assert_eq!(tags.body["version"], 4, "{:?}", tags.body);
    let creds = app
        .call(
            Method::PUT,
            &format!("{uri}/credentials"),
            Some(a),
            Some(json!({"username": "ops", "password": "new-device-secret-9"})),
            &[("if-match", "\"4\"")],
        )
        .await;
    assert_eq!(creds.status, StatusCode::OK, "{:?}", creds.body);
    assert!(!creds.body.to_string().contains("new-device-secret-9"));
    let history = app
        .get(&format!("/api/v1/events/streams/device-{id}"), a)
        .await;
    let text = history.body.to_string();
    assert!(text.contains("DeviceCredentialsChanged"));
    assert!(text.contains("DeviceCredentialsCleared"));
    assert!(!text.contains("device-secret"), "no password in events");
    let bad = app
        .call(
            Method::PUT,
            &format!("{uri}/tags"),
            Some(a),
            Some(json!({"tags": ["no spaces"]})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Workflows: a key gives the same workflow; cancel journals a signal.
    let start = |k: &'static str| {
        let body = json!({"device_id": id});
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/api/v1/workflows/backup",
                Some(&app.admin),
                Some(body),
                &[("idempotency-key", k)],
            )
            .await
        }
    };
    let w1 = start("bk-1").await;
    assert_eq!(w1.status, StatusCode::CREATED, "{:?}", w1.body);
    let w2 = start("bk-1").await;
    assert_eq!(w2.status, StatusCode::OK);
    assert_eq!(w2.body["workflow_id"], w1.body["workflow_id"]);
    assert_eq!(w2.body["existed"], true);
    let wf = w1.body["workflow_id"].as_str().unwrap();
    let cancel = app
        .post(
            &format!("/api/v1/workflows/{wf}/cancel"),
            a,
            json!({"reason": "test"}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{:?}", cancel.body);
    assert_eq!(cancel.body["events"][0]["stream_version"], 2);
    let push = app
        .post(
            "/api/v1/workflows/config-push",
            a,
            json!({"device_id": id, "script": "/system identity set name=x"}),
        )
        .await;
    assert_eq!(
        push.status,
        StatusCode::CONFLICT,
        "the backup still owns the device: {:?}",
        push.body
    );
    let unknown = app
        .post(
            "/api/v1/workflows/backup",
            a,
            json!({"device_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Rollouts: created through the rollout workflow; resume needs an approver.
    let d2 = app
        .post("/api/v1/devices", a, new_device("edge-2"))
        .await
        .body["device_id"]
        .clone();
    // Undoing a firmware rollout would be a downgrade: rollback_on_halt is refused for it.
    let refused = app
        .post(
            "/api/v1/rollouts",
            a,
            json!({"name": "fw", "target": {"kind": "firmware", "version": "7.19.4"}, "devices": [d2], "rollback_on_halt": true}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        refused.body
    );
    assert!(refused.is_problem());
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("rollback_on_halt is not supported for a firmware rollout"),
        "{:?}",
        refused.body
    );
    let zero = app
        .post(
            "/api/v1/rollouts",
            a,
            json!({"name": "cs", "target": {"kind": "change_set", "script": "/ip pool\nadd name=p ranges=10.0.0.1"}, "devices": [d2], "failure_threshold": 0}),
        )
        .await;
    assert_eq!(
        zero.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        zero.body
    );
    let ro = app
        .post(
            "/api/v1/rollouts",
            a,
            json!({"name": "fw 7.19.4", "target": {"kind": "firmware", "version": "7.19.4"}, "devices": [d2]}),
        )
        .await;
    assert_eq!(ro.status, StatusCode::CREATED, "{:?}", ro.body);
    let rid = ro.body["rollout_id"].as_str().unwrap();
    let pause = app
        .post(&format!("/api/v1/rollouts/{rid}/pause"), a, json!({}))
        .await;
    assert_eq!(pause.status, StatusCode::OK, "{:?}", pause.body);
    let (_, operator) = app.user("op@example.net", Role::Operator).await;
    let resume = app
        .post(
            &format!("/api/v1/rollouts/{rid}/resume"),
            &operator,
            json!({}),
        )
        .await;
    assert_eq!(resume.status, StatusCode::FORBIDDEN);
    let (_, approver) = app.user("ap@example.net", Role::Approver).await;
    let resume = app
        .post(
            &format!("/api/v1/rollouts/{rid}/resume"),
            &approver,
            json!({}),
        )
        .await;
    assert_eq!(resume.status, StatusCode::OK, "{:?}", resume.body);

    // Firmware cache.
    let up = app
        .send(
            Request::put("/api/v1/firmware/7.19.4/routeros-7.19.4-arm64.npk")
                .header(header::AUTHORIZATION, format!("Bearer {a}"))
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::from(vec![7u8; 4096]))
                .unwrap(),
        )
        .await;
    assert_eq!(up.status, StatusCode::CREATED, "{:?}", up.body);
    assert_eq!(up.body["package"]["size"], 4096);
    let list = app.get("/api/v1/firmware", a).await;
    assert_eq!(
        list.body["items"][0]["file_name"],
        "routeros-7.19.4-arm64.npk"
    );
    assert_eq!(
        list.body["items"][0]["sha256"],
        up.body["package"]["sha256"]
    );
    let bad = app
        .send(
            Request::put("/api/v1/firmware/7.19.4/..%2Fescape.npk")
                .header(header::AUTHORIZATION, format!("Bearer {a}"))
                .body(Body::from(vec![1u8; 10]))
                .unwrap(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Removal needs If-Match too, and the device is gone afterwards.
    let del = app.call(Method::DELETE, &uri, Some(a), None, &[]).await;
    assert_eq!(del.status, StatusCode::PRECONDITION_REQUIRED);
    let del = app
        .call(Method::DELETE, &uri, Some(a), None, &[("if-match", "*")])
        .await;
    assert_eq!(del.status, StatusCode::OK, "{:?}", del.body);
    assert_eq!(
        app.get(&format!("{uri}/state"), a).await.status,
        StatusCode::NOT_FOUND
    );
}

// ---- generated client --------------------------------------------------------------------------

/// The pinned generator (PyPI `openapi-python-client`), installed in a venv under the
/// target directory like `scripts/referee-librouteros` does for its client.
const OPENAPI_PYTHON_CLIENT: &str = "openapi-python-client==0.29.1";

async fn run_checked(cmd: &mut tokio::process::Command, what: &str) {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} took more than 300 s"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn generated_python_client_drives_a_scenario(pool: PgPool) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi-python-client");
    let venv = work.join("venv");
    if !venv.join("bin/python").exists() {
        run_checked(
            tokio::process::Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv),
            "python3 -m venv",
        )
        .await;
    }
    run_checked(
        tokio::process::Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            OPENAPI_PYTHON_CLIENT,
        ]),
        "pip install openapi-python-client",
    )
    .await;
    // Generate from the committed document (the drift test keeps it equal to the code's).
    let gen_dir = work.join(format!("gen-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&gen_dir).unwrap();
    run_checked(
        tokio::process::Command::new(venv.join("bin/openapi-python-client"))
            .arg("generate")
            .arg("--path")
            .arg(root.join("../../openapi/openapi.json"))
            .arg("--output-path")
            .arg(gen_dir.join("netledger_api_client"))
            .args(["--meta", "none"]),
        "openapi-python-client generate",
    )
    .await;

    let parts = setup(&pool, config(), |_| {}).await;
    let state = parts.state.clone();
    bootstrap_admin(&state, ADMIN_EMAIL, PASSWORD)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(netledger_api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let mut scenario = tokio::process::Command::new(venv.join("bin/python"));
    scenario
        .arg(root.join("tests/client_scenario.py"))
        .arg(format!("http://{addr}"))
        .arg(ADMIN_EMAIL)
        .arg(PASSWORD)
        .env("PYTHONPATH", &gen_dir);
    run_checked(&mut scenario, "the generated-client scenario").await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(&gen_dir).ok();
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_direct_push_may_not_choose_a_generated_change_id(pool: PgPool) {
    let app = app(pool).await;
    let a = &app.admin;
    app.change_control("optional").await;
    // The id is checked before the device: an unknown device shows the id passed.
    let device = uuid::Uuid::new_v4();
    let push = |change_id: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/api/v1/workflows/config-push",
                a,
                json!({"device_id": device, "script": "/system identity set name=x", "change_id": change_id}),
            )
            .await
        }
    };
    for (id, form) in [
        ("ro-0190a1b2c3d4", "ro-"),
        ("BK-1", "bk-"),
        ("fw-x", "fw-"),
        ("rs-1", "rs-"),
        ("cr-1", "cr-"),
        ("mine-post", "-post"),
        ("Mine-POST", "-post"),
    ] {
        let r = push(id).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{id}: {:?}",
            r.body
        );
        assert!(r.is_problem(), "{id}");
        let detail = r.body["detail"].as_str().unwrap();
        assert!(
            detail.contains(form) && detail.contains("reserved"),
            "{id}: {detail}"
        );
    }
    for id in ["change-42", "rollout-1", "post-1", "my_ro-1"] {
        let r = push(id).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}: {:?}", r.body);
    }
}

// ---- the HTTP edge: header timeout, connection cap, metrics address --------------------------

async fn http_get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth
        .map(|a| format!("authorization: Bearer {a}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Item 18: a client that never finishes its request head is disconnected after the header
/// timeout, and while it holds the only connection slot the next connection waits (it is
/// served only after the first was closed).
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn slow_request_heads_are_cut_off_and_connections_are_capped(pool: PgPool) {
    use tokio::io::AsyncWriteExt;
    let mut c = config();
    c.max_connections = 1;
    c.header_timeout = Duration::from_millis(300);
    let parts = setup(&pool, c, |_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(netledger_api::serve(
        listener,
        parts.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    // A slow client: half a request head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // A normal client behind it in the backlog.
    let answer = http_get(addr, "/health/live", None).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // By the time the second was answered, the slow one had been closed by the server
    // (a direct, non-blocking read: end of stream or a final answer, not "would block").
    let mut slow = slow.into_std().unwrap();
    slow.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    match std::io::Read::read(&mut slow, &mut buf) {
        Ok(_) => {}
        Err(e) => panic!("the slow connection is still open while another was served: {e}"),
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Item 17: `/metrics` on its own address (with a token), not on the API's.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn metrics_can_live_on_their_own_address(pool: PgPool) {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap();
    drop(free);
    let mut c = config();
    c.metrics_listen = Some(metrics_addr);
    c.metrics_token = Some(netledger_api::config::SecretString::new("scrape"));
    let parts = setup(&pool, c, |_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(netledger_api::serve(
        listener,
        parts.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let on_api = http_get(addr, "/metrics", Some("scrape")).await;
    assert!(on_api.starts_with("HTTP/1.1 404"), "{on_api}");
    let mut served = None;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(metrics_addr).await.is_ok() {
            served = Some(http_get(metrics_addr, "/metrics", Some("scrape")).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let served = served.expect("the metrics address listens");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert!(served.contains("netledger_http_requests_total"), "{served}");
    let refused = http_get(metrics_addr, "/metrics", None).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Issue 17: SSH access is part of a device's registration. A pinned host key (hex or
/// OpenSSH form) or an explicit trust on first use, never neither; the device shows it and
/// which path each file job takes for its version; changing it keeps the credentials; the
/// first connection's key, once recorded, shows as pinned; `null` removes it.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn ssh_access_is_registered_shown_pinned_on_first_use_and_removed(pool: PgPool) {
    use netledger_domain::device::*;
    let app = app(pool).await;
    let a = &app.admin.clone();
    let fp = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    for (ssh, says) in [
        (json!({}), "give host_key_sha256"),
        (
            json!({"host_key_sha256": fp, "trust_on_first_use": true}),
            "not both",
        ),
        (json!({"host_key_sha256": "SHA256:short"}), "OpenSSH form"),
        (json!({"trust_on_first_use": true, "port": 0}), "port 0"),
    ] {
        let mut d = new_device("ssh-bad");
        d["ssh"] = ssh.clone();
        let r = app.post("/api/v1/devices", a, d).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{ssh}: {:?}",
            r.body
        );
        assert!(r.detail().contains(says), "{ssh}: {}", r.detail());
    }
    let mut d = new_device("ssh-1");
    d["ssh"] = json!({"trust_on_first_use": true});
    let r = app.post("/api/v1/devices", a, d).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["device_id"].as_str().unwrap().to_owned();
    let device = netledger_domain::DeviceId::from_uuid(id.parse().unwrap());
    let uri = format!("/api/v1/devices/{id}");
    let history = app
        .get(&format!("/api/v1/events/streams/device-{id}"), a)
        .await;
    assert_eq!(
        history.body["items"][0]["payload"]["endpoint"]["ssh"],
        json!({"port": 22, "host_key": {"trust": "first_use"}})
    );
    // The first SSH connection (poller or worker) records the key it saw.
    append(
        &app.state,
        app.tenant,
        &device.stream(),
        &DeviceSshHostKeyPinned {
            fingerprint_sha256: fp.into(),
            algorithm: "ssh-ed25519".into(),
            recorded_by: "poller".into(),
        },
    )
    .await;
    append(
        &app.state,
        app.tenant,
        &device.stream(),
        &DeviceCameOnline {
            facts: DeviceFacts {
                identity: "r1".into(),
                version: "6.49.7 (long-term)".into(),
                board_name: "CHR".into(),
                architecture: "x86_64".into(),
                routerboard_firmware: None,
            },
        },
    )
    .await;
    netledger_projections::catch_up(&app.state.pools().system, None, 500)
        .await
        .unwrap();
    let read = app.get(&uri, a).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(
        read.body["endpoint"]["ssh"],
        json!({"port": 22, "trust": "pinned", "host_key_sha256": fp})
    );
    assert_eq!(
        read.body["file_access"],
        json!({"export": "ssh", "upload": "ssh", "download": "ssh"})
    );
    // Re-pinning (OpenSSH form) and a new port keep the stored credentials.
    let openssh = "SHA256:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg";
    let patched = app
        .call(
            Method::PATCH,
            &uri,
            Some(a),
            Some(json!({"ssh": {"port": 2222, "host_key_sha256": openssh}})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    // Registered, key pinned, came online: 3; only DeviceUpdated follows (no
    // DeviceCredentialsCleared).
    assert_eq!(patched.body["version"], 4, "{:?}", patched.body);
    // `null` removes SSH access: the device is back to API only.
    let removed = app
        .call(
            Method::PATCH,
            &uri,
            Some(a),
            Some(json!({"ssh": null})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{:?}", removed.body);
    netledger_projections::catch_up(&app.state.pools().system, None, 500)
        .await
        .unwrap();
    let read = app.get(&uri, a).await;
    assert_eq!(read.body["endpoint"]["ssh"], Value::Null);
    assert_eq!(
        read.body["file_access"],
        json!({"export": "api", "upload": "unavailable", "download": "unavailable"})
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM device_credentials WHERE device_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.state.pools().system)
            .await
            .unwrap();
    assert_eq!(stored, 1, "SSH changes keep the stored credentials");
}

/// Issue 17: an SSH private key given with a device's credentials (at registration or with
/// new credentials) is stored sealed, never returned; the device shows its public half
/// (algorithm, fingerprint in both forms, the OpenSSH line to import on the device); new
/// credentials without a key (a blank one is none) drop it; what is not a usable private key
/// is a 422 that says what to give instead, and nothing is stored.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn ssh_client_keys_are_stored_sealed_and_shown_by_their_public_half(pool: PgPool) {
    let app = app(pool).await;
    let a = &app.admin.clone();
    let key = netledger_testkit::ssh_client_key("api-key").unwrap();
    let private = key.private.expose().to_owned();
    for (bad, says) in [
        (key.public.public_key.clone(), "holds a public key"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
                .to_owned(),
            "could not be read as a private key",
        ),
        ("x".repeat(40_000), "more than the 32768 accepted"),
    ] {
        let mut d = new_device("key-bad");
        d["ssh_private_key"] = json!(bad);
        let r = app.post("/api/v1/devices", a, d).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{says}: {:?}",
            r.body
        );
        assert!(r.detail().contains(says), "{says}: {}", r.detail());
        assert!(
            r.detail().contains("OpenSSH, PKCS#8 or PKCS#1"),
            "{}",
            r.detail()
        );
    }
    let registered: i64 = sqlx::query_scalar("SELECT count(*) FROM device_credentials")
        .fetch_one(&app.state.pools().system)
        .await
        .unwrap();
    assert_eq!(registered, 0, "nothing stored for a refused registration");

    let mut d = new_device("key-1");
    d["ssh"] = json!({"trust_on_first_use": true});
    d["ssh_private_key"] = json!(private);
    let r = app.post("/api/v1/devices", a, d).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["device_id"].as_str().unwrap().to_owned();
    let uri = format!("/api/v1/devices/{id}");
    // the device as its read model shows it once the projections caught up
    let read_device = || async {
        netledger_projections::catch_up(&app.state.pools().system, None, 500)
            .await
            .unwrap();
        app.get(&uri, a).await
    };
    let read = read_device().await;
    let shown = &read.body["ssh_client_key"];
    assert_eq!(shown["algorithm"], "ssh-ed25519", "{:?}", read.body);
    assert_eq!(
        shown["fingerprint_sha256"],
        key.public.fingerprint_sha256.as_str()
    );
    assert_eq!(shown["public_key"], key.public.public_key.as_str());
    let openssh = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(hex::decode(&key.public.fingerprint_sha256).unwrap())
    };
    assert_eq!(shown["fingerprint"], format!("SHA256:{openssh}"));
    // never returned, never in an event; sealed in the credentials row
    let text = read.body.to_string();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let history = app
        .get(&format!("/api/v1/events/streams/device-{id}"), a)
        .await;
    assert!(!history.body.to_string().contains("PRIVATE KEY"));
    assert_eq!(
        history.body["items"][0]["payload"]["ssh_client_key"]["public_key"],
        key.public.public_key.as_str()
    );
    let (nonce, sealed): (Option<Vec<u8>>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT ssh_key_nonce, ssh_key_ciphertext FROM device_credentials WHERE device_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.state.pools().system)
    .await
    .unwrap();
    assert_eq!(nonce.map(|n| n.len()), Some(12));
    let sealed = sealed.unwrap();
    assert!(
        !sealed
            .windows(10)
            .any(|w| private.as_bytes().windows(10).any(|p| p == w)),
        "the key is not stored in clear"
    );

    // a bad key with new credentials: 422, the stored key stays
    let put = |body: Value| {
        let app = &app;
        let uri = format!("{uri}/credentials");
        async move {
            app.call(Method::PUT, &uri, Some(a), Some(body), &[("if-match", "*")])
                .await
        }
    };
    let r = put(json!({"username": "ops", "password": "pw-2", "ssh_private_key": "nope"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(
        read_device().await.body["ssh_client_key"]["public_key"],
        key.public.public_key.as_str()
    );
    // another key replaces it; credentials without one drop it
    let other = netledger_testkit::ssh_client_key("api-key-2").unwrap();
    let r = put(json!({"username": "ops", "password": "pw-2",
                       "ssh_private_key": other.private.expose()}))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        read_device().await.body["ssh_client_key"]["fingerprint_sha256"],
        other.public.fingerprint_sha256.as_str()
    );
    let r = put(json!({"username": "ops", "password": "pw-3", "ssh_private_key": " \n"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(read_device().await.body["ssh_client_key"], Value::Null);
    let nonce: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT ssh_key_nonce FROM device_credentials WHERE device_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.state.pools().system)
    .await
    .unwrap();
    assert_eq!(
        nonce, None,
        "the key is deleted with the credentials it belonged to"
    );
}
