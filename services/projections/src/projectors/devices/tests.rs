//! The devices read model agrees with the device aggregate: any sequence of accepted device
//! commands and observations, folded by the domain's `DeviceState::evolve` and by this
//! projector's in-memory fold (the row it would write), gives the same device.

use netledger_domain::device::{DeviceEvent, DeviceState, Status};
use netledger_domain::testing::device::{arb_command, id};
use netledger_domain::{
    Actor, EventEnum, EventId, EventMetadata, RecordedEvent, StreamName, TenantId,
};
use proptest::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{DeviceRow, DevicesProjector, tag_texts, transport_columns};

/// The stored form of a decided event, as the projector receives it.
fn recorded(event: &DeviceEvent, tenant: TenantId, version: i64) -> RecordedEvent {
    let new = event
        .to_new_event(
            EventId::new_random(),
            EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
        )
        .unwrap();
    RecordedEvent {
        position: version,
        tenant_prev_position: version - 1,
        tenant_id: tenant,
        stream: StreamName::parse(id().stream().as_str()).unwrap(),
        version,
        event_id: new.event_id(),
        event_type: new.event_type().to_owned(),
        schema_version: new.schema_version(),
        payload: new.payload().clone(),
        metadata: new.metadata().clone(),
        recorded_at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(version),
        prev_hash: [0; 32],
        hash: [0; 32],
    }
}

fn agree(state: &DeviceState, row: Option<&DeviceRow>) -> Result<(), TestCaseError> {
    let Some(reg) = &state.registration else {
        prop_assert!(row.is_none(), "a row without a registration");
        return Ok(());
    };
    let Some(row) = row else {
        return Err(TestCaseError::fail("a registration without a row"));
    };
    prop_assert_eq!(row.name.as_str(), reg.name.as_str());
    prop_assert_eq!(row.host.as_str(), reg.endpoint.host.as_str());
    prop_assert_eq!(row.port, i32::from(reg.endpoint.port));
    prop_assert_eq!(
        (row.transport.clone(), row.tls_fingerprint.clone()),
        transport_columns(&reg.endpoint.transport)
    );
    prop_assert_eq!(&row.username, &reg.username);
    prop_assert_eq!(&row.credentials_key_id, &reg.credentials_key_id);
    prop_assert_eq!(&row.tags, &tag_texts(&reg.tags));
    prop_assert_eq!(
        i64::from(row.poll_interval_secs),
        i64::from(reg.poll_interval_secs)
    );
    prop_assert_eq!(row.removed_at.is_some(), state.removed);
    let status = match state.status {
        Status::Unknown => "unknown",
        Status::Online => "online",
        Status::Offline => "offline",
    };
    prop_assert_eq!(row.status, status);
    prop_assert_eq!(&row.offline_reason, &state.offline_reason);
    let facts = state.facts.clone();
    prop_assert_eq!(&row.identity, &facts.as_ref().map(|f| f.identity.clone()));
    prop_assert_eq!(
        &row.routeros_version,
        &facts.as_ref().map(|f| f.version.clone())
    );
    prop_assert_eq!(
        &row.board_name,
        &facts.as_ref().map(|f| f.board_name.clone())
    );
    prop_assert_eq!(
        &row.architecture,
        &facts.as_ref().map(|f| f.architecture.clone())
    );
    prop_assert_eq!(
        &row.routerboard_firmware,
        &facts.and_then(|f| f.routerboard_firmware)
    );
    prop_assert_eq!(row.breaker == "open", state.polling_suspended);
    prop_assert_eq!(
        (
            row.last_snapshot_commit.clone(),
            row.last_snapshot_sha256.clone()
        ),
        state.last_snapshot.clone().unzip()
    );
    prop_assert_eq!(u64::try_from(row.stream_version).ok(), Some(state.version));
    Ok(())
}

proptest! {
    #[test]
    fn the_read_model_agrees_with_the_aggregate(
        commands in prop::collection::vec(arb_command(), 0..40),
    ) {
        let tenant = TenantId::from_uuid(Uuid::from_u128(1));
        let key = (*tenant.as_uuid(), *id().as_uuid());
        let mut state = DeviceState::default();
        let mut projector = DevicesProjector::default();
        for cmd in &commands {
            let Ok(events) = state.decide(cmd) else {
                continue;
            };
            for e in &events {
                state.evolve(e);
                let version = i64::try_from(state.version).unwrap();
                projector.fold(&recorded(e, tenant, version)).unwrap();
            }
            agree(&state, projector.rows.get(&key))?;
        }
    }
}
