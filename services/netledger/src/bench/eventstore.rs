//! `netledger bench eventstore`: append throughput and latency with 1, 8 and 32 writers to
//! distinct streams of one category, batched appends, one contended stream, and catch-up
//! subscription read rate. Everything goes through the public store API against a scratch
//! database with the real migrations and roles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use netledger_domain::{
    Actor, EventId, EventMetadata, ExpectedVersion, NewEvent, StreamName, TenantId,
};
use netledger_store::{EventReader, EventStore, Pools, StoreError, StoreOptions, Subscription};
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use netledger_testkit::ScratchDb;

/// Options.
#[derive(Debug, Clone, clap::Args)]
pub struct EventstoreArgs {
    /// PostgreSQL server to measure (a scratch database is created there and dropped after).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep the scratch database.
    #[arg(long)]
    pub keep: bool,
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct EventstoreReport {
    /// Single-event appends/s, 1 writer.
    pub append_w1_per_s: f64,
    /// p99 latency, 1 writer.
    pub append_w1_p99_ms: f64,
    /// Single-event appends/s, 8 writers.
    pub append_w8_per_s: f64,
    /// p99 latency, 8 writers.
    pub append_w8_p99_ms: f64,
    /// Single-event appends/s, 32 writers (distinct streams, one category).
    pub append_w32_per_s: f64,
    /// p50 latency, 32 writers.
    pub append_w32_p50_ms: f64,
    /// p99 latency, 32 writers.
    pub append_w32_p99_ms: f64,
    /// Events/s with 100-event appends (4 writers).
    pub batch100_events_per_s: f64,
    /// Successful appends/s on one stream contended by 8 writers.
    pub hot_stream_ok_per_s: f64,
    /// Conflicts seen on the hot stream.
    pub hot_stream_conflicts: u64,
    /// Catch-up subscription read rate.
    pub read_events_per_s: f64,
    /// Events read by the subscription.
    pub read_events: u64,
}

fn event(n: u64) -> Result<NewEvent, netledger_domain::DecodeError> {
    let payload = serde_json::json!({
        "device_id": "3f1c2a9e-5d1b-4f7a-9c1e-2b6d8e4f0a11",
        "status": "online",
        "version": "7.16.2",
        "seq": n,
    });
    NewEvent::new(
        EventId::new_v7(),
        "DeviceStateChanged",
        1,
        payload,
        EventMetadata::for_command(Actor::system("bench"), Uuid::new_v4()),
    )
}

struct Run {
    ops: u64,
    events: u64,
    conflicts: u64,
    latency: Histogram<u64>,
    elapsed: Duration,
}

async fn writers(
    store: &EventStore,
    tenant: TenantId,
    n: usize,
    per_call: usize,
    hot: bool,
    seconds: u64,
) -> anyhow::Result<Run> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let merged = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let run_id = Uuid::new_v4().simple().to_string();
    for w in 0..n {
        let store = store.clone();
        let merged = merged.clone();
        let name = if hot {
            format!("bench-hot{run_id}")
        } else {
            format!("bench-{run_id}w{w}")
        };
        tasks.push(tokio::spawn(async move {
            let stream = StreamName::parse(&name)?;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut ops, mut events, mut conflicts, mut version, mut seq) =
                (0u64, 0u64, 0u64, 0u64, 0u64);
            while Instant::now() < deadline {
                let batch = (0..per_call)
                    .map(|_| {
                        seq += 1;
                        event(seq)
                    })
                    .collect::<Result<Vec<NewEvent>, _>>()?;
                let expected = if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                };
                let t = Instant::now();
                match store.append(tenant, &stream, expected, batch).await {
                    Ok(outcome) => {
                        hist.saturating_record(t.elapsed().as_micros() as u64);
                        version = outcome.stream_version;
                        ops += 1;
                        events += per_call as u64;
                    }
                    Err(StoreError::Conflict { actual, .. }) if hot => {
                        conflicts += 1;
                        version = actual;
                    }
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            merged.lock().await.add(&hist)?;
            anyhow::Ok((ops, events, conflicts))
        }));
    }
    let (mut ops, mut events, mut conflicts) = (0, 0, 0);
    for t in tasks {
        let (o, e, c) = t.await??;
        ops += o;
        events += e;
        conflicts += c;
    }
    let elapsed = start.elapsed();
    let latency = merged.lock().await.clone();
    Ok(Run {
        ops,
        events,
        conflicts,
        latency,
        elapsed,
    })
}

