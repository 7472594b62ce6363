-- Device credentials, encrypted at rest (AES-256-GCM), outside the event stream.
--
-- Events carry only the login name and the id of the key that encrypted the password
-- (DeviceRegistered, DeviceCredentialsChanged); the ciphertext lives here, one row per device,
-- written in the same transaction as the event that announces it. The associated data of the
-- encryption binds the row to its tenant, device and key id, so a row copied to another
-- device or relabelled with another key id does not decrypt. See docs/poller.md.

CREATE TABLE device_credentials (
    tenant_id  uuid NOT NULL,
    device_id  uuid NOT NULL,
    username   text NOT NULL,
    key_id     text NOT NULL CHECK (length(key_id) BETWEEN 1 AND 100),
    nonce      bytea NOT NULL CHECK (length(nonce) = 12),
    ciphertext bytea NOT NULL CHECK (length(ciphertext) >= 16),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id)
);
CREATE INDEX device_credentials_key_id ON device_credentials (key_id);

ALTER TABLE device_credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE device_credentials FORCE ROW LEVEL SECURITY;
-- Command handlers (register, change credentials, remove, key rotation) write under the
-- tenant of their transaction.
CREATE POLICY device_credentials_app_all ON device_credentials FOR ALL TO netledger_app
    USING (tenant_id = netledger_current_tenant())
    WITH CHECK (tenant_id = netledger_current_tenant());
-- The poller reads every tenant's rows (and decrypts them only in memory).
CREATE POLICY device_credentials_system_select ON device_credentials FOR SELECT TO netledger_system
    USING (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON device_credentials TO netledger_app;
GRANT SELECT ON device_credentials TO netledger_system;
