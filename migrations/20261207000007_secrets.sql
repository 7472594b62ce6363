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
