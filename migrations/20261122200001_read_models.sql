-- Read models (issue #6): tables the projectors fold from the event store and the API reads.
-- See docs/projections.md.
--
-- Every table is tenant-scoped and disposable: `replay` rebuilds it from position 0. Each
-- projector writes its tables and its row in subscription_checkpoints ('projection.<name>')
-- in one transaction. `last_position` columns hold the global position of the last event
-- folded into a row, so a re-delivered event is recognised and skipped.
--
-- Text that is sorted for keyset pagination uses the "C" collation: byte order, the same on
-- every server whatever its locale.

-- Device list and detail (projector `devices`).
CREATE TABLE rm_devices (
    tenant_id            uuid NOT NULL,
    device_id            uuid NOT NULL,
    name                 text COLLATE "C" NOT NULL,
    host                 text NOT NULL,
    port                 integer NOT NULL,
    transport            text NOT NULL,   -- plain | tls_pinned | tls_verified
    tls_fingerprint      text,
    username             text NOT NULL,
    credentials_key_id   text NOT NULL,
    tags                 text[] NOT NULL,
    poll_interval_secs   integer NOT NULL,
    status               text NOT NULL,   -- unknown | online | offline
    offline_reason       text,
    identity             text,
    routeros_version     text,
    board_name           text,
    architecture         text,
    routerboard_firmware text,
    breaker              text NOT NULL,   -- closed | open
    breaker_failures     integer,
    breaker_retry_at     timestamptz,
    breaker_last_error   text,
    last_snapshot_commit text,
    last_snapshot_sha256 text,
    last_snapshot_at     timestamptz,
    last_drift_at        timestamptz,
    registered_at        timestamptz NOT NULL,
    removed_at           timestamptz,
    removed_reason       text,
    last_seen_at         timestamptz,
    last_event_at        timestamptz NOT NULL,
    stream_version       bigint NOT NULL,
    last_position        bigint NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
-- Keyset pages by (name, device_id), unfiltered and by status.
CREATE INDEX rm_devices_by_name ON rm_devices (tenant_id, name, device_id);
CREATE INDEX rm_devices_by_status ON rm_devices (tenant_id, status, name, device_id);

-- One row per (device, tag): keyset pages of the devices carrying a tag.
CREATE TABLE rm_device_tags (
    tenant_id uuid NOT NULL,
    tag       text COLLATE "C" NOT NULL,
    name      text COLLATE "C" NOT NULL,
    device_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, tag, name, device_id)
);

-- Config versions of a device (projector `config_versions`): one row per snapshot or drift.
CREATE TABLE rm_config_versions (
    tenant_id        uuid NOT NULL,
    device_id        uuid NOT NULL,
    stream_version   bigint NOT NULL,  -- version of the event in the device's stream
    position         bigint NOT NULL,
    kind             text NOT NULL,    -- snapshot | drift
    commit           text NOT NULL,
    sha256           text NOT NULL,
    changed          boolean NOT NULL,
    reason           text NOT NULL,    -- snapshot reason, or `drift`
    routeros_version text,
    workflow_id      uuid,
    expected_sha256  text,             -- drift: the snapshot the device no longer matches
    recorded_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, device_id, stream_version)
);

-- Workflow runs and their steps (projector `workflows`).
CREATE TABLE rm_workflow_runs (
    tenant_id          uuid NOT NULL,
    workflow_id        uuid NOT NULL,
    kind               text NOT NULL,
    definition_version integer NOT NULL,
    state              text NOT NULL,  -- running | waiting | retrying | <outcome>
    outcome            text,
    reason             text,
    input              json NOT NULL,
    output             json,
    idempotency_key    text,
    devices            uuid[] NOT NULL,
    rollout_id         uuid,
    current_step       text,
    steps_completed    integer NOT NULL,
    failed_attempts    integer NOT NULL,
    last_error         text,
    wake_at            timestamptz,
    last_signal        text,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz,
    updated_at         timestamptz NOT NULL,
    started_position   bigint NOT NULL,
    stream_version     bigint NOT NULL,
    last_position      bigint NOT NULL,
    PRIMARY KEY (tenant_id, workflow_id)
);
-- Keyset pages newest first (started_position is unique: one WorkflowStarted per run).
CREATE UNIQUE INDEX rm_workflow_runs_recent ON rm_workflow_runs (tenant_id, started_position);
CREATE INDEX rm_workflow_runs_by_kind ON rm_workflow_runs (tenant_id, kind, started_position);
CREATE INDEX rm_workflow_runs_by_state ON rm_workflow_runs (tenant_id, state, started_position);

