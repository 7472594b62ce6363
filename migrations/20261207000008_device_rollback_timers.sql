-- The rollback-timer device condition (issue #15 item 3) in the device read model:
-- `rollback_timers` is NULL while the device has none, else a JSON object
-- {"timers": [...], "source": "refused_arm" | "rollback_unconfirmed", "detail": "...",
--  "workflow_id": "...", "since": "<RFC 3339>"} from the latest `DeviceRollbackTimersFound`,
-- cleared by `DeviceRollbackTimersCleared`.
ALTER TABLE rm_devices ADD COLUMN rollback_timers jsonb;

-- Existing rows were folded without the column: the devices read model is rebuilt from
-- position 0 by the projector (read models are disposable, DESIGN invariant 8).
TRUNCATE rm_devices, rm_device_tags;
UPDATE subscription_checkpoints SET position = 0, updated_at = now()
 WHERE name = 'projection.devices';
