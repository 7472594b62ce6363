//! Event store tests against a real PostgreSQL: every test gets a fresh database with the
//! real migrations (`#[sqlx::test]`), and connects as the real roles.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use netledger_domain::audit::{Tamper, verify_tenant_history};
use netledger_domain::{
    Actor, EventId, EventMetadata, ExpectedVersion, NewEvent, StreamName, TenantId,
};
use netledger_store::append::append_in_transaction;
use netledger_store::audit::{checkpoint_all, export_tenant};
use netledger_store::{
    AppendRequest, Direction, EventReader, EventStore, Pools, StoreError, StoreOptions,
    Subscription, begin_tenant,
};
use sqlx::{PgPool, Row};
use uuid::Uuid;

struct Db {
    owner: PgPool,
    app: PgPool,
    system: PgPool,
}

async fn db(owner: PgPool) -> Db {
    let pools = Pools::connect(&owner.connect_options(), None, None, 20)
        .await
        .unwrap();
    Db {
        owner,
        app: pools.app,
        system: pools.system,
    }
}

fn event(kind: &str, n: i64) -> NewEvent {
    NewEvent::new(
        EventId::new_random(),
        kind,
        1,
        serde_json::json!({"n": n, "text": "héllo \"quoted\"", "nested": {"b": 1.5, "a": [true, null]}}),
        EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
    )
    .unwrap()
}

fn stream(name: &str) -> StreamName {
    StreamName::parse(name).unwrap()
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn appends_check_expected_versions_and_report_conflicts(pool: PgPool) {
    let db = db(pool).await;
    let store = EventStore::start(db.app.clone(), StoreOptions::default());
    let t = TenantId::new_random();
    let s = stream("device-1");

    let first = store
        .append(
            t,
            &s,
            ExpectedVersion::NoStream,
            vec![event("Registered", 1), event("Renamed", 2)],
        )
        .await
        .unwrap();
    assert_eq!(first.stream_version, 2);
    assert_eq!(first.positions(), 1..=2);

    let again = store
        .append(
            t,
            &s,
            ExpectedVersion::NoStream,
            vec![event("Registered", 3)],
        )
        .await;
    assert!(
        matches!(
            again,
            Err(StoreError::Conflict {
                actual: 2,
                expected: ExpectedVersion::NoStream,
                ..
            })
        ),
        "{again:?}"
    );
    let stale = store
        .append(t, &s, ExpectedVersion::Exact(1), vec![event("Renamed", 4)])
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { actual: 2, .. })),
        "{stale:?}"
    );
    let ok = store
        .append(t, &s, ExpectedVersion::Exact(2), vec![event("Renamed", 5)])
        .await
        .unwrap();
    assert_eq!((ok.stream_version, ok.first_position), (3, 3));
    let any = store
        .append(t, &s, ExpectedVersion::Any, vec![event("Renamed", 6)])
        .await
        .unwrap();
    assert_eq!(any.stream_version, 4);

    // A conflict wrote nothing: positions stay gapless.
    let reader = EventReader::tenant(db.app.clone(), t);
    let all = reader.read_all(0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        all.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );

    // Re-appending an event id already stored is refused.
    let dup = all[0].clone();
    let replay = NewEvent::new(
        dup.event_id,
        &dup.event_type,
        1,
        dup.payload.clone(),
        dup.metadata.clone(),
    )
    .unwrap();
    let err = store
        .append(t, &stream("device-2"), ExpectedVersion::Any, vec![replay])
        .await;
    assert!(
        matches!(err, Err(StoreError::DuplicateEvent { .. })),
        "{err:?}"
    );

    assert!(matches!(
        store.append(t, &s, ExpectedVersion::Any, vec![]).await,
        Err(StoreError::Invalid(_))
    ));
    let nul = NewEvent::new(
        EventId::new_random(),
        "Bad",
        1,
        serde_json::json!({"x": "a\u{0}b"}),
        EventMetadata::for_command(Actor::system("t"), Uuid::new_v4()),
    )
    .unwrap();
    assert!(matches!(
        store.append(t, &s, ExpectedVersion::Any, vec![nul]).await,
        Err(StoreError::Invalid(_))
    ));
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn reads_streams_categories_and_history_as_of_a_time(pool: PgPool) {
    let db = db(pool).await;
    let store = EventStore::start(db.app.clone(), StoreOptions::default());
    let t = TenantId::new_random();
    for i in 0..5 {
        store
            .append(
                t,
                &stream("device-a"),
                ExpectedVersion::Any,
                vec![event("Polled", i)],
            )
            .await
            .unwrap();
        store
            .append(
                t,
                &stream("change-b"),
                ExpectedVersion::Any,
                vec![event("Proposed", i)],
            )
            .await
            .unwrap();
    }
    let reader = EventReader::tenant(db.app.clone(), t);
    let fwd = reader
        .read_stream(&stream("device-a"), 2, Direction::Forward, 2)
        .await
        .unwrap();
    assert_eq!(
        fwd.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let back = reader
        .read_stream(&stream("device-a"), u64::MAX, Direction::Backward, 3)
        .await
        .unwrap();
    assert_eq!(
        back.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![5, 4, 3]
    );
    let cat = reader.read_category("change", 0, 100).await.unwrap();
    assert_eq!(cat.len(), 5);
    assert!(cat.iter().all(|e| e.category() == "change"));
    assert!(cat.windows(2).all(|w| w[0].position < w[1].position));
    let cat_after = reader
        .read_category("change", cat[2].position, 100)
        .await
        .unwrap();
    assert_eq!(cat_after.len(), 2);

    // As of a time: recorded-at never decreases with position.
    let all = reader.read_all(0, 100).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));
    let cut = all[5].recorded_at;
    let as_of = reader
        .read_stream_as_of(&stream("device-a"), cut)
        .await
        .unwrap();
    assert!(as_of.iter().all(|e| e.recorded_at <= cut));
    assert!(!as_of.is_empty());
    let p = reader.position_as_of(cut).await.unwrap();
    assert!(p >= all[5].position);
    assert_eq!(reader.head_position().await.unwrap(), 10);

    // Payloads come back byte-for-byte canonical (the hash chain verifies).
    let (events, _) = export_tenant(&db.system, t).await.unwrap();
    let key = SigningKey::from_bytes(&[1; 32]);
    verify_tenant_history(&events, &[], key.verifying_key()).unwrap();
}