-- The devices a run touches: keyset pages of the runs of one device.
CREATE TABLE rm_workflow_devices (
    tenant_id        uuid NOT NULL,
    device_id        uuid NOT NULL,
    started_position bigint NOT NULL,
    workflow_id      uuid NOT NULL,
    PRIMARY KEY (tenant_id, device_id, started_position)
);

CREATE TABLE rm_workflow_steps (
    tenant_id     uuid NOT NULL,
    workflow_id   uuid NOT NULL,
    step          text NOT NULL,
    seq           bigint NOT NULL,  -- stream version of the step's first start: display order
    state         text NOT NULL,    -- running | completed | retrying | failed
    attempts      integer NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    last_error    text,
    failure_class text,
    retry_at      timestamptz,
    PRIMARY KEY (tenant_id, workflow_id, step)
);

-- Rollouts and their devices (projector `rollouts`).
CREATE TABLE rm_rollouts (
    tenant_id         uuid NOT NULL,
    rollout_id        uuid NOT NULL,
    name              text NOT NULL,
    target_kind       text NOT NULL,  -- change_set | firmware
    target_version    text,
    state             text NOT NULL,
    reason            text,
    workflow_id       uuid NOT NULL,
    batch_size        integer NOT NULL,
    parallelism       integer NOT NULL,
    failure_threshold integer NOT NULL,
    rollback_on_halt  boolean NOT NULL,
    total_devices     integer NOT NULL,
    canaries          integer NOT NULL,
    finished          integer NOT NULL,
    succeeded         integer NOT NULL,
    failed            integer NOT NULL,
    rolled_back       integer NOT NULL,
    cancelled         integer NOT NULL,
    current_batch     integer,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    created_position  bigint NOT NULL,
    last_position     bigint NOT NULL,
    PRIMARY KEY (tenant_id, rollout_id)
);
CREATE UNIQUE INDEX rm_rollouts_recent ON rm_rollouts (tenant_id, created_position);
CREATE INDEX rm_rollouts_by_state ON rm_rollouts (tenant_id, state, created_position);

CREATE TABLE rm_rollout_devices (
    tenant_id   uuid NOT NULL,
    rollout_id  uuid NOT NULL,
    ord         integer NOT NULL,  -- canaries first, then the devices in order
    device_id   uuid NOT NULL,
    batch       integer NOT NULL,  -- 0 = canaries
    outcome     text,              -- NULL while pending
    workflow_id uuid,
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, rollout_id, device_id)
);
CREATE UNIQUE INDEX rm_rollout_devices_in_order ON rm_rollout_devices (tenant_id, rollout_id, ord);

-- The audit feed (projector `audit`): one row per event, without the payload.
CREATE TABLE rm_audit_feed (
    tenant_id      uuid NOT NULL,
    position       bigint NOT NULL,
    recorded_at    timestamptz NOT NULL,
    stream         text COLLATE "C" NOT NULL,
    category       text COLLATE "C" NOT NULL,
    event_type     text COLLATE "C" NOT NULL,
    schema_version integer NOT NULL,
    event_id       uuid NOT NULL,
    actor          text COLLATE "C" NOT NULL,  -- user:<id> | api_key:<id> | system:<component>
    correlation_id uuid NOT NULL,
    causation_id   uuid NOT NULL,
    summary        text NOT NULL,
    PRIMARY KEY (tenant_id, position)
);
CREATE INDEX rm_audit_feed_by_stream ON rm_audit_feed (tenant_id, stream, position);
CREATE INDEX rm_audit_feed_by_category ON rm_audit_feed (tenant_id, category, position);
CREATE INDEX rm_audit_feed_by_type ON rm_audit_feed (tenant_id, event_type, position);
CREATE INDEX rm_audit_feed_by_actor ON rm_audit_feed (tenant_id, actor, position);

-- Row-level security and grants, the same for every read-model table:
-- the app role reads its tenant's rows and writes nothing; the system role (projectors,
-- replay) reads and writes every tenant's rows. TRUNCATE is not granted: replay deletes
-- inside its transaction so readers keep seeing the old rows until it commits.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rm_devices', 'rm_device_tags', 'rm_config_versions',
                             'rm_workflow_runs', 'rm_workflow_devices', 'rm_workflow_steps',
                             'rm_rollouts', 'rm_rollout_devices', 'rm_audit_feed']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO netledger_app '
                       'USING (tenant_id = netledger_current_tenant())', t || '_app_select', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR ALL TO netledger_system '
                       'USING (true) WITH CHECK (true)', t || '_system_all', t);
        EXECUTE format('GRANT SELECT ON %I TO netledger_app', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO netledger_system', t);
    END LOOP;
END $$;
