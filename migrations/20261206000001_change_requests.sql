-- Change requests (issue #13): the read model of `change-<id>` streams (projector
-- `change_requests`) and the index the change timeline reads events by.
-- See docs/projections.md.
--
-- Like every read model it is tenant-scoped and disposable: `replay` rebuilds it from
-- position 0 through the rebuild functions of 20261122200002_read_model_rebuild.sql (an
-- empty copy with the primary key, the other indexes below copied onto the filled copy,
-- then the swap with the standard security), which need nothing more than an rm_* table
-- with a primary key and a tenant_id column.

CREATE TABLE rm_change_requests (
    tenant_id          uuid NOT NULL,
    change_request_id  uuid NOT NULL,
    version            bigint NOT NULL,   -- the stream's version (the API's ETag)
    state              text NOT NULL,     -- draft | submitted | ... | withdrawn (ChangeState)
    title              text NOT NULL,
    author             text COLLATE "C" NOT NULL,  -- user id as text
    risk               text NOT NULL,     -- low | medium | high
    emergency          boolean NOT NULL,
    review_pending     boolean NOT NULL,  -- emergency, ran, not yet reviewed by enough approvers
    devices            uuid[] NOT NULL,   -- frozen at submission; in draft, the devices named
    device_count       integer NOT NULL,
    approvals_count    integer NOT NULL,
    required_approvals integer NOT NULL,
    content            jsonb NOT NULL,    -- the ChangeContent
    approvals          jsonb NOT NULL,    -- [{by, comment, retrospective, at}]
    rejection          jsonb,             -- {by, comment, at}
    workflow_id        uuid,
    rollout_id         uuid,
    paused             boolean NOT NULL,
    pause              integer,           -- the open pause's number while paused
    final_reason       text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    submitted_at       timestamptz,       -- the last submission
    started_at         timestamptz,       -- its rollout started
    finished_at        timestamptz,       -- reached a final state
    created_position   bigint NOT NULL,
    updated_position   bigint NOT NULL,   -- the last event folded (re-deliveries are skipped)
    PRIMARY KEY (tenant_id, change_request_id)
);
-- Keyset pages newest first (created_position is unique: one ChangeRequestCreated each),
-- unfiltered, by state and by author.
CREATE UNIQUE INDEX rm_change_requests_recent ON rm_change_requests (tenant_id, created_position);
CREATE INDEX rm_change_requests_by_state
    ON rm_change_requests (tenant_id, state, created_position);
CREATE INDEX rm_change_requests_by_author
    ON rm_change_requests (tenant_id, author, created_position);
-- The requests touching a device (`devices @> ARRAY[id]`, `devices && <tagged devices>`).
CREATE INDEX rm_change_requests_by_device ON rm_change_requests USING gin (devices);
-- Emergency runs waiting for their review (few rows: the overdue filter reads only these).
CREATE INDEX rm_change_requests_review_pending
    ON rm_change_requests (tenant_id, started_at) WHERE review_pending;

SELECT netledger_rm_secure('public', 'rm_change_requests');

-- The change timeline: the events correlated with a change request (its rollout, the
-- rollout's children, their device events), in position order. Read by netledger_app under
-- the events table's own row-level security.
CREATE INDEX events_tenant_correlation ON events (tenant_id, correlation_id, position);