/// DESIGN invariant 4: with many concurrent writers committing out of order, a live
/// subscriber sees every committed event exactly once and positions only increase.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn concurrent_writers_never_make_a_subscriber_skip(pool: PgPool) {
    let db = Arc::new(db(pool).await);
    let store = EventStore::start(db.app.clone(), StoreOptions::default());
    let tenants = [TenantId::new_random(), TenantId::new_random()];
    const WRITERS: usize = 12;
    const PER_WRITER: usize = 150;

    let reader = EventReader::system(db.system.clone(), None);
    let sub_pool = db.system.clone();
    let subscriber = tokio::spawn(async move {
        let mut sub = Subscription::new(reader, 0, 97).poll_interval(Duration::from_millis(50));
        let mut seen = Vec::new();
        while seen.len() < WRITERS * PER_WRITER {
            let batch = tokio::time::timeout(Duration::from_secs(60), sub.next_batch(&sub_pool))
                .await
                .expect("subscriber stalled")
                .unwrap();
            seen.extend(batch.into_iter().map(|e| (e.position, e.event_id)));
        }
        seen
    });

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let db = db.clone();
        let tenant = tenants[w % 2];
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..PER_WRITER {
                let s = stream(&format!("device-w{w}-{}", i % 7));
                let e = event("Polled", i as i64);
                ids.push(e.event_id());
                if w % 2 == 0 {
                    // Through the group-committing appender.
                    store
                        .append(tenant, &s, ExpectedVersion::Any, vec![e])
                        .await
                        .unwrap();
                } else {
                    // In the writer's own transaction, with a pause before it takes the lock
                    // so transactions interleave and start out of order.
                    let mut tx = begin_tenant(&db.app, tenant).await.unwrap();
                    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
                    if i % 3 == 0 {
                        tokio::time::sleep(Duration::from_micros(200 * (w as u64 % 5))).await;
                    }
                    let req = AppendRequest {
                        tenant,
                        stream: s,
                        expected: ExpectedVersion::Any,
                        events: vec![e],
                    };
                    append_in_transaction(&mut tx, &req).await.unwrap();
                    tx.commit().await.unwrap();
                }
            }
            ids
        }));
    }
    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let seen = subscriber.await.unwrap();
    assert_eq!(seen.len(), WRITERS * PER_WRITER, "exactly once");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "positions only increase"
    );
    let seen_ids: HashSet<_> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(seen_ids, written, "every committed event seen");
    // Gapless: positions are exactly 1..=N.
    assert_eq!(seen.first().unwrap().0, 1);
    assert_eq!(seen.last().unwrap().0, (WRITERS * PER_WRITER) as i64);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn events_cannot_be_updated_or_deleted_by_anyone(pool: PgPool) {
    let db = db(pool).await;
    let store = EventStore::start(db.app.clone(), StoreOptions::default());
    let t = TenantId::new_random();
    store
        .append(
            t,
            &stream("device-1"),
            ExpectedVersion::Any,
            vec![event("Polled", 1)],
        )
        .await
        .unwrap();

    // The application role has no UPDATE/DELETE privilege.
    for sql in [
        "UPDATE events SET payload = '{}'::jsonb",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let mut tx = begin_tenant(&db.app, t).await.unwrap();
        let err = sqlx::query(sql).execute(&mut *tx).await.unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|d| d.code())
            .unwrap_or_default()
            .to_string();
        assert_eq!(code, "42501", "{sql}: {err}");
    }
    // The owner (a superuser here) is refused by the trigger.
    for sql in [
        "UPDATE events SET payload = '{}'::jsonb",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(sql).execute(&db.owner).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.owner)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn a_tenant_cannot_read_count_or_append_into_another_tenants_streams(pool: PgPool) {
    let db = db(pool).await;
    let store = EventStore::start(db.app.clone(), StoreOptions::default());
    let a = TenantId::new_random();
    let b = TenantId::new_random();
    store
        .append(
            b,
            &stream("device-b"),
            ExpectedVersion::Any,
            vec![event("Polled", 1)],
        )
        .await
        .unwrap();
    store
        .append(
            a,
            &stream("device-a"),
            ExpectedVersion::Any,
            vec![event("Polled", 2)],
        )
        .await
        .unwrap();

    let mut tx = begin_tenant(&db.app, a).await.unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, 1, "tenant A counts only its own event");
    let b_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1")
        .bind(b.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(b_rows, 0);
    let b_stream: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE stream = 'device-b'")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(b_stream, 0);
    // Hand-written insert into B's stream through the app role, inside A's transaction.
    let err = sqlx::query(
        "INSERT INTO events (position, tenant_prev_position, tenant_id, stream, category, version, event_id, \
           event_type, schema_version, payload, actor, causation_id, correlation_id, recorded_at, prev_hash, hash) \
         VALUES (100, 0, $1, 'device-b', 'device', 2, gen_random_uuid(), 'Forged', 1, '{}', '{}', \
           gen_random_uuid(), gen_random_uuid(), now(), '\\x00'::bytea || repeat('0', 31)::bytea, \
           '\\x00'::bytea || repeat('0', 31)::bytea)",
    )
    .bind(b.as_uuid())
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();

    // The store API, scoped to A, appending with B's id is impossible: the tenant is the
    // scope. A transaction with no tenant set sees nothing at all.
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.app)
        .await
        .unwrap();
    assert_eq!(none, 0);
    let a_reader = EventReader::tenant(db.app.clone(), a);
    assert!(
        a_reader
            .read_stream(&stream("device-b"), 1, Direction::Forward, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(a_reader.read_all(0, 10).await.unwrap().len(), 1);
    // Checkpoints too.
    let key = SigningKey::from_bytes(&[3; 32]);
    checkpoint_all(&db.system, "k", &key).await.unwrap();
    let mut tx = begin_tenant(&db.app, a).await.unwrap();
    let cps: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(cps, 1);
}

async fn tamper(owner: &PgPool, sql: &str) {
    let mut tx = owner.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
    sqlx::query("ALTER TABLE events ENABLE TRIGGER events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn verify(db: &Db, t: TenantId, key: &SigningKey) -> Result<(), Tamper> {
    let (events, cps) = export_tenant(&db.system, t).await.unwrap();
    let batch = verify_tenant_history(&events, &cps, key.verifying_key());
    // The streamed verification (two events at a time) finds exactly the same.
    let reader = netledger_store::EventReader::system(db.system.clone(), Some(t));
    let mut pages = 0;
    let streamed =
        netledger_store::audit::verify_history(&reader, &cps, &key.verifying_key(), 2, |n| {
            assert!(n <= 2, "a page holds at most two events");
            pages += 1;
        })
        .await
        .unwrap();
    assert_eq!(
        streamed, batch,
        "streamed and whole-history verification agree"
    );
    if batch.is_ok() {
        assert!(
            pages as usize > events.len() / 2,
            "the history was read page by page"
        );
    }
    batch.map(|_| ())
}

/// Item 18: `/audit/verify` verifies page by page (bounded memory), and finds what the
/// whole-history verifier finds.
#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn verification_reads_the_history_page_by_page(pool: PgPool) {
    let db = db(pool).await;
    let store = EventStore::start(db.app.clone(), StoreOptions::default());
    let t = TenantId::new_random();
    let key = SigningKey::from_bytes(&[5; 32]);
    for round in 0..3 {
        for i in 0..40 {
            store
                .append(
                    t,
                    &stream(&format!("device-{}", i % 7)),
                    ExpectedVersion::Any,
                    vec![event("Polled", round * 100 + i)],
                )
                .await
                .unwrap();
        }
        checkpoint_all(&db.system, "k1", &key).await.unwrap();
    }
    let reader = netledger_store::EventReader::tenant(db.app.clone(), t);
    let cps = netledger_store::audit::load_checkpoints(&db.system, Some(t))
        .await
        .unwrap();
    assert_eq!(cps.len(), 3);
    let mut largest = 0;
    let mut pages = 0;
    let report =
        netledger_store::audit::verify_history(&reader, &cps, &key.verifying_key(), 16, |n| {
            largest = largest.max(n);
            pages += 1;
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.events, 120);
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.signed_through, report.last_position);
    assert_eq!(largest, 16, "never more than one page in memory");
    assert_eq!(
        pages,
        120 / 16 + 1 + 1,
        "full pages, the short last one, and the empty end"
    );
    verify(&db, t, &key).await.unwrap();
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_verifier_names_the_first_tampered_position(pool: PgPool) {
    let db = db(pool).await;
    let store = EventStore::start(db.app.clone(), StoreOptions::default());
    let t = TenantId::new_random();
    let other = TenantId::new_random();
    for i in 0..10 {
        store
            .append(
                t,
                &stream(&format!("device-{}", i % 3)),
                ExpectedVersion::Any,
                vec![event("Polled", i)],
            )
            .await
            .unwrap();
        store
            .append(
                other,
                &stream("device-x"),
                ExpectedVersion::Any,
                vec![event("Polled", i)],
            )
            .await
            .unwrap();
    }
    let key = SigningKey::from_bytes(&[5; 32]);
    let cps = checkpoint_all(&db.system, "k1", &key).await.unwrap();
    assert_eq!(cps.len(), 2);
    for i in 10..12 {
        store
            .append(
                t,
                &stream("device-0"),
                ExpectedVersion::Any,
                vec![event("Polled", i)],
            )
            .await
            .unwrap();
    }
    verify(&db, t, &key).await.unwrap();
    // t's events are at odd positions 1, 3, ..., 19, then 21, 22.

    // Modified.
    tamper(
        &db.owner,
        "UPDATE events SET payload = '{\"n\": 99}' WHERE position = 7",
    )
    .await;
    assert_eq!(
        verify(&db, t, &key).await.unwrap_err(),
        Tamper::Modified { position: 7 }
    );
}

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn the_verifier_detects_removed_reordered_inserted_and_truncated_events(pool: PgPool) {
    let db = db(pool).await;
    let store = EventStore::start(db.app.clone(), StoreOptions::default());
    let t = TenantId::new_random();
    for i in 0..10 {
        store
            .append(
                t,
                &stream(&format!("device-{}", i % 3)),
                ExpectedVersion::Any,
                vec![event("Polled", i)],
            )
            .await
            .unwrap();
    }
    let key = SigningKey::from_bytes(&[5; 32]);
    checkpoint_all(&db.system, "k1", &key).await.unwrap();
    verify(&db, t, &key).await.unwrap();

    // Removed (middle).
    let snapshot: Vec<(i64, String)> =
        sqlx::query("SELECT position, payload::text FROM events ORDER BY position")
            .fetch_all(&db.owner)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(snapshot.len(), 10);
    tamper(&db.owner, "CREATE TABLE saved AS SELECT * FROM events").await;

    tamper(&db.owner, "DELETE FROM events WHERE position = 4").await;
    assert_eq!(verify(&db, t, &key).await.unwrap_err().position(), 4);
    restore(&db.owner).await;
    verify(&db, t, &key).await.unwrap();

    // Reordered: two events swap their positions.
    tamper(
        &db.owner,
        "UPDATE events SET position = 1000 WHERE position = 5; \
         UPDATE events SET position = 5, tenant_prev_position = 4 WHERE position = 6; \
         UPDATE events SET position = 6, tenant_prev_position = 5 WHERE position = 1000",
    )
    .await;
    assert_eq!(verify(&db, t, &key).await.unwrap_err().position(), 5);
    restore(&db.owner).await;

    // Inserted: a copy of an event placed at a new position.
    tamper(
        &db.owner,
        "INSERT INTO events SELECT 11, 10, tenant_id, stream, category, version + 100, gen_random_uuid(), event_type, \
         schema_version, payload, actor, causation_id, correlation_id, recorded_at, prev_hash, hash FROM events WHERE position = 3",
    )
    .await;
    assert_eq!(verify(&db, t, &key).await.unwrap_err().position(), 11);
    restore(&db.owner).await;

    // Truncated: the newest signed events are deleted; only the checkpoint can tell.
    tamper(&db.owner, "DELETE FROM events WHERE position >= 9").await;
    let err = verify(&db, t, &key).await.unwrap_err();
    assert!(matches!(err, Tamper::Checkpoint { .. }), "{err}");
    assert!(err.position() >= 9, "{err}");
}

async fn restore(owner: &PgPool) {
    tamper(owner, "DELETE FROM events").await;
    tamper(owner, "INSERT INTO events SELECT * FROM saved").await;
}
