-- Event payloads and actors as json (the text as written) instead of jsonb.
--
-- The store never queries inside an event's JSON: it writes the text serde produced, hashes
-- the canonical form in the application and reads the text back. jsonb made every append
-- build the binary form (about a tenth of the server's insert time in the append profile)
-- and every read turn it back into text (about 40% of the server's cost of reading an event,
-- measured with COPY ... TO '/dev/null' over the full event columns). json only checks the
-- syntax on the way in and returns the stored text unchanged on the way out, which also
-- keeps numbers exactly as written (jsonb would reformat them as numeric).
--
-- The columns still reject what is not JSON, and jsonb values are still accepted on
-- assignment (an assignment cast exists both ways).
ALTER TABLE events
    ALTER COLUMN payload TYPE json USING payload::json,
    ALTER COLUMN actor TYPE json USING actor::json;
