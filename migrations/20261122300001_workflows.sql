-- Durable workflow engine: one task row per workflow instance (the work queue; the journal
-- is the event stream workflow-<id>), per-device ownership locks, and the functions the
-- engine calls. See docs/workflows.md for the claim/lease/fencing design.
--
-- Who may do what:
--   netledger_app     (tenant set per transaction, row-level security) creates workflows,
--                     wakes them on a signal, finishes them and releases their devices:
--                     everything that changes what a tenant's workflow *is*.
--   netledger_system  (every tenant) is what a worker claims with. It may read task rows and
--                     change only the lease columns (lease_owner, lease_expires_at, attempt,
--                     runnable_at), by column privileges: claim, heartbeat, release. It cannot
--                     create, delete or finish a task, nor touch device locks; a worker does
--                     those as netledger_app with the task's tenant set.

CREATE TABLE workflow_tasks (
    workflow_id        uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL,
    kind               text NOT NULL,
    definition_version integer NOT NULL CHECK (definition_version >= 1),
    -- queued: waits for its devices; runnable: claimable once runnable_at <= now (a leased
    -- task's runnable_at is its lease expiry); finished: done (outcome set).
    state              text NOT NULL CHECK (state IN ('queued', 'runnable', 'finished')),
    -- NULL: waits for a signal only (or queued, or finished).
    runnable_at        timestamptz,
    lease_owner        text,
    lease_expires_at   timestamptz,
    -- The fencing token: every claim increments it; every write a worker makes to this row
    -- is conditional on it.
    attempt            bigint NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    -- Incremented by every signal; a worker releasing its lease makes the task runnable at
    -- once if it changed since the claim (no lost wake-up).
    wake_seq           bigint NOT NULL DEFAULT 0,
    idempotency_key    text,
    devices            uuid[] NOT NULL DEFAULT '{}',
    parent_id          uuid,
    rollout_id         uuid,
    outcome            text,
    created_at         timestamptz NOT NULL,
    finished_at        timestamptz,
    CONSTRAINT workflow_tasks_idempotency UNIQUE (tenant_id, idempotency_key),
    CONSTRAINT workflow_tasks_finished CHECK ((state = 'finished') = (outcome IS NOT NULL))
);
-- The claim scans this in runnable_at order; leased tasks sit at their lease expiry.
CREATE INDEX workflow_tasks_runnable ON workflow_tasks (runnable_at) WHERE state = 'runnable';
CREATE INDEX workflow_tasks_queued ON workflow_tasks (tenant_id, created_at) WHERE state = 'queued';
CREATE INDEX workflow_tasks_tenant_created ON workflow_tasks (tenant_id, created_at);

ALTER TABLE workflow_tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflow_tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY workflow_tasks_app_select ON workflow_tasks FOR SELECT TO netledger_app
    USING (tenant_id = netledger_current_tenant());
CREATE POLICY workflow_tasks_app_insert ON workflow_tasks FOR INSERT TO netledger_app
    WITH CHECK (tenant_id = netledger_current_tenant());
CREATE POLICY workflow_tasks_app_update ON workflow_tasks FOR UPDATE TO netledger_app
    USING (tenant_id = netledger_current_tenant())
    WITH CHECK (tenant_id = netledger_current_tenant());
CREATE POLICY workflow_tasks_system_select ON workflow_tasks FOR SELECT TO netledger_system
    USING (true);
CREATE POLICY workflow_tasks_system_update ON workflow_tasks FOR UPDATE TO netledger_system
    USING (true) WITH CHECK (true);

GRANT SELECT, INSERT ON workflow_tasks TO netledger_app;
GRANT UPDATE (state, runnable_at, lease_owner, lease_expires_at, wake_seq, outcome, finished_at)
    ON workflow_tasks TO netledger_app;
GRANT SELECT ON workflow_tasks TO netledger_system;
GRANT UPDATE (lease_owner, lease_expires_at, attempt, runnable_at)
    ON workflow_tasks TO netledger_system;

-- One workflow owns a device at a time.
CREATE TABLE workflow_device_locks (
    tenant_id   uuid NOT NULL,
    device_id   uuid NOT NULL,
    workflow_id uuid NOT NULL REFERENCES workflow_tasks (workflow_id),
    acquired_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
CREATE INDEX workflow_device_locks_workflow ON workflow_device_locks (workflow_id);
ALTER TABLE workflow_device_locks ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflow_device_locks FORCE ROW LEVEL SECURITY;
CREATE POLICY workflow_device_locks_app_all ON workflow_device_locks FOR ALL TO netledger_app
    USING (tenant_id = netledger_current_tenant())
    WITH CHECK (tenant_id = netledger_current_tenant());
CREATE POLICY workflow_device_locks_system_select ON workflow_device_locks FOR SELECT
    TO netledger_system USING (true);
GRANT SELECT, INSERT, DELETE ON workflow_device_locks TO netledger_app;
GRANT SELECT ON workflow_device_locks TO netledger_system;

-- Creates a workflow's task row and takes its device locks, inside the caller's transaction
-- (which then appends WorkflowStarted and commits, or rolls back when a device is busy).
--
-- Device ownership changes of one tenant are serialized by a transaction-scoped advisory lock
-- (taken only when devices are involved), so a start that queues behind a busy device and the
-- owner's finish that promotes queued workflows cannot miss each other.
--
-- Returns one row: the workflow id (the existing one when the idempotency key was used
-- before), whether it existed, its kind and state, and for a busy device the device, its
-- owner and the owner's kind.
CREATE FUNCTION netledger_workflow_create(
    p_tenant uuid, p_workflow uuid, p_kind text, p_version integer, p_key text,
    p_devices uuid[], p_parent uuid, p_rollout uuid, p_queue boolean, p_now timestamptz)
RETURNS TABLE (workflow_id uuid, existed boolean, kind text, state text,
               busy_device uuid, busy_owner uuid, busy_kind text)
LANGUAGE plpgsql
SECURITY INVOKER
AS $$
#variable_conflict use_column
DECLARE
    v_busy record;
BEGIN
    PERFORM set_config('netledger.tenant_id', p_tenant::text, true);
    IF cardinality(p_devices) > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('netledger_workflow_devices:' || p_tenant::text, 0));
    END IF;
    -- ON CONFLICT waits for a concurrent start with the same key to commit or roll back, so
    -- two racing starts give one workflow.
    INSERT INTO workflow_tasks (workflow_id, tenant_id, kind, definition_version, state,
                                runnable_at, idempotency_key, devices, parent_id, rollout_id,
                                created_at)
    VALUES (p_workflow, p_tenant, p_kind, p_version, 'runnable', p_now, p_key, p_devices,
            p_parent, p_rollout, p_now)
    ON CONFLICT ON CONSTRAINT workflow_tasks_idempotency DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT t.workflow_id, true, t.kind, t.state, NULL::uuid, NULL::uuid, NULL::text
                       FROM workflow_tasks t
                      WHERE t.tenant_id = p_tenant AND t.idempotency_key = p_key;
        RETURN;
    END IF;
    IF cardinality(p_devices) > 0 THEN
        SELECT l.device_id, l.workflow_id AS owner, t.kind AS owner_kind INTO v_busy
          FROM workflow_device_locks l
          JOIN workflow_tasks t ON t.workflow_id = l.workflow_id
         WHERE l.tenant_id = p_tenant AND l.device_id = ANY (p_devices)
         ORDER BY l.device_id
         LIMIT 1;
        IF FOUND THEN
            IF p_queue THEN
                UPDATE workflow_tasks SET state = 'queued', runnable_at = NULL
                 WHERE workflow_id = p_workflow;
                RETURN QUERY SELECT p_workflow, false, p_kind, 'queued'::text,
                                    v_busy.device_id, v_busy.owner, v_busy.owner_kind;
            ELSE
                RETURN QUERY SELECT p_workflow, false, p_kind, 'runnable'::text,
                                    v_busy.device_id, v_busy.owner, v_busy.owner_kind;
            END IF;
            RETURN;
        END IF;
        INSERT INTO workflow_device_locks (tenant_id, device_id, workflow_id, acquired_at)
        SELECT p_tenant, d, p_workflow, p_now FROM unnest(p_devices) AS d;
    END IF;
    RETURN QUERY SELECT p_workflow, false, p_kind, 'runnable'::text, NULL::uuid, NULL::uuid, NULL::text;
END $$;
GRANT EXECUTE ON FUNCTION netledger_workflow_create(uuid, uuid, text, integer, text, uuid[], uuid, uuid, boolean, timestamptz) TO netledger_app;

-- Finishes a workflow's task row (after its WorkflowFinished is journaled), conditional on the
-- caller's attempt still being current; releases its devices and hands each to the oldest
-- queued workflow that can now have all of its devices. One round trip, as the app role with
-- the tenant set here. Returns false when the attempt is stale or the task already finished.
CREATE FUNCTION netledger_workflow_finish(
    p_tenant uuid, p_workflow uuid, p_attempt bigint, p_outcome text, p_now timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SECURITY INVOKER
AS $$
DECLARE
    v_devices  uuid[];
    v_promoted boolean := false;
    q          record;
BEGIN
    PERFORM set_config('netledger.tenant_id', p_tenant::text, true);
    UPDATE workflow_tasks
       SET state = 'finished', outcome = p_outcome, finished_at = p_now, runnable_at = NULL,
           lease_owner = NULL, lease_expires_at = NULL
     WHERE workflow_id = p_workflow AND attempt = p_attempt AND state = 'runnable'
    RETURNING devices INTO v_devices;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF cardinality(v_devices) > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('netledger_workflow_devices:' || p_tenant::text, 0));
        DELETE FROM workflow_device_locks WHERE tenant_id = p_tenant AND workflow_id = p_workflow;
        FOR q IN SELECT t.workflow_id, t.devices FROM workflow_tasks t
                  WHERE t.tenant_id = p_tenant AND t.state = 'queued' AND t.devices && v_devices
                  ORDER BY t.created_at, t.workflow_id
        LOOP
            IF NOT EXISTS (SELECT 1 FROM workflow_device_locks l
                            WHERE l.tenant_id = p_tenant AND l.device_id = ANY (q.devices)) THEN
                INSERT INTO workflow_device_locks (tenant_id, device_id, workflow_id, acquired_at)
                SELECT p_tenant, d, q.workflow_id, p_now FROM unnest(q.devices) AS d;
                UPDATE workflow_tasks SET state = 'runnable', runnable_at = p_now
                 WHERE workflow_id = q.workflow_id;
                v_promoted := true;
            END IF;
        END LOOP;
        IF v_promoted THEN
            PERFORM pg_notify('netledger_workflows', '');
        END IF;
    END IF;
    RETURN true;
END $$;
GRANT EXECUTE ON FUNCTION netledger_workflow_finish(uuid, uuid, bigint, text, timestamptz) TO netledger_app;

-- Wakes a workflow after a signal was journaled: makes it runnable now unless a worker holds
-- its lease (that worker sees the signal when its next append conflicts, or is poked by the
-- notification), and bumps wake_seq so a worker releasing its lease concurrently does not
-- put it back to sleep. Notifies listening workers with the workflow id.
CREATE FUNCTION netledger_workflow_wake(p_tenant uuid, p_workflow uuid, p_now timestamptz)
RETURNS text
LANGUAGE plpgsql
SECURITY INVOKER
AS $$
DECLARE
    v_state text;
BEGIN
    PERFORM set_config('netledger.tenant_id', p_tenant::text, true);
    UPDATE workflow_tasks
       SET wake_seq = wake_seq + 1,
           runnable_at = CASE WHEN lease_owner IS NULL THEN least(runnable_at, p_now)
                              ELSE runnable_at END
     WHERE workflow_id = p_workflow AND state = 'runnable';
    SELECT t.state INTO v_state FROM workflow_tasks t WHERE t.workflow_id = p_workflow;
    PERFORM pg_notify('netledger_workflows', p_workflow::text);
    RETURN v_state;
END $$;
GRANT EXECUTE ON FUNCTION netledger_workflow_wake(uuid, uuid, timestamptz) TO netledger_app;
