-- SSH client keys (issue 17): a device's credentials may include the private key Netledger
-- logs in to it with over SSH (RouterOS refuses SSH password logins for a user with an
-- imported key unless `/ip ssh always-allow-password-login=yes`). It is sealed like the
-- password, in the same row and under the same key id (so a key rotation re-encrypts both),
-- with its own associated-data tag so one ciphertext cannot be opened as the other. No row
-- had a key before these columns existed: NULL is every existing row's true value.
ALTER TABLE device_credentials
    ADD COLUMN ssh_key_nonce bytea,
    ADD COLUMN ssh_key_ciphertext bytea,
    ADD CONSTRAINT device_credentials_ssh_key_sealed CHECK (
        (ssh_key_nonce IS NULL AND ssh_key_ciphertext IS NULL)
        OR (length(ssh_key_nonce) = 12 AND length(ssh_key_ciphertext) >= 16)
    );

-- The device read model shows the public half (`{"algorithm", "fingerprint_sha256",
-- "public_key"}`, the domain's `SshClientKey`) so an operator can import it on the device.
-- NULL is every existing row's true value; the projection needs no replay.
ALTER TABLE rm_devices ADD COLUMN ssh_client_key jsonb;
