-- The poller's work queue and coordination (docs/poller.md).
--
-- poller_devices: what to poll, derived from the device events (DeviceRegistered, Updated,
--   CredentialsChanged, Removed) by one checkpointed subscription (checkpoint row
--   'poller-devices' in subscription_checkpoints; one process advances it at a time under an
--   advisory lock). Rebuildable: truncate it and reset the checkpoint to 0.
-- poller_shards / poller_members: the fleet is split into shards by a hash of the device id;
--   pollers lease shards (FOR UPDATE SKIP LOCKED, lease expiry, heartbeat, fencing attempt
--   numbers) and rebalance by the number of live members.
-- poller_device_runtime: when each device was last polled and is next due, so that a shard
--   that changes hands does not get its devices polled twice within one interval, and the
--   change indicator its configuration was last checked against.

CREATE TABLE poller_devices (
    tenant_id          uuid NOT NULL,
    device_id          uuid NOT NULL,
    shard_key          integer NOT NULL CHECK (shard_key >= 0),
    host               text NOT NULL,
    port               integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    transport          jsonb NOT NULL,
    poll_interval_secs integer NOT NULL CHECK (poll_interval_secs > 0),
    removed            boolean NOT NULL DEFAULT false,
    -- Version of the device stream's last event applied here (replays skip older ones).
    stream_version     bigint NOT NULL,
    -- Global position of the last event applied here: pollers read changes incrementally.
    revision           bigint NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
CREATE INDEX poller_devices_revision ON poller_devices (revision);

ALTER TABLE poller_devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE poller_devices FORCE ROW LEVEL SECURITY;
CREATE POLICY poller_devices_app_select ON poller_devices FOR SELECT TO netledger_app
    USING (tenant_id = netledger_current_tenant());
CREATE POLICY poller_devices_system_all ON poller_devices FOR ALL TO netledger_system
    USING (true) WITH CHECK (true);
GRANT SELECT ON poller_devices TO netledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON poller_devices TO netledger_system;

-- Shard leases. Not tenant data: a shard holds devices of every tenant.
CREATE TABLE poller_shards (
    shard            integer PRIMARY KEY CHECK (shard >= 0),
    owner            uuid,
    -- Incremented on every claim: a poller's writes are valid only while the attempt it
    -- claimed is still the current one (fencing).
    attempt          bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz
);
GRANT SELECT, INSERT, UPDATE ON poller_shards TO netledger_system;
-- Event appends run as netledger_app and check the lease inside their transaction.
GRANT SELECT ON poller_shards TO netledger_app;

-- Live pollers (heartbeat rows); the shard target of each is ceil(shards / live members).
CREATE TABLE poller_members (
    poller_id  uuid PRIMARY KEY,
    name       text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON poller_members TO netledger_system;

CREATE TABLE poller_device_runtime (
    tenant_id    uuid NOT NULL,
    device_id    uuid NOT NULL,
    last_poll_at timestamptz NOT NULL,
    next_due_at  timestamptz NOT NULL,
    -- The device's change indicator when its configuration was last exported and compared
    -- with the last snapshot (a new owner compares the indicator it sees with this one).
    change_indicator text,
    PRIMARY KEY (tenant_id, device_id)
);
ALTER TABLE poller_device_runtime ENABLE ROW LEVEL SECURITY;
ALTER TABLE poller_device_runtime FORCE ROW LEVEL SECURITY;
CREATE POLICY poller_device_runtime_app_select ON poller_device_runtime FOR SELECT TO netledger_app
    USING (tenant_id = netledger_current_tenant());
CREATE POLICY poller_device_runtime_system_all ON poller_device_runtime FOR ALL TO netledger_system
    USING (true) WITH CHECK (true);
GRANT SELECT ON poller_device_runtime TO netledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON poller_device_runtime TO netledger_system;
