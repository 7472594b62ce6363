-- Identity lookup tables of the API's command side: tenants, users (with their password
-- hashes), API keys (hashed), refresh tokens (hashed) and idempotency records.
--
-- Tenants, users and API keys are event-sourced (streams tenant-<id>, user-<id>,
-- session-<id>); these rows are written in the same transaction as their events and hold
-- what the events must not carry (hashes) plus what a request needs to look up quickly.
-- `version` is the stream version of the row's stream: the ETag of the resource.
--
-- The app role sees only the current tenant's rows. The system role reads every row: login
-- (by e-mail), refresh (by token hash) and API key authentication happen before the tenant
-- is known, and the super admin lists tenants.

CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    version    bigint NOT NULL CHECK (version >= 1),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenants_app ON tenants FOR ALL TO netledger_app
    USING (id = netledger_current_tenant()) WITH CHECK (id = netledger_current_tenant());
CREATE POLICY tenants_system_select ON tenants FOR SELECT TO netledger_system USING (true);
GRANT SELECT, INSERT, UPDATE ON tenants TO netledger_app;
GRANT SELECT ON tenants TO netledger_system;

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    email         text NOT NULL CHECK (email = lower(email)),
    display_name  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'approver', 'auditor',
                                                'tenant_admin', 'super_admin')),
    -- argon2id PHC string; never leaves this table.
    password_hash text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    version       bigint NOT NULL CHECK (version >= 1),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
-- E-mail addresses are unique across tenants: login names the user by address alone.
CREATE UNIQUE INDEX users_email ON users (email);
CREATE INDEX users_tenant ON users (tenant_id, id);
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY users_app ON users FOR ALL TO netledger_app
    USING (tenant_id = netledger_current_tenant())
    WITH CHECK (tenant_id = netledger_current_tenant());
CREATE POLICY users_system_select ON users FOR SELECT TO netledger_system USING (true);
GRANT SELECT, INSERT, UPDATE ON users TO netledger_app;
GRANT SELECT ON users TO netledger_system;

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    name        text NOT NULL,
    prefix      text NOT NULL,
    -- SHA-256 of the whole key. Keys carry 256 random bits, so a fast hash is enough: no
    -- dictionary to slow down, and every request checks one.
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    scopes      text[] NOT NULL,
    created_by  uuid,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY api_keys_app ON api_keys FOR ALL TO netledger_app
    USING (tenant_id = netledger_current_tenant())
    WITH CHECK (tenant_id = netledger_current_tenant());
CREATE POLICY api_keys_system_select ON api_keys FOR SELECT TO netledger_system USING (true);
GRANT SELECT, INSERT, UPDATE ON api_keys TO netledger_app;
GRANT SELECT ON api_keys TO netledger_system;

-- Refresh tokens: one row per token, a family per login. A token is used once; presenting
-- a used token again revokes the whole family (reuse detection).
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    user_id     uuid NOT NULL REFERENCES users (id),
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (tenant_id, family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (tenant_id, user_id);
ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY refresh_tokens_app ON refresh_tokens FOR ALL TO netledger_app
    USING (tenant_id = netledger_current_tenant())
    WITH CHECK (tenant_id = netledger_current_tenant());
CREATE POLICY refresh_tokens_system_select ON refresh_tokens FOR SELECT TO netledger_system
    USING (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_tokens TO netledger_app;
GRANT SELECT ON refresh_tokens TO netledger_system;

-- Idempotency-Key records: the first response to a POST that starts work, replayed for a
-- retry with the same key and body. `status` is NULL while the first request runs;
-- `locked_until` lets a retry take over from a process that died mid-request.
CREATE TABLE idempotency_keys (
    tenant_id    uuid NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    operation    text NOT NULL,
    request_hash bytea NOT NULL,
    status       smallint,
    response     text,
    etag         text,
    created_at   timestamptz NOT NULL,
    locked_until timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY idempotency_keys_app ON idempotency_keys FOR ALL TO netledger_app
    USING (tenant_id = netledger_current_tenant())
    WITH CHECK (tenant_id = netledger_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO netledger_app;
