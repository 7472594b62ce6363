#!/usr/bin/env python3
"""Reinstates, in a clean checkout, the old mechanism each test of issue #15's items 12, 13
and 15-18 guards, so the tests can be shown to fail on it (docs/security.md, "Shown failing on
the old mechanisms"). Each edit below puts back what the code did before the fix, in the
current code's shape (the old files do not build against today's interfaces). Then run:

  cargo nextest run --workspace --no-fail-fast -E 'test(forwarded_for_is_read_from_the_right)
    | test(keys_are_bounded_in_size_and_number) | test(the_password_gate_queues_then_refuses)
    | test(slow_request_heads_are_cut_off) | test(verification_reads_the_history_page_by_page)
    | test(two_hundred_live_clients) | test(live_streams_are_limited_per_principal)
    | test(forged_nats_messages) | test(readiness_reports_status_not_error_text)
    | test(metrics_collapse_odd_methods) | test(api_key_lookups_are_cached_and_rate_limited)
    | test(firmware_packages_are_per_tenant) | test(firmware_is_served_only_pinned)
    | test(the_api_role_never_reads_the_owner_url_or_the_signing_key)
    | test(derived_role_options_never_carry_the_owner_password)'

every one of them fails; `git checkout -- services workflows` restores the tree.
"""
import os
import subprocess
import sys
R = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..') + '/'
# Restoring is `git checkout`, which would also discard uncommitted work: refuse a dirty tree.
dirty = subprocess.run(['git', '-C', R, 'status', '--porcelain', '--', 'services', 'workflows'],
                       capture_output=True, text=True, check=True).stdout
if dirty:
    sys.exit('old-mechanisms: services/ or workflows/ has uncommitted changes (restoring with '
             '`git checkout` would lose them); commit or stash them first:\n' + dirty)
def sub(path, old, new):
    p = R + path
    s = open(p).read()
    assert s.count(old) == 1, (path, old[:60])
    open(p, 'w').write(s.replace(old, new))

# 18a: the left-most X-Forwarded-For entry (old `forwarded_for`: first entry when trusted).
sub('services/api/src/ratelimit.rs', '''    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }''', '''    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    if let Some(first) = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return first;
    }''')
# 18b: limiter keys unbounded in number (old: a HashMap with no cap).
sub('services/api/src/ratelimit.rs', '''            if map.len() >= self.max_keys {''', '''            if map.len() >= usize::MAX {''')
# 18c: no cap on concurrent password hashes (old: none).
sub('services/api/src/ratelimit.rs', '''        let admission = self.admission.clone().try_acquire_owned().map_err(|_| {''',
    '''        let admission = Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned().map_err(|_| {''')
# 18d: no header read timeout, no connection cap (old: axum::serve).
sub('services/api/src/lib.rs', '''    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));''',
    '''    let _ = max_connections;
    let slots = Arc::new(tokio::sync::Semaphore::new(1 << 20));''')
sub('services/api/src/lib.rs', '''            .header_read_timeout(header_timeout);''', '''            .header_read_timeout(header_timeout * 1000);''')
# 15a: each live stream without NATS holds a pool connection while it waits (old fallback).
sub('services/api/src/routes/live.rs', '''        let mut notified = None;
        let idle = self.state.config().sse_keepalive;''', '''        let _held = if nats.is_none() {
            self.state.pools().app.acquire().await.ok()
        } else {
            None
        };
        let mut notified = None;
        let idle = self.state.config().sse_keepalive;''')
# 15b: no limit on open streams (old: none).
sub('services/api/src/routes/live.rs', "if c.process >= self.per_process {", "if usize::MAX == c.process {")
sub('services/api/src/routes/live.rs', "if c.tenants.get(&p.tenant).copied().unwrap_or(0) >= self.per_tenant {", "if false {")
sub('services/api/src/routes/live.rs', "if c.principals.get(&key).copied().unwrap_or(0) >= self.per_principal {", "if false {")
# 16: NATS payloads decoded and forwarded (old `follow_nats`).
sub('services/api/src/routes/live.rs', '''                m = next_message(&mut nats) => match m {
                    Ok(()) => {''', '''                m = next_payload(&mut nats) => match m {
                    Ok(payload) => {
                        if let Ok(event) = serde_json::from_slice::<RecordedEvent>(&payload)
                            && event.tenant_id == self.tenant
                            && event.position > self.last
                        {
                            if self.send(&event).await.is_err() {
                                return;
                            }
                            continue;
                        }''')
sub('services/api/src/routes/live.rs', '''/// The next NATS message's arrival (its content is ignored); pending forever without NATS.''',
'''async fn next_payload(nats: &mut Option<push::Ordered>) -> Result<Vec<u8>, String> {
    match nats.as_mut() {
        Some(n) => match n.next().await {
            Some(Ok(m)) => Ok(m.payload.to_vec()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("consumer ended".to_owned()),
        },
        None => std::future::pending().await,
    }
}

/// The next NATS message's arrival (its content is ignored); pending forever without NATS.''')
# 17a: readiness says the error text (old: the error's Display).
sub('services/api/src/routes/health.rs', '''            check("database", false, "failed".to_owned())''', '''            check("database", false, e.to_string())''')
# 17b: odd methods keep their own metrics label (old: `method.as_str()`).
sub('services/api/src/metrics.rs', '''        _ => "other",''', '''        _ => method.as_str().to_owned().leak(),''')
# 13a: one firmware cache for every tenant (old: `<cache>/<version>/<file>`).
sub('services/store/src/firmware.rs', '''    root.join("tenants").join(tenant.as_uuid().to_string())''', '''    let _ = tenant;
    root.join("tenants").join("shared")''')
# 13b: the package server serves without a valid token (old: no token at all).
sub('workflows/netops/src/workflows/cache.rs', '''        self.mac(&grant)?.verify_slice(&mac).ok()?;
        (now <= expires).then_some(grant)''', '''        let _ = (mac, now);
        Some(grant)''')
# 17c: every API-key request looks the key up in the database, unlimited (old: no cache).
sub('services/api/src/keycache.rs', '''        let k = digest(token);
        let now = self.clock.now();''', '''        if std::hint::black_box(true) {
            return lookup.await;
        }
        let k = digest(token);
        let now = self.clock.now();''')
# 18e: verification reads the whole history at once (old `/audit/verify`).
sub('services/store/src/audit.rs', '''        let batch = reader.read_all(after, page.max(1)).await?;''', '''        let _ = page;
        let batch = reader.read_all(after, i64::MAX).await?;''')
# 12a: the API derives its public key from the signing key (old: every process loaded it).
sub('services/netledger/src/roles.rs', '''pub fn verifying_key(config: &Config) -> anyhow::Result<VerifyingKey> {
    let audit = &config.audit;''', '''pub fn verifying_key(config: &Config) -> anyhow::Result<VerifyingKey> {
    if std::hint::black_box(true) {
        return Ok(signing_key(config)?.verifying_key());
    }
    let audit = &config.audit;''')
# 12b: a role without its own URL connects with the owner's password (old: reused it).
sub('services/netledger/src/roles.rs', '''    let mut options = PgConnectOptions::from_str(&crate::config::without_userinfo(owner.expose()))''',
    '''    let mut options = PgConnectOptions::from_str(owner.expose())''')
