-- Issue #16 (key rotation): `netledger keys rotate-credentials` re-encrypts, under the
-- current credential key, every secret sealed with an older one: device credentials (as
-- before), sealed change scripts, and the encrypted backups of snapshots.
--
-- A snapshot's backup password is sealed inside its workflow's journal (a
-- `WorkflowStepCompleted` output) and its backup file is a content-addressed blob named in
-- that journal. Journals are events: never changed. So rotation writes the re-encrypted
-- password and the name of the re-encrypted blob here, keyed by what the journal names
-- (`ref`: the original blob's SHA-256, or, for a backup that stayed on the device, the
-- SHA-256 of the sealed password's nonce and ciphertext). Whoever reads a journaled backup
-- looks here first; no row means the journal's own values are current.
CREATE TABLE backup_secrets (
    tenant_id           uuid NOT NULL,
    ref                 text NOT NULL CHECK (ref ~ '^[0-9a-f]{64}$'),
    device_id           uuid NOT NULL,
    -- The backup password, re-sealed (NULL: the backup has none).
    password_key_id     text CHECK (length(password_key_id) BETWEEN 1 AND 100),
    password_nonce      bytea CHECK (length(password_nonce) = 12),
    password_ciphertext bytea CHECK (length(password_ciphertext) >= 16),
    -- The re-encrypted backup file (NULL: the backup stayed on the device).
    blob_sha256         text CHECK (blob_sha256 ~ '^[0-9a-f]{64}$'),
    blob_key_id         text CHECK (length(blob_key_id) BETWEEN 1 AND 100),
    rotated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, ref),
    CONSTRAINT backup_secrets_password CHECK (
        (password_key_id IS NULL) = (password_nonce IS NULL)
        AND (password_key_id IS NULL) = (password_ciphertext IS NULL)),
    CONSTRAINT backup_secrets_blob CHECK ((blob_sha256 IS NULL) = (blob_key_id IS NULL))
);
ALTER TABLE backup_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE backup_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY backup_secrets_app_all ON backup_secrets FOR ALL TO netledger_app
    USING (tenant_id = netledger_current_tenant())
    WITH CHECK (tenant_id = netledger_current_tenant());
GRANT SELECT, INSERT, UPDATE ON backup_secrets TO netledger_app;

-- Sealed scripts: rows were never updated; rotation now re-encrypts them in place (the
-- script text and id stay). The system role lists the rows under older keys.
GRANT UPDATE (key_id, nonce, ciphertext) ON sealed_scripts TO netledger_app;
CREATE POLICY sealed_scripts_system_select ON sealed_scripts FOR SELECT TO netledger_system
    USING (true);
GRANT SELECT (tenant_id, id, key_id) ON sealed_scripts TO netledger_system;
