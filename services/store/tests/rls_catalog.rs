//! Catalog test: every table with a `tenant_id` column keeps row-level security enabled AND
//! forced on a freshly migrated database (forced, so that even the table's owner is held to
//! the tenant policies). A new tenant table without RLS fails here before it can leak rows
//! across tenants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sqlx::PgPool;

#[sqlx::test(migrator = "netledger_store::MIGRATOR")]
async fn every_tenant_table_has_rls_enabled_and_forced(pool: PgPool) {
    let rows: Vec<(String, String, bool, bool, i64)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid
          WHERE a.attname = 'tenant_id' AND NOT a.attisdropped
            AND c.relkind IN ('r', 'p')
            AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND n.nspname NOT LIKE 'pg_toast%'
          ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        rows.len() >= 5,
        "expected the tenant tables of the schema, found only {rows:?}"
    );
    let bad: Vec<String> = rows
        .iter()
        .filter(|(_, _, enabled, forced, policies)| !enabled || !forced || *policies == 0)
        .map(|(schema, table, enabled, forced, policies)| {
            format!("{schema}.{table} (enabled {enabled}, forced {forced}, policies {policies})")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "tables with a tenant_id column but without row-level security enabled, forced and \
         with a policy: {bad:?}"
    );
}
