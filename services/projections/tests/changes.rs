//! Change request read model (`rm_change_requests`), the change timeline and
//! read-your-writes waiting, against a real PostgreSQL (a fresh database per test with the
//! real migrations and roles). Projectors run as `netledger_system`, queries as
//! `netledger_app`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use netledger_domain::change::{
    ChangeAction, ChangeContent, ChangeRequestApprovalsInvalidated, ChangeRequestApproved,
    ChangeRequestCreated, ChangeRequestEdited, ChangeRequestFinished, ChangeRequestPaused,
    ChangeRequestRejected, ChangeRequestResumed, ChangeRequestScheduled, ChangeRequestStarted,
    ChangeRequestSubmitted, ChangeRequestWithdrawn, ChangeState, ChangeTarget, Overrides,
    RiskLevel, RolloutPlan,
};
use netledger_domain::device::{
    DeviceCameOnline, DeviceFacts, DeviceName, DeviceRegistered, Endpoint, Host, Tag, Transport,
};
use netledger_domain::workflow::{RolloutState, RolloutStateChanged};
use netledger_domain::{
    Actor, ChangeRequestId, DeviceId, EventMetadata, EventType, ExpectedVersion, NewEvent,
    RecordedEvent, RolloutId, StreamName, TenantId, WorkflowId,
};
use netledger_projections::query::{
    AuditQuery, ChangeRequestQuery, ChangeRequestSummary, audit_feed, change_request_detail,
    change_timeline, list_change_requests,
};
use netledger_projections::{
    AUDIT, BatchOutcome, CHANGE_REQUESTS, DEVICES, ReplayOptions, apply_events, catch_up,
    checkpoint, dump, replay, replay_with, wait_for_position,
};
use netledger_store::{EventReader, EventStore, Pools, StoreOptions};
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

struct Db {
    owner: PgPool,
    app: PgPool,
    system: PgPool,
    store: EventStore,
}

async fn db(owner: PgPool) -> Db {
    let pools = Pools::connect(&owner.connect_options(), None, None, 4)
        .await
        .unwrap();
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    Db {
        owner,
        app: pools.app,
        system: pools.system,
        store,
    }
}

fn user(n: u128) -> Actor {
    Actor::User {
        id: Uuid::from_u128(n),
    }
}

fn author(n: u128) -> String {
    Uuid::from_u128(n).to_string()
}

/// An event caused by a command of user `by`, correlated with `correlation`.
fn ev<E: EventType>(payload: &E, by: u128, correlation: Uuid) -> NewEvent {
    NewEvent::from_typed(
        payload,
        EventMetadata {
            actor: user(by),
            causation_id: Uuid::new_v4(),
            correlation_id: correlation,
        },
    )
    .unwrap()
}

/// An event of a fresh command (its own correlation).
fn cmd<E: EventType>(payload: &E, by: u128) -> NewEvent {
    ev(payload, by, Uuid::new_v4())
}

