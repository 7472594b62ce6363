-- Issue #15 items 14 and 19: revocation of access tokens and absolute session lifetime.
--
-- users.session_version: every access token carries the version current when it was issued
-- (claim `sv`); the API refuses a token whose version is not the user's current one. The
-- version is bumped when the user is disabled, their role changes, their password changes,
-- or they log out of every session. Starts at 1, so tokens issued before this migration
-- (no `sv` claim, read as 0) stop working and their users refresh.
ALTER TABLE users ADD COLUMN session_version bigint NOT NULL DEFAULT 1
    CHECK (session_version >= 1);

-- refresh_tokens.session_started_at: when the session (token family) began, copied onto
-- every rotated token, so a refresh past the absolute session lifetime is refused however
-- often the session slid. NULL on rows written before this migration: their family's
-- first issued_at counts.
ALTER TABLE refresh_tokens ADD COLUMN session_started_at timestamptz;
UPDATE refresh_tokens r SET session_started_at = f.started
    FROM (SELECT family_id, min(issued_at) AS started FROM refresh_tokens GROUP BY family_id) f
    WHERE r.family_id = f.family_id;
