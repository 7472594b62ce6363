-- Names as they were at each event (issue #14): the audit feed shows a user's name and
-- e-mail, an API key's name, a device's, change request's or rollout's name as they read
-- when the event was recorded, not as they read today.
--
-- rm_audit_names: the name history of every named subject, one row per naming event
-- (`user:<id>`, `api_key:<id>`, `device:<id>`, `change_request:<id>`, `rollout:<id>`),
-- valid from that event's position until the subject's next row. Written by the `audit`
-- projector before the feed rows of the same batch, so a name given and used in one batch
-- resolves.
CREATE TABLE rm_audit_names (
    tenant_id     uuid NOT NULL,
    subject       text COLLATE "C" NOT NULL,
    from_position bigint NOT NULL,
    name          text NOT NULL,
    email         text,
    PRIMARY KEY (tenant_id, subject, from_position)
);

-- The feed row's names: the actor's and the subject's (what the event is about, from its
-- stream and payload), each as of the event. NULL where there is no such name.
ALTER TABLE rm_audit_feed
    ADD COLUMN actor_name text,
    ADD COLUMN subject text COLLATE "C",
    ADD COLUMN subject_name text;
CREATE INDEX rm_audit_feed_by_subject ON rm_audit_feed (tenant_id, subject, position);

ALTER TABLE rm_audit_names ENABLE ROW LEVEL SECURITY;
ALTER TABLE rm_audit_names FORCE ROW LEVEL SECURITY;
CREATE POLICY rm_audit_names_app_select ON rm_audit_names FOR SELECT TO netledger_app
    USING (tenant_id = netledger_current_tenant());
CREATE POLICY rm_audit_names_system_all ON rm_audit_names FOR ALL TO netledger_system
    USING (true) WITH CHECK (true);
GRANT SELECT ON rm_audit_names TO netledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON rm_audit_names TO netledger_system;

-- Existing feed rows were folded without names: the feed is rebuilt from position 0 by the
-- projector (read models are disposable, DESIGN invariant 8).
TRUNCATE rm_audit_feed;
UPDATE subscription_checkpoints SET position = 0, updated_at = now()
 WHERE name = 'projection.audit';
