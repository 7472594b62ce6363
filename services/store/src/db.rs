//! Database roles and pools. The owner role runs migrations; `netledger_app` is what
//! request handlers and workers use (row-level security, tenant set per transaction);
//! `netledger_system` reads every tenant for the relay, projectors and checkpointer.

use netledger_domain::TenantId;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::StoreError;

/// The database roles the platform connects as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Owns the schema; runs migrations. Never used by request handling.
    Owner,
    /// Tenant-scoped reads and appends under row-level security.
    App,
    /// Cross-tenant reads for the relay, projectors and checkpointer.
    System,
}

impl Role {
    /// The PostgreSQL role name (`None` for the owner, whose name comes from its URL).
    pub fn role_name(self) -> Option<&'static str> {
        match self {
            Self::Owner => None,
            Self::App => Some("netledger_app"),
            Self::System => Some("netledger_system"),
        }
    }
}

/// Connect options for `role`, derived from the owner's options: same server and database,
/// the role's user name, and `password` when given.
pub fn connect_options_for(
    owner: &PgConnectOptions,
    role: Role,
    password: Option<&str>,
) -> PgConnectOptions {
    let mut opts = owner.clone();
    if let Some(name) = role.role_name() {
        opts = opts.username(name);
        if let Some(p) = password {
            opts = opts.password(p);
        }
    }
    opts
}

/// The three pools a process may need.
#[derive(Debug, Clone)]
pub struct Pools {
    /// Tenant-scoped pool (role `netledger_app`).
    pub app: PgPool,
    /// Cross-tenant read pool (role `netledger_system`).
    pub system: PgPool,
}

impl Pools {
    /// Connects the app and system pools from the owner's connect options.
    pub async fn connect(
        owner: &PgConnectOptions,
        app_password: Option<&str>,
        system_password: Option<&str>,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        // No ping before each acquire: a dead connection fails its statement, which callers
        // see as an error and retry, instead of every statement paying an extra round trip.
        let app = PgPoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
            .connect_with(connect_options_for(owner, Role::App, app_password))
            .await
            .map_err(StoreError::db("connect as netledger_app"))?;
        let system = PgPoolOptions::new()
            .max_connections(max_connections.clamp(2, 8))
            .test_before_acquire(false)
            .connect_with(connect_options_for(owner, Role::System, system_password))
            .await
            .map_err(StoreError::db("connect as netledger_system"))?;
        Ok(Self { app, system })
    }
}

/// Begins a transaction scoped to `tenant`: row-level security then only shows and accepts
/// that tenant's rows until the transaction ends.
pub async fn begin_tenant(
    pool: &PgPool,
    tenant: TenantId,
) -> Result<Transaction<'static, Postgres>, StoreError> {
    let mut tx = pool.begin().await.map_err(StoreError::db("begin"))?;
    set_tenant(&mut tx, tenant).await?;
    Ok(tx)
}

/// Sets the tenant of the current transaction.
pub async fn set_tenant(conn: &mut sqlx::PgConnection, tenant: TenantId) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('netledger.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(conn)
        .await
        .map_err(StoreError::db("set tenant"))?;
    Ok(())
}
