-- netledger_append: the part of an append that runs under the append lock, in one call.
--
-- The caller sends one tenant's requests (stream, expected version, event count) and the
-- events' columns with their content hashes (computed by the caller, see
-- services/domain/src/canonical.rs). The function locks event_log_head, checks each
-- request's expected version against the stream head, assigns positions and versions,
-- computes the chain hashes, inserts every accepted event in one statement, advances the
-- head and notifies listeners. It runs as the caller (SECURITY INVOKER), so row-level
-- security applies to everything it reads and writes.
--
-- p_expected: -1 = any, 0 = no stream, n > 0 = exactly n.
-- Returns one row per request: ok, the stream's version after (or its actual version on a
-- conflict), and the first and last positions assigned.
CREATE FUNCTION netledger_append(
    p_tenant         uuid,
    p_stream         text[],
    p_category       text[],
    p_expected       bigint[],
    p_count          integer[],
    p_event_id       uuid[],
    p_event_type     text[],
    p_schema_version integer[],
    p_payload        text[],
    p_actor          text[],
    p_causation      uuid[],
    p_correlation    uuid[],
    p_content_hash   bytea[]
) RETURNS TABLE (req integer, ok boolean, version bigint, first_position bigint, last_position bigint)
LANGUAGE plpgsql
SECURITY INVOKER
-- The statements inside are simple index lookups: replanning them per call costs more
-- than it could ever win.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_last        bigint;
    v_now         timestamptz;
    v_micros      bytea;
    v_tenant_last bigint;
    v_heads       jsonb := '{}'::jsonb;
    v_head        jsonb;
    v_version     bigint;
    v_hash        bytea;
    v_first       bigint;
    v_ev          integer := 0;
    r             integer;
    i             integer;
    a_pos         bigint[] := '{}';
    a_tprev       bigint[] := '{}';
    a_stream      text[] := '{}';
    a_category    text[] := '{}';
    a_version     bigint[] := '{}';
    a_idx         integer[] := '{}';
    a_prev        bytea[] := '{}';
    a_hash        bytea[] := '{}';
BEGIN
    PERFORM set_config('netledger.tenant_id', p_tenant::text, true);
    SELECT h.last_position, greatest(date_trunc('microseconds', clock_timestamp()), h.last_recorded_at)
      INTO v_last, v_now
      FROM event_log_head h WHERE h.id FOR UPDATE;
    v_micros := int8send((extract(epoch FROM v_now) * 1000000)::bigint);
    SELECT coalesce(max(e.position), 0) INTO v_tenant_last FROM events e WHERE e.tenant_id = p_tenant;

    -- Every stream head in one statement, so the per-request loop below does no SQL.
    SELECT coalesce(jsonb_object_agg(s.stream, jsonb_build_array(h.version, encode(h.hash, 'hex')))
                    FILTER (WHERE h.version IS NOT NULL), '{}'::jsonb)
      INTO v_heads
      FROM (SELECT DISTINCT unnest(p_stream) AS stream) s
      LEFT JOIN LATERAL (SELECT e.version, e.hash FROM events e
                          WHERE e.tenant_id = p_tenant AND e.stream = s.stream
                          ORDER BY e.version DESC LIMIT 1) h ON true;

    FOR r IN 1 .. coalesce(array_length(p_stream, 1), 0) LOOP
        v_head := v_heads -> p_stream[r];
        IF v_head IS NULL THEN
            v_version := 0;
            v_hash := decode(repeat('00', 32), 'hex');
        ELSE
            v_version := (v_head ->> 0)::bigint;
            v_hash := decode(v_head ->> 1, 'hex');
        END IF;

        IF p_expected[r] <> -1 AND p_expected[r] <> v_version THEN
            req := r; ok := false; version := v_version; first_position := NULL; last_position := NULL;
            RETURN NEXT;
            v_ev := v_ev + p_count[r];
            CONTINUE;
        END IF;

        v_first := v_last + 1;
        FOR i IN 1 .. p_count[r] LOOP
            v_ev := v_ev + 1;
            v_last := v_last + 1;
            v_version := v_version + 1;
            a_prev := a_prev || v_hash;
            v_hash := sha256('NLEV2'::bytea || v_hash || int8send(v_last) || int8send(v_tenant_last)
                             || int8send(v_version) || v_micros || p_content_hash[v_ev]);
            a_pos := a_pos || v_last;
            a_tprev := a_tprev || v_tenant_last;
            a_stream := a_stream || p_stream[r];
            a_category := a_category || p_category[r];
            a_version := a_version || v_version;
            a_idx := a_idx || v_ev;
            a_hash := a_hash || v_hash;
            v_tenant_last := v_last;
        END LOOP;
        v_heads := v_heads || jsonb_build_object(p_stream[r], jsonb_build_array(v_version, encode(v_hash, 'hex')));
        req := r; ok := true; version := v_version; first_position := v_first; last_position := v_last;
        RETURN NEXT;
    END LOOP;

    IF array_length(a_pos, 1) > 0 THEN
        INSERT INTO events (position, tenant_prev_position, tenant_id, stream, category, version,
                            event_id, event_type, schema_version, payload, actor, causation_id,
                            correlation_id, recorded_at, prev_hash, hash)
        SELECT t.p, t.tp, p_tenant, t.s, t.c, t.v,
               p_event_id[t.ix], p_event_type[t.ix], p_schema_version[t.ix], p_payload[t.ix]::jsonb,
               p_actor[t.ix]::jsonb, p_causation[t.ix], p_correlation[t.ix], v_now, t.ph, t.h
          FROM unnest(a_pos, a_tprev, a_stream, a_category, a_version, a_idx, a_prev, a_hash)
               AS t(p, tp, s, c, v, ix, ph, h);
        UPDATE event_log_head SET last_position = v_last, last_recorded_at = v_now WHERE id;
        PERFORM pg_notify('netledger_events', v_last::text);
    END IF;
END $$;

GRANT EXECUTE ON FUNCTION netledger_append(uuid, text[], text[], bigint[], integer[], uuid[], text[],
    integer[], text[], text[], uuid[], uuid[], bytea[]) TO netledger_app;
