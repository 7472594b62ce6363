-- Audit signing key hand-overs (docs/auditing.md §6): the first checkpoint of a tenant that a
-- new key signs carries the old key's hand-over to it, signed by both keys. NULL on every
-- other checkpoint. Table-level grants (SELECT for the app, SELECT/INSERT for the system
-- role) cover the new column; the append-only triggers keep it immutable.
ALTER TABLE audit_checkpoints ADD COLUMN handover jsonb;
