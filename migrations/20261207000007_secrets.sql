-- Issue #15 (secrets helper).
--
-- Item 10: `idempotency_keys.request_hash` was an unsalted SHA-256 of the request body
-- (device passwords included) and rows were kept for ever. The API now stores an HMAC under
-- a server key and purges rows older than its idempotency window. Rows written before hold
-- the old hashes: they are dropped (TRUNCATE is not subject to row-level security; a retry
-- of a request sent before the upgrade runs again, where the engine's own key still makes a
-- workflow start exactly-once). The system role may see which tenants have expired rows
-- (the periodic purge deletes them per tenant through the app role).
TRUNCATE idempotency_keys;
CREATE POLICY idempotency_keys_system_select ON idempotency_keys FOR SELECT TO netledger_system
    USING (true);
GRANT SELECT ON idempotency_keys TO netledger_system;

-- Item 9: the real text of change scripts with secret values, encrypted under the
-- device-credential keys (AES-256-GCM; associated data: tenant, id, key id). Events, read
-- models, NATS and the UI see only the masked script and this row's id; the workflow step
-- that validates or applies the script decrypts it in memory. Rows are never updated.
CREATE TABLE sealed_scripts (
    tenant_id  uuid NOT NULL,
    id         uuid NOT NULL,
    key_id     text NOT NULL CHECK (length(key_id) BETWEEN 1 AND 100),
    nonce      bytea NOT NULL CHECK (length(nonce) = 12),
    ciphertext bytea NOT NULL CHECK (length(ciphertext) >= 16),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
ALTER TABLE sealed_scripts ENABLE ROW LEVEL SECURITY;
ALTER TABLE sealed_scripts FORCE ROW LEVEL SECURITY;
CREATE POLICY sealed_scripts_app_all ON sealed_scripts FOR ALL TO netledger_app
    USING (tenant_id = netledger_current_tenant())
    WITH CHECK (tenant_id = netledger_current_tenant());
GRANT SELECT, INSERT ON sealed_scripts TO netledger_app;