fn per_s(n: u64, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64() * 10.0).round() / 10.0
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0
}

/// Runs the benchmark and prints the result.
pub async fn run(args: EventstoreArgs) -> anyhow::Result<EventstoreReport> {
    let db = ScratchDb::create(&args.database_url).await?;
    let result = measure(&db, &args).await;
    if !args.keep {
        db.drop_db().await?;
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(report)
}

async fn measure(db: &ScratchDb, args: &EventstoreArgs) -> anyhow::Result<EventstoreReport> {
    let pools = Pools::connect(&db.owner, None, None, 8).await?;
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let tenant = TenantId::new_random();
    let s = args.seconds;
    let w1 = writers(&store, tenant, 1, 1, false, s).await?;
    let w8 = writers(&store, tenant, 8, 1, false, s).await?;
    let w32 = writers(&store, tenant, 32, 1, false, s).await?;
    let batch = writers(&store, tenant, 4, 100, false, s).await?;
    let hot = writers(&store, tenant, 8, 1, true, s).await?;

    // Catch-up read of everything written above, as the relay and projectors read it.
    let reader = EventReader::system(pools.system.clone(), None);
    let head = reader.head_position().await?;
    let mut sub = Subscription::new(reader, 0, 5_000);
    let deadline = Instant::now() + Duration::from_secs(s.max(1) * 4);
    let start = Instant::now();
    let mut read = 0u64;
    while sub.position() < head && Instant::now() < deadline {
        match sub.try_next_batch().await? {
            Some(batch) => read += batch.len() as u64,
            None => break,
        }
    }
    let read_elapsed = start.elapsed();

    Ok(EventstoreReport {
        append_w1_per_s: per_s(w1.ops, w1.elapsed),
        append_w1_p99_ms: ms(&w1.latency, 0.99),
        append_w8_per_s: per_s(w8.ops, w8.elapsed),
        append_w8_p99_ms: ms(&w8.latency, 0.99),
        append_w32_per_s: per_s(w32.ops, w32.elapsed),
        append_w32_p50_ms: ms(&w32.latency, 0.5),
        append_w32_p99_ms: ms(&w32.latency, 0.99),
        batch100_events_per_s: per_s(batch.events, batch.elapsed),
        hot_stream_ok_per_s: per_s(hot.ops, hot.elapsed),
        hot_stream_conflicts: hot.conflicts,
        read_events_per_s: per_s(read, read_elapsed),
        read_events: read,
    })
}

fn print_table(r: &EventstoreReport) {
    println!("{:<52} {:>14}", "scenario", "result");
    let rows: [(&str, String); 12] = [
        (
            "single-event appends, 1 writer (/s)",
            format!("{:.0}", r.append_w1_per_s),
        ),
        ("  p99 latency (ms)", format!("{:.2}", r.append_w1_p99_ms)),
        (
            "single-event appends, 8 writers (/s)",
            format!("{:.0}", r.append_w8_per_s),
        ),
        ("  p99 latency (ms)", format!("{:.2}", r.append_w8_p99_ms)),
        (
            "single-event appends, 32 writers, one category (/s)",
            format!("{:.0}", r.append_w32_per_s),
        ),
        ("  p50 latency (ms)", format!("{:.2}", r.append_w32_p50_ms)),
        ("  p99 latency (ms)", format!("{:.2}", r.append_w32_p99_ms)),
        (
            "batched appends, 100/call, 4 writers (events/s)",
            format!("{:.0}", r.batch100_events_per_s),
        ),
        (
            "hot stream, 8 writers: successes (/s)",
            format!("{:.0}", r.hot_stream_ok_per_s),
        ),
        (
            "hot stream: conflicts (total)",
            r.hot_stream_conflicts.to_string(),
        ),
        (
            "catch-up subscription read (events/s)",
            format!("{:.0}", r.read_events_per_s),
        ),
        ("  events read", r.read_events.to_string()),
    ];
    for (name, value) in rows {
        println!("{name:<52} {value:>14}");
    }
}
