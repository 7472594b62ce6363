-- Event store: roles, the append-only events table with row-level security, the global
-- position counter, signed audit checkpoints and subscription checkpoints.
-- See docs/architecture.md for the ordering design.

-- Roles are cluster-wide: create them once, tolerate a concurrent creator.
DO $$ BEGIN
    CREATE ROLE netledger_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$ BEGIN
    CREATE ROLE netledger_system LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$ BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO netledger_app, netledger_system', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO netledger_app, netledger_system;

-- The tenant of the current transaction, set with set_config('netledger.tenant_id', id, true).
-- NULL when unset, which matches no row.
CREATE FUNCTION netledger_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('netledger.tenant_id', true), '')::uuid $$;

-- Refuses UPDATE, DELETE and TRUNCATE for everyone, owner included.
CREATE FUNCTION netledger_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- One row: the last global position handed out and the last recorded-at time. Appenders lock
-- this row (SELECT ... FOR UPDATE) for the few statements that assign positions and insert, so
-- transactions that append commit in position order (see docs/architecture.md).
CREATE TABLE event_log_head (
    id               boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_position    bigint NOT NULL CHECK (last_position >= 0),
    last_recorded_at timestamptz NOT NULL
);
INSERT INTO event_log_head (id, last_position, last_recorded_at) VALUES (true, 0, 'epoch');

CREATE TABLE events (
    position             bigint PRIMARY KEY CHECK (position > 0),
    tenant_prev_position bigint NOT NULL CHECK (tenant_prev_position >= 0 AND tenant_prev_position < position),
    tenant_id            uuid NOT NULL,
    stream               text NOT NULL,
    category             text NOT NULL,
    version              bigint NOT NULL CHECK (version >= 1),
    event_id             uuid NOT NULL,
    event_type           text NOT NULL,
    schema_version       integer NOT NULL CHECK (schema_version >= 1),
    payload              jsonb NOT NULL,
    actor                jsonb NOT NULL,
    causation_id         uuid NOT NULL,
    correlation_id       uuid NOT NULL,
    recorded_at          timestamptz NOT NULL,
    prev_hash            bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash                 bytea NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT events_stream_version UNIQUE (tenant_id, stream, version),
    CONSTRAINT events_event_id UNIQUE (event_id)
);
CREATE INDEX events_category_position ON events (category, position);
CREATE INDEX events_tenant_position ON events (tenant_id, position);
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION netledger_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION netledger_refuse_change();

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY events_app_select ON events FOR SELECT TO netledger_app
    USING (tenant_id = netledger_current_tenant());
CREATE POLICY events_app_insert ON events FOR INSERT TO netledger_app
    WITH CHECK (tenant_id = netledger_current_tenant());
-- The system role (relay, projectors, checkpointer) reads every tenant and writes none.
CREATE POLICY events_system_select ON events FOR SELECT TO netledger_system USING (true);

GRANT SELECT, INSERT ON events TO netledger_app;
GRANT SELECT ON events TO netledger_system;
GRANT SELECT, UPDATE ON event_log_head TO netledger_app;
GRANT SELECT ON event_log_head TO netledger_system;

-- Signed checkpoints (ed25519) over a tenant's events in a range of global positions.
CREATE TABLE audit_checkpoints (
    tenant_id     uuid NOT NULL,
    seq           bigint NOT NULL CHECK (seq >= 1),
    from_position bigint NOT NULL,
    to_position   bigint NOT NULL CHECK (to_position >= from_position),
    event_count   bigint NOT NULL,
    prev_digest   bytea NOT NULL,
    digest        bytea NOT NULL,
    heads         jsonb NOT NULL,
    key_id        text NOT NULL,
    signature     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq)
);
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION netledger_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION netledger_refuse_change();
ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_checkpoints_app_select ON audit_checkpoints FOR SELECT TO netledger_app
    USING (tenant_id = netledger_current_tenant());
CREATE POLICY audit_checkpoints_system_select ON audit_checkpoints FOR SELECT TO netledger_system
    USING (true);
CREATE POLICY audit_checkpoints_system_insert ON audit_checkpoints FOR INSERT TO netledger_system
    WITH CHECK (true);
GRANT SELECT ON audit_checkpoints TO netledger_app;
GRANT SELECT, INSERT ON audit_checkpoints TO netledger_system;

-- Where each global subscriber (relay, projectors) has got to. Read models are written in
-- the same transaction as their row here.
CREATE TABLE subscription_checkpoints (
    name       text PRIMARY KEY,
    position   bigint NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON subscription_checkpoints TO netledger_system;