impl Db {
    async fn append(&self, tenant: TenantId, stream: &StreamName, events: Vec<NewEvent>) -> i64 {
        self.store
            .append(tenant, stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
        EventReader::system(self.system.clone(), None)
            .head_position()
            .await
            .unwrap()
    }

    async fn events(&self) -> Vec<RecordedEvent> {
        EventReader::system(self.system.clone(), None)
            .read_all(0, 100_000)
            .await
            .unwrap()
    }

    /// Applies every stored event to the named projectors (one batch each).
    async fn project(&self, projectors: &[&str]) {
        let events = self.events().await;
        for p in projectors {
            let outcome = apply_events(&self.system, p, &events).await.unwrap();
            assert!(matches!(outcome, BatchOutcome::Applied { .. }), "{p}");
        }
    }

    async fn list(&self, tenant: TenantId, q: ChangeRequestQuery) -> Vec<ChangeRequestSummary> {
        list_change_requests(&self.app, tenant, &q)
            .await
            .unwrap()
            .items
    }

    async fn one(&self, tenant: TenantId, id: ChangeRequestId) -> ChangeRequestSummary {
        self.list(
            tenant,
            ChangeRequestQuery {
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .find(|s| s.id == id)
        .unwrap()
    }

    /// The jsonb and time columns the summary does not carry.
    async fn row(&self, id: ChangeRequestId) -> serde_json::Value {
        sqlx::query_scalar(
            "SELECT jsonb_build_object('content', content, 'approvals', approvals, \
                    'rejection', rejection, 'devices', to_jsonb(devices), 'pause', pause, \
                    'final_reason', final_reason, 'submitted_at', submitted_at, \
                    'created_position', created_position, 'updated_position', updated_position) \
             FROM rm_change_requests WHERE change_request_id = $1",
        )
        .bind(id.as_uuid())
        .fetch_one(&self.owner)
        .await
        .unwrap()
    }
}

fn content(title: &str, risk: RiskLevel, emergency: bool) -> ChangeContent {
    ChangeContent {
        title: title.into(),
        reason: "CHG-1: new NTP pool".into(),
        ticket: Some("CHG-1".into()),
        target: ChangeTarget::Tags {
            tags: vec!["site:ber".into()],
            matching: netledger_domain::change::TagMatch::Any,
        },
        action: ChangeAction::Script {
            script: "/system ntp client\nset enabled=yes\n".into(),
        },
        plan: RolloutPlan::default(),
        risk,
        window: None,
        overrides: Overrides::default(),
        emergency,
        emergency_reason: emergency.then(|| "core down".to_owned()),
    }
}

fn created(id: ChangeRequestId, by: u128, c: ChangeContent) -> ChangeRequestCreated {
    ChangeRequestCreated {
        change_request_id: id,
        author: author(by),
        content: c,
        sealed_script: None,
    }
}

fn submitted(devices: &[DeviceId], required: u32) -> ChangeRequestSubmitted {
    ChangeRequestSubmitted {
        devices: devices.to_vec(),
        previews: vec![],
        required_approvals: required,
        restore_script: None,
    }
}

fn approved(by: u128, retrospective: bool) -> ChangeRequestApproved {
    ChangeRequestApproved {
        by: author(by),
        comment: Some(format!("ok from {by}")),
        retrospective,
    }
}

fn registered(id: DeviceId, name: &str, tags: &[&str]) -> DeviceRegistered {
    DeviceRegistered {
        device_id: id,
        name: DeviceName::parse(name).unwrap(),
        endpoint: Endpoint {
            host: Host::parse("10.0.0.1").unwrap(),
            port: 8728,
            transport: Transport::Plain,
            ssh: None,
        },
        username: "admin".into(),
        credentials_key_id: "k1".into(),
        tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
        poll_interval_secs: 60,
        ssh_client_key: None,
    }
}

fn at_of(events: &[RecordedEvent], stream: &StreamName, version: i64) -> OffsetDateTime {
    events
        .iter()
        .find(|e| &e.stream == stream && e.version == version)
        .unwrap()
        .recorded_at
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_change_request_lifecycle_folds_into_its_row(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let c = ChangeRequestId::new_random();
    let s = c.stream();
    let (d1, d2) = (DeviceId::new_random(), DeviceId::new_random());
    let (w, r) = (WorkflowId::new_random(), RolloutId::new_random());
    let first = content("NTP servers", RiskLevel::High, false);
    let mut second = first.clone();
    second.title = "NTP servers (pool 2)".into();

    // Created, submitted, one approval, then edited: a draft again, the approval gone.
    db.append(
        t,
        &s,
        vec![
            cmd(&created(c, 1, first.clone()), 1),
            cmd(&submitted(&[d1, d2], 2), 1),
            cmd(&approved(2, false), 2),
        ],
    )
    .await;
    db.project(&[CHANGE_REQUESTS]).await;
    let row = db.one(t, c).await;
    assert_eq!(row.state, ChangeState::Submitted);
    assert_eq!(
        (row.approvals, row.required_approvals, row.devices),
        (1, 2, 2)
    );
    assert_eq!(row.version, 3);
    assert_eq!(row.title, "NTP servers");
    assert_eq!(row.author, author(1));
    assert_eq!(row.risk, RiskLevel::High);

    db.append(
        t,
        &s,
        vec![
            cmd(
                &ChangeRequestEdited {
                    content: second.clone(),
                    previous_state: ChangeState::Submitted,
                    sealed_script: None,
                },
                1,
            ),
            cmd(
                &ChangeRequestApprovalsInvalidated {
                    approvers: vec![author(2)],
                    reason: "edited after approval".into(),
                },
                1,
            ),
        ],
    )
    .await;
    db.project(&[CHANGE_REQUESTS]).await;
    let row = db.one(t, c).await;
    assert_eq!(row.state, ChangeState::Draft);
    assert_eq!((row.approvals, row.version), (0, 5));
    assert_eq!(row.title, "NTP servers (pool 2)");
    assert_eq!(db.row(c).await["approvals"], json!([]));

    // Submitted again, approved twice, scheduled, started, paused.
    db.append(
        t,
        &s,
        vec![
            cmd(&submitted(&[d2, d1], 2), 1),
            cmd(&approved(2, false), 2),
            cmd(&approved(3, false), 3),
            cmd(
                &ChangeRequestScheduled {
                    workflow_id: w,
                    by: author(1),
                    window: None,
                },
                1,
            ),
            ev(&ChangeRequestStarted { rollout_id: r }, 9, *c.as_uuid()),
            ev(
                &ChangeRequestPaused {
                    pause: 1,
                    reason: "maintenance window ended".into(),
                },
                9,
                *c.as_uuid(),
            ),
        ],
    )
    .await;
    db.project(&[CHANGE_REQUESTS]).await;
    let events = db.events().await;
    let row = db.one(t, c).await;
    assert_eq!(row.state, ChangeState::Running);
    assert!(row.paused);
    assert_eq!((row.approvals, row.required_approvals), (2, 2));
    assert_eq!(row.workflow_id, Some(w));
    assert_eq!(row.rollout_id, Some(r));
    assert_eq!(row.started_at, Some(at_of(&events, &s, 10)));
    assert_eq!(row.finished_at, None);
    let detail = db.row(c).await;
    assert_eq!(detail["pause"], json!(1));
    assert_eq!(
        detail["devices"],
        json!([d2.as_uuid().to_string(), d1.as_uuid().to_string()])
    );
    assert_eq!(detail["approvals"][0]["by"], json!(author(2)));
    assert_eq!(detail["approvals"][1]["by"], json!(author(3)));
    assert_eq!(detail["approvals"][1]["retrospective"], json!(false));
    assert_eq!(
        detail["approvals"][1]["at"],
        json!(rfc(at_of(&events, &s, 8)))
    );
    assert_eq!(detail["content"]["title"], json!("NTP servers (pool 2)"));

    // Resumed, finished.
    db.append(
        t,
        &s,
        vec![
            ev(&ChangeRequestResumed { pause: 1 }, 9, *c.as_uuid()),
            ev(
                &ChangeRequestFinished {
                    state: ChangeState::Completed,
                    reason: None,
                },
                9,
                *c.as_uuid(),
            ),
        ],
    )
    .await;
    // A re-delivered batch changes nothing (the checkpoint and the row's position skip it).
    db.project(&[CHANGE_REQUESTS]).await;
    db.project(&[CHANGE_REQUESTS]).await;
    let events = db.events().await;
    let row = db.one(t, c).await;
    assert_eq!(row.state, ChangeState::Completed);
    assert!(!row.paused && !row.review_pending && !row.emergency);
    assert_eq!(row.version, 13);
    assert_eq!(row.created_at, at_of(&events, &s, 1));
    assert_eq!(row.updated_at, at_of(&events, &s, 13));
    assert_eq!(row.finished_at, Some(at_of(&events, &s, 13)));
    let detail = db.row(c).await;
    assert_eq!(detail["pause"], json!(null));
    assert_eq!(detail["final_reason"], json!(null));
    // The last submission's time (version 6), not the first's.
    let submitted_at: Option<OffsetDateTime> = sqlx::query_scalar(
        "SELECT submitted_at FROM rm_change_requests WHERE change_request_id = $1",
    )
    .bind(c.as_uuid())
    .fetch_one(&db.owner)
    .await
    .unwrap();
    assert_eq!(submitted_at, Some(at_of(&events, &s, 6)));

    // The detail holds the whole row.
    let detail = change_request_detail(&db.app, t, c).await.unwrap().unwrap();
    assert_eq!(detail.summary, row);
    assert_eq!(detail.content, second);
    assert_eq!(detail.device_ids, vec![d2, d1]);
    assert_eq!(
        detail
            .approval_list
            .iter()
            .map(|a| (a.by.clone(), a.at))
            .collect::<Vec<_>>(),
        vec![
            (author(2), at_of(&events, &s, 7)),
            (author(3), at_of(&events, &s, 8))
        ]
    );
    assert_eq!(detail.rejection, None);
    assert_eq!(detail.pause, None);
    assert_eq!(detail.submitted_at, Some(at_of(&events, &s, 6)));
    assert_eq!(
        detail.updated_position,
        events
            .iter()
            .rev()
            .find(|e| e.stream == s)
            .unwrap()
            .position
    );
    let v = serde_json::to_value(&detail).unwrap();
    assert_eq!(v["state"], json!("completed"));
    assert_eq!(v["content"]["title"], json!("NTP servers (pool 2)"));
    assert!(
        change_request_detail(&db.app, TenantId::new_random(), c)
            .await
            .unwrap()
            .is_none()
    );

    // A rejected request and a withdrawn one; an emergency that ran and is reviewed.
    let rej = ChangeRequestId::new_random();
    db.append(
        t,
        &rej.stream(),
        vec![
            cmd(&created(rej, 1, first.clone()), 1),
            cmd(&submitted(&[d1], 1), 1),
            cmd(
                &ChangeRequestRejected {
                    by: author(2),
                    comment: "not during the freeze".into(),
                },
                2,
            ),
        ],
    )
    .await;
    let wd = ChangeRequestId::new_random();
    db.append(
        t,
        &wd.stream(),
        vec![
            cmd(&created(wd, 4, first.clone()), 4),
            cmd(&ChangeRequestWithdrawn { reason: None }, 4),
        ],
    )
    .await;
    let em = ChangeRequestId::new_random();
    let em_rollout = RolloutId::new_random();
    db.append(
        t,
        &em.stream(),
        vec![
            cmd(
                &created(em, 1, content("core fix", RiskLevel::Medium, true)),
                1,
            ),
            cmd(&submitted(&[d1], 1), 1),
            cmd(
                &ChangeRequestScheduled {
                    workflow_id: WorkflowId::new_random(),
                    by: author(1),
                    window: None,
                },
                1,
            ),
            cmd(
                &ChangeRequestStarted {
                    rollout_id: em_rollout,
                },
                9,
            ),
            cmd(
                &ChangeRequestFinished {
                    state: ChangeState::Failed,
                    reason: Some("device d1 failed".into()),
                },
                9,
            ),
        ],
    )
    .await;
    db.project(&[CHANGE_REQUESTS]).await;
    let events = db.events().await;
    let row = db.one(t, rej).await;
    assert_eq!(row.state, ChangeState::Rejected);
    assert_eq!(
        db.row(rej).await["rejection"],
        json!({"by": author(2), "comment": "not during the freeze",
               "at": rfc(at_of(&events, &rej.stream(), 3))})
    );
    let row = db.one(t, wd).await;
    assert_eq!(row.state, ChangeState::Withdrawn);
    assert_eq!(row.finished_at, Some(at_of(&events, &wd.stream(), 2)));
    let row = db.one(t, em).await;
    assert_eq!(row.state, ChangeState::Failed);
    assert!(row.emergency && row.review_pending);
    assert_eq!(db.row(em).await["final_reason"], json!("device d1 failed"));

    db.append(t, &em.stream(), vec![cmd(&approved(2, true), 2)])
        .await;
    db.project(&[CHANGE_REQUESTS]).await;
    let row = db.one(t, em).await;
    assert!(!row.review_pending);
    assert_eq!(row.approvals, 1);
    assert_eq!(
        db.row(em).await["approvals"][0]["retrospective"],
        json!(true)
    );

    // A rebuild from position 0 gives the same rows, in one batch or in many small ones.
    let live = dump(&db.system, Some(CHANGE_REQUESTS)).await.unwrap();
    assert_eq!(live["rm_change_requests"].len(), 4);
    let report = replay(&db.system, Some(CHANGE_REQUESTS)).await.unwrap();
    assert_eq!(report.per_projector.len(), 1);
    assert_eq!(dump(&db.system, Some(CHANGE_REQUESTS)).await.unwrap(), live);
    replay_with(
        &db.system,
        Some(CHANGE_REQUESTS),
        ReplayOptions {
            batch: 3,
            flush_rows: 1,
        },
    )
    .await
    .unwrap();
    assert_eq!(dump(&db.system, Some(CHANGE_REQUESTS)).await.unwrap(), live);
    // And the rebuilt table keeps its indexes and security: the app sees its tenant only.
    let indexes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' \
         AND tablename = 'rm_change_requests'",
    )
    .fetch_one(&db.owner)
    .await
    .unwrap();
    assert_eq!(indexes, 6);
    assert_eq!(db.list(t, ChangeRequestQuery::default()).await.len(), 4);
    assert!(
        db.list(TenantId::new_random(), ChangeRequestQuery::default())
            .await
            .is_empty()
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_change_list_filters_and_pages(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let other = TenantId::new_random();
    let (d1, d2, d3) = (
        DeviceId::new_random(),
        DeviceId::new_random(),
        DeviceId::new_random(),
    );
    db.append(
        t,
        &d1.stream(),
        vec![cmd(&registered(d1, "core-1", &["site:ber"]), 1)],
    )
    .await;
    db.append(
        t,
        &d2.stream(),
        vec![cmd(&registered(d2, "edge-2", &["site:muc"]), 1)],
    )
    .await;
    db.append(
        t,
        &d3.stream(),
        vec![cmd(&registered(d3, "edge-3", &[]), 1)],
    )
    .await;

    // a: draft by 1; b: submitted by 1 on d1; c: submitted by 2 on d2, d3;
    // e1: emergency by 2 on d1 that started early (pending review);
    // e2: emergency by 1 on d3, still only submitted (not run: no review pending).
    let ids: Vec<ChangeRequestId> = (0..5).map(|_| ChangeRequestId::new_random()).collect();
    let (a, b, c, e1, e2) = (ids[0], ids[1], ids[2], ids[3], ids[4]);
    let ordinary = content("ordinary", RiskLevel::Low, false);
    let emergency = content("emergency", RiskLevel::Medium, true);
    db.append(
        t,
        &a.stream(),
        vec![cmd(&created(a, 1, ordinary.clone()), 1)],
    )
    .await;
    db.append(
        t,
        &b.stream(),
        vec![
            cmd(&created(b, 1, ordinary.clone()), 1),
            cmd(&submitted(&[d1], 1), 1),
        ],
    )
    .await;
    db.append(
        t,
        &c.stream(),
        vec![
            cmd(&created(c, 2, ordinary.clone()), 2),
            cmd(&submitted(&[d2, d3], 1), 2),
        ],
    )
    .await;
    db.append(
        t,
        &e1.stream(),
        vec![
            cmd(&created(e1, 2, emergency.clone()), 2),
            cmd(&submitted(&[d1], 1), 2),
            cmd(
                &ChangeRequestScheduled {
                    workflow_id: WorkflowId::new_random(),
                    by: author(2),
                    window: None,
                },
                2,
            ),
            cmd(
                &ChangeRequestStarted {
                    rollout_id: RolloutId::new_random(),
                },
                9,
            ),
        ],
    )
    .await;
    db.append(
        t,
        &e2.stream(),
        vec![
            cmd(&created(e2, 1, emergency.clone()), 1),
            cmd(&submitted(&[d3], 1), 1),
        ],
    )
    .await;
    // Another tenant's request on the same device id: never listed for t.
    let x = ChangeRequestId::new_random();
    db.append(
        other,
        &x.stream(),
        vec![
            cmd(&created(x, 1, ordinary.clone()), 1),
            cmd(&submitted(&[d1], 1), 1),
        ],
    )
    .await;
    db.project(&[DEVICES, CHANGE_REQUESTS]).await;
    let events = db.events().await;
    let e1_started = at_of(&events, &e1.stream(), 4);

    let ids_of = |items: Vec<ChangeRequestSummary>| -> Vec<ChangeRequestId> {
        items.into_iter().map(|s| s.id).collect()
    };
    let q = ChangeRequestQuery::default;
    assert_eq!(ids_of(db.list(t, q()).await), vec![e2, e1, c, b, a]);
    assert_eq!(ids_of(db.list(other, q()).await), vec![x]);
    let by_state = |s| ChangeRequestQuery {
        state: Some(s),
        ..q()
    };
    assert_eq!(
        ids_of(db.list(t, by_state(ChangeState::Submitted)).await),
        vec![e2, c, b]
    );
    assert_eq!(
        ids_of(db.list(t, by_state(ChangeState::Draft)).await),
        vec![a]
    );
    assert_eq!(
        ids_of(db.list(t, by_state(ChangeState::Running)).await),
        vec![e1]
    );
    assert!(
        db.list(t, by_state(ChangeState::Completed))
            .await
            .is_empty()
    );
    let by_author = |n| ChangeRequestQuery {
        author: Some(author(n)),
        ..q()
    };
    assert_eq!(ids_of(db.list(t, by_author(1)).await), vec![e2, b, a]);
    assert_eq!(ids_of(db.list(t, by_author(2)).await), vec![e1, c]);
    assert!(db.list(t, by_author(3)).await.is_empty());
    let by_device = |d| ChangeRequestQuery {
        device: Some(d),
        ..q()
    };
    assert_eq!(ids_of(db.list(t, by_device(d1)).await), vec![e1, b]);
    assert_eq!(ids_of(db.list(t, by_device(d3)).await), vec![e2, c]);
    let by_tag = |tag: &str| ChangeRequestQuery {
        tag: Some(tag.into()),
        ..q()
    };
    assert_eq!(ids_of(db.list(t, by_tag("site:ber")).await), vec![e1, b]);
    assert_eq!(ids_of(db.list(t, by_tag("site:muc")).await), vec![c]);
    assert!(db.list(t, by_tag("site:nowhere")).await.is_empty());
    let by_emergency = |e| ChangeRequestQuery {
        emergency: Some(e),
        ..q()
    };
    assert_eq!(ids_of(db.list(t, by_emergency(true)).await), vec![e2, e1]);
    assert_eq!(ids_of(db.list(t, by_emergency(false)).await), vec![c, b, a]);
    let overdue = |at| ChangeRequestQuery {
        review_overdue_at: Some(at),
        ..q()
    };
    assert_eq!(
        ids_of(
            db.list(t, overdue(e1_started + Duration::from_secs(1)))
                .await
        ),
        vec![e1]
    );
    assert!(db.list(t, overdue(e1_started)).await.is_empty());
    // Filters combine.
    assert_eq!(
        ids_of(
            db.list(
                t,
                ChangeRequestQuery {
                    author: Some(author(1)),
                    device: Some(d3),
                    ..q()
                }
            )
            .await
        ),
        vec![e2]
    );
    assert!(
        db.list(
            t,
            ChangeRequestQuery {
                author: Some(author(1)),
                tag: Some("site:muc".into()),
                ..q()
            }
        )
        .await
        .is_empty()
    );

    // Pages of two, newest first, each position once; a filtered list pages too.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = list_change_requests(
            &db.app,
            t,
            &ChangeRequestQuery {
                limit: Some(2),
                cursor: cursor.clone(),
                ..q()
            },
        )
        .await
        .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|s| s.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, vec![e2, e1, c, b, a]);
    let page = list_change_requests(
        &db.app,
        t,
        &ChangeRequestQuery {
            author: Some(author(1)),
            limit: Some(2),
            ..q()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids_of(page.items), vec![e2, b]);
    let rest = list_change_requests(
        &db.app,
        t,
        &ChangeRequestQuery {
            author: Some(author(1)),
            limit: Some(2),
            cursor: page.next_cursor,
            ..q()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids_of(rest.items), vec![a]);
    assert!(rest.next_cursor.is_none());
    let bad = list_change_requests(
        &db.app,
        t,
        &ChangeRequestQuery {
            cursor: Some("nope".into()),
            ..q()
        },
    )
    .await;
    assert!(bad.is_err());

    // The summary serialises with RFC 3339 times and snake_case enums.
    let e1_row = db.one(t, e1).await;
    let v = serde_json::to_value(&e1_row).unwrap();
    assert_eq!(v["state"], json!("running"));
    assert_eq!(v["risk"], json!("medium"));
    assert_eq!(v["started_at"], json!(rfc(e1_started)));
    assert_eq!(v["finished_at"], json!(null));
    let back: ChangeRequestSummary = serde_json::from_value(v).unwrap();
    assert_eq!(back, e1_row);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_timeline_holds_the_change_and_its_correlated_events(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let other = TenantId::new_random();
    let c = ChangeRequestId::new_random();
    let c2 = ChangeRequestId::new_random();
    let cu = *c.as_uuid();
    let d = DeviceId::new_random();
    let r = RolloutId::new_random();
    let facts = DeviceFacts {
        identity: "core".into(),
        version: "7.15 (stable)".into(),
        board_name: "CCR2004".into(),
        architecture: "arm64".into(),
        routerboard_firmware: None,
    };
    let base = content("NTP", RiskLevel::Low, false);
    db.append(t, &d.stream(), vec![cmd(&registered(d, "core-1", &[]), 1)])
        .await;
    db.append(t, &c.stream(), vec![cmd(&created(c, 1, base.clone()), 1)])
        .await;
    // Another change, interleaved: none of it shows.
    db.append(t, &c2.stream(), vec![cmd(&created(c2, 1, base.clone()), 1)])
        .await;
    db.append(t, &c.stream(), vec![cmd(&submitted(&[d], 1), 1)])
        .await;
    db.append(
        t,
        &c.stream(),
        vec![ev(&ChangeRequestStarted { rollout_id: r }, 9, cu)],
    )
    .await;
    // The rollout and a device event of the run carry the change's correlation id.
    db.append(
        t,
        &r.stream(),
        vec![ev(
            &RolloutStateChanged {
                state: RolloutState::Paused,
                reason: Some("maintenance window ended".into()),
            },
            9,
            cu,
        )],
    )
    .await;
    db.append(
        t,
        &d.stream(),
        vec![ev(
            &DeviceCameOnline {
                facts: facts.clone(),
            },
            9,
            cu,
        )],
    )
    .await;
    // Uncorrelated device events, c2's events and another tenant's event with the same
    // correlation id are not part of it.
    db.append(t, &d.stream(), vec![cmd(&DeviceCameOnline { facts }, 9)])
        .await;
    db.append(
        t,
        &c2.stream(),
        vec![ev(&submitted(&[d], 1), 1, Uuid::new_v4())],
    )
    .await;
    db.append(
        other,
        &RolloutId::new_random().stream(),
        vec![ev(
            &RolloutStateChanged {
                state: RolloutState::Running,
                reason: None,
            },
            9,
            cu,
        )],
    )
    .await;
    db.append(
        t,
        &c.stream(),
        vec![ev(
            &ChangeRequestFinished {
                state: ChangeState::Completed,
                reason: None,
            },
            9,
            cu,
        )],
    )
    .await;

    let page = change_timeline(&db.app, t, c, None, None).await.unwrap();
    assert!(page.next_cursor.is_none());
    let seen: Vec<(String, String)> = page
        .items
        .iter()
        .map(|e| (e.stream.clone(), e.event_type.clone()))
        .collect();
    let cs = c.stream().to_string();
    assert_eq!(
        seen,
        vec![
            (cs.clone(), "ChangeRequestCreated".to_owned()),
            (cs.clone(), "ChangeRequestSubmitted".to_owned()),
            (cs.clone(), "ChangeRequestStarted".to_owned()),
            (r.stream().to_string(), "RolloutStateChanged".to_owned()),
            (d.stream().to_string(), "DeviceCameOnline".to_owned()),
            (cs.clone(), "ChangeRequestFinished".to_owned()),
        ]
    );
    assert!(page.items.windows(2).all(|w| w[0].position < w[1].position));
    let rollout = &page.items[3];
    assert_eq!(rollout.correlation_id, cu);
    assert_eq!(rollout.actor, user(9));
    assert_eq!(rollout.version, 1);
    assert_eq!(rollout.payload["state"], json!("paused"));
    assert_eq!(page.items[0].payload["author"], json!(author(1)));
    let timeline_json = serde_json::to_value(&page.items[0]).unwrap();
    assert_eq!(timeline_json["actor"]["kind"], json!("user"));

    // Pages of two, with the position as cursor.
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let p = change_timeline(&db.app, t, c, after, Some(2))
            .await
            .unwrap();
        assert!(p.items.len() <= 2);
        all.extend(p.items.iter().map(|e| e.position));
        match p.next_cursor {
            Some(cur) => after = Some(cur.parse::<i64>().unwrap()),
            None => break,
        }
    }
    assert_eq!(
        all,
        page.items.iter().map(|e| e.position).collect::<Vec<_>>()
    );

    // Another tenant sees none of it: only its own event that happens to carry the same
    // correlation id.
    let theirs = change_timeline(&db.app, other, c, None, None)
        .await
        .unwrap();
    assert_eq!(theirs.items.len(), 1);
    assert!(theirs.items[0].stream.starts_with("rollout-"));
    assert_eq!(theirs.items[0].payload["state"], json!("running"));
    // The audit feed summarises the change events in words.
    db.project(&[AUDIT]).await;
    let feed = audit_feed(
        &db.app,
        t,
        &AuditQuery {
            stream: Some(c.stream().to_string()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let summaries: Vec<&str> = feed.items.iter().map(|a| a.summary.as_str()).collect();
    assert_eq!(
        summaries,
        vec![
            "change request finished: completed",
            format!("change request started rollout {r}").as_str(),
            "change request submitted: 1 devices, 1 approval(s) needed",
            "change request created: NTP (risk low)",
        ]
    );

    // c2's timeline is its own two events.
    let c2_page = change_timeline(&db.app, t, c2, None, None).await.unwrap();
    assert_eq!(c2_page.items.len(), 2);
    assert!(
        c2_page
            .items
            .iter()
            .all(|e| e.stream == c2.stream().to_string())
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn waiting_for_a_position_sees_the_projectors_pass_it(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let c = ChangeRequestId::new_random();
    let short = Duration::from_millis(100);
    let written = db
        .append(
            t,
            &c.stream(),
            vec![cmd(
                &created(c, 1, content("NTP", RiskLevel::Low, false)),
                1,
            )],
        )
        .await;
    assert!(written > 0);
    // Nothing projected yet (no checkpoint at all): the wait times out.
    assert!(
        !wait_for_position(&db.system, &[CHANGE_REQUESTS], written, short)
            .await
            .unwrap()
    );
    // Nothing to wait for.
    assert!(
        wait_for_position(&db.system, &[], written, short)
            .await
            .unwrap()
    );
    assert!(
        wait_for_position(&db.system, &[CHANGE_REQUESTS], 0, short)
            .await
            .unwrap()
    );

    // Projected while the wait is on: it returns true without waiting out the timeout.
    let waiter = {
        let system = db.system.clone();
        tokio::spawn(async move {
            wait_for_position(
                &system,
                &[CHANGE_REQUESTS, DEVICES],
                written,
                Duration::from_secs(30),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    db.project(&[CHANGE_REQUESTS]).await;
    // Only one of the two has passed it so far.
    assert!(
        !wait_for_position(&db.system, &[CHANGE_REQUESTS, DEVICES], written, short)
            .await
            .unwrap()
    );
    db.project(&[DEVICES]).await;
    assert!(waiter.await.unwrap().unwrap());
    assert!(
        db.list(t, ChangeRequestQuery::default())
            .await
            .iter()
            .any(|s| s.id == c)
    );

    // A later event of another category: the change projector, caught up, moves its
    // checkpoint to the head it has read, so a wait for that position passes.
    let d = DeviceId::new_random();
    let later = db
        .append(t, &d.stream(), vec![cmd(&registered(d, "edge-1", &[]), 1)])
        .await;
    assert!(
        !wait_for_position(&db.system, &[CHANGE_REQUESTS], later, short)
            .await
            .unwrap()
    );
    catch_up(&db.system, Some(CHANGE_REQUESTS), 100)
        .await
        .unwrap();
    assert_eq!(
        checkpoint(&db.system, CHANGE_REQUESTS).await.unwrap(),
        later
    );
    assert!(
        wait_for_position(&db.system, &[CHANGE_REQUESTS], later, short)
            .await
            .unwrap()
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_audit_feed_flags_everything_of_an_emergency_change(pool: PgPool) {
    let db = db(pool).await;
    let t = TenantId::new_random();
    let (em, calm) = (ChangeRequestId::new_random(), ChangeRequestId::new_random());
    let d = DeviceId::new_random();
    let r = RolloutId::new_random();
    for (id, emergency) in [(em, true), (calm, false)] {
        let cu = *id.as_uuid();
        db.append(
            t,
            &id.stream(),
            vec![
                ev(
                    &created(id, 1, content("x", RiskLevel::Low, emergency)),
                    1,
                    cu,
                ),
                ev(&submitted(&[d], 1), 1, cu),
            ],
        )
        .await;
    }
    // the emergency run's rollout: correlated with the request
    db.append(
        t,
        &r.stream(),
        vec![ev(
            &RolloutStateChanged {
                state: RolloutState::Running,
                reason: None,
            },
            9,
            *em.as_uuid(),
        )],
    )
    .await;
    db.project(&[CHANGE_REQUESTS, AUDIT]).await;
    let feed = audit_feed(&db.app, t, &AuditQuery::default())
        .await
        .unwrap();
    let flagged: Vec<(String, bool)> = feed
        .items
        .iter()
        .map(|a| (a.stream.clone(), a.emergency))
        .collect();
    assert_eq!(
        flagged,
        vec![
            (r.stream().to_string(), true),
            (calm.stream().to_string(), false),
            (calm.stream().to_string(), false),
            (em.stream().to_string(), true),
            (em.stream().to_string(), true),
        ]
    );
}
