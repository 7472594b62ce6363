-- The audit feed filtered by correlation id (a change request and everything it caused:
-- approvals, its run, rollout, per-device workflows and device events share the id).
CREATE INDEX rm_audit_feed_by_correlation ON rm_audit_feed (tenant_id, correlation_id, position);
