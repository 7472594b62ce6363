-- SSH access of a device (issue 17): the domain's `SshAccess` as registered or as pinned on
-- first use (`{"port": 22, "host_key": {"trust": "pinned"|"first_use", ...}}`), NULL for a
-- device reached over the API only. No device had SSH access before this column existed, so
-- NULL is every existing row's true value and the projection needs no replay.
ALTER TABLE rm_devices ADD COLUMN ssh jsonb;

-- The poller's work table carries it too (exports before RouterOS 7.13 go over SSH when a
-- device has it); kept up to date from DeviceRegistered, DeviceUpdated and
-- DeviceSshHostKeyPinned like the other columns. NULL is every existing row's true value.
ALTER TABLE poller_devices ADD COLUMN ssh jsonb;
