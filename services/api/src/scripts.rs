//! Change scripts with secret values (issue #15 item 9): what the API journals is the
//! masked script (`rosconfig::mask_script`); the real one is sealed under the credential
//! keys (`netledger_store::sealed`) and referenced by id from the workflow input or the
//! change request's event, for the push step to decrypt in memory. Used by the config push,
//! rollout and change-request routes.

use netledger_domain::TenantId;
use netledger_store::begin_tenant;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// A script as the API keeps it.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The script with its secret values masked (what is journaled and shown).
    pub masked: String,
    /// The sealed real script, when masking changed it.
    pub sealed: Option<Uuid>,
    /// Whether the sealing is still to be written ([`Accepted::seal`]).
    real: Option<String>,
}

impl Accepted {
    /// Masks `script`: refuses a secret property whose value is the mask itself (the
    /// script would set the secret to the word `MASKED`, as when a masked script shown by
    /// the API is sent back), and names a sealed id when there is something to seal.
    pub fn of(script: &str) -> ApiResult<Self> {
        let m = rosconfig::mask_script(script);
        if !m.placeholders.is_empty() {
            return Err(placeholder_error(&m.placeholders));
        }
        Ok(Self::masked(script, m))
    }

    fn masked(script: &str, m: rosconfig::MaskedScript) -> Self {
        if m.has_secrets() {
            Self {
                masked: m.text,
                sealed: Some(Uuid::now_v7()),
                real: Some(script.to_owned()),
            }
        } else {
            Self {
                masked: m.text,
                sealed: None,
                real: None,
            }
        }
    }

    /// For an edit of content that had `previous` (masked text, sealed id): the masked text
    /// sent back unchanged keeps the sealed script it stands for; anything else is a new
    /// script ([`Accepted::of`]).
    pub fn edited(script: &str, previous: Option<(&str, Option<Uuid>)>) -> ApiResult<Self> {
        if let Some((masked, sealed)) = previous
            && masked == script
        {
            return Ok(Self {
                masked: masked.to_owned(),
                sealed,
                real: None,
            });
        }
        Self::of(script)
    }

    /// Writes the sealed real script, if there is a new one (credential keys needed: 503
    /// without them).
    pub async fn seal(&self, state: &ApiState, tenant: TenantId) -> ApiResult<()> {
        let (Some(real), Some(id)) = (&self.real, self.sealed) else {
            return Ok(());
        };
        let keys = state.devices()?.keys();
        let mut tx = begin_tenant(&state.pools().app, tenant).await?;
        netledger_store::sealed::seal(&mut tx, keys, tenant, id, real)
            .await
            .map_err(|e| ApiError::internal(format!("seal the script: {e}")))?;
        tx.commit().await?;
        Ok(())
    }
}

fn placeholder_error(keys: &[String]) -> ApiError {
    let names: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    ApiError::validation(format!(
        "the script sets {} to `{}`, the placeholder the API shows instead of secret values; \
         write the real value (a masked script cannot be pushed)",
        names.join(", "),
        rosconfig::MASK
    ))
}
