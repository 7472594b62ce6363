//! Security events (`security-<tenant id>` stream, `docs/auditing.md`): the adapters that
//! see a failed login, an API key's first use of the day, an audit download or a
//! verification run append it here, so nothing about identity bypasses the event store.

use std::collections::HashMap;
use std::sync::Mutex;

use netledger_domain::event::{EventMetadata, ExpectedVersion};
use netledger_domain::identity::security::{SecurityEvent, security_stream};
use netledger_domain::ids::TenantId;
use netledger_store::begin_tenant;
use time::Date;
use uuid::Uuid;

use crate::accounts::append_tx;
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// Appends `event` to the tenant's security stream in its own transaction.
pub async fn record(
    state: &ApiState,
    tenant: TenantId,
    event: SecurityEvent,
    meta: &EventMetadata,
) -> ApiResult<()> {
    let stream = security_stream(tenant)
        .map_err(|e| ApiError::internal(format!("security stream name: {e}")))?;
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    append_tx(
        &mut tx,
        tenant,
        &stream,
        ExpectedVersion::Any,
        &[event],
        meta,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Which API keys this process has recorded as used today (one `ApiKeyUsed` per key, day
/// and API process).
#[derive(Debug, Default)]
pub struct KeyUseDays {
    seen: Mutex<HashMap<Uuid, Date>>,
}

/// Keys remembered at most (the map is cleared past it; a key then records once more).
const MAX_KEYS: usize = 100_000;

impl KeyUseDays {
    /// Whether `key`'s use on `day` is still to be recorded.
    pub fn is_new(&self, key: Uuid, day: Date) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&key) != Some(&day)
    }

    /// Notes that `key`'s use on `day` was recorded.
    pub fn recorded(&self, key: Uuid, day: Date) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_KEYS {
            seen.clear();
        }
        seen.insert(key, day);
    }
}
