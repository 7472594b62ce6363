//! Starting a workflow from its kind name and JSON input in tests (the scenarios are tables
//! of kinds): decodes the input as the kind's card input and starts through the card.

use netledger_domain::TenantId;
use netledger_domain::workflow::card::{
    Backup, ConfigPush, ConfigRestore, FirmwareUpgrade, Rollout, WorkflowCard,
};
use netledger_engine::{Engine, EngineError, StartOptions, Started};
use serde_json::Value;

async fn start_card<C: WorkflowCard>(
    engine: &Engine,
    tenant: TenantId,
    input: Value,
    options: StartOptions,
) -> Result<Started, EngineError> {
    let input: C::Input = serde_json::from_value(input)
        .map_err(|e| EngineError::Invalid(format!("not a {} input: {e}", C::KIND)))?;
    engine.start::<C>(tenant, input, options).await
}

/// Starts card `kind` with `input` (JSON of the card's input).
pub async fn start_kind(
    engine: &Engine,
    tenant: TenantId,
    kind: &str,
    input: Value,
    options: StartOptions,
) -> Result<Started, EngineError> {
    match kind {
        ConfigPush::KIND => start_card::<ConfigPush>(engine, tenant, input, options).await,
        FirmwareUpgrade::KIND => {
            start_card::<FirmwareUpgrade>(engine, tenant, input, options).await
        }
        Backup::KIND => start_card::<Backup>(engine, tenant, input, options).await,
        Rollout::KIND => start_card::<Rollout>(engine, tenant, input, options).await,
        ConfigRestore::KIND => start_card::<ConfigRestore>(engine, tenant, input, options).await,
        other => Err(EngineError::Invalid(format!("no card is named {other}"))),
    }
}
