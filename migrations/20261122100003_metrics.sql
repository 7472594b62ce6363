-- Device telemetry: raw samples written by the poller and 5-minute rollups for long ranges.
-- Telemetry, not events (DESIGN invariant 1): kept for a retention period, then dropped.
--
-- Every table is range-partitioned by day on its time column. Partitions are created ahead and
-- dropped after retention by netledger_metrics_maintain() (SECURITY DEFINER: only the owner
-- may create partitions), which pollers call periodically. There is no default partition: a
-- sample for a day without a partition is refused rather than silently piling up somewhere
-- retention never reaches.
--
-- Writes come from the poller (role netledger_system, one multi-row insert per flush for
-- every tenant); reads from the API (role netledger_app, its tenant only).

CREATE TABLE device_samples (
    tenant_id    uuid NOT NULL,
    device_id    uuid NOT NULL,
    at           timestamptz NOT NULL,
    cpu_load     smallint NOT NULL,
    memory_used  bigint NOT NULL,
    memory_total bigint NOT NULL,
    hdd_free     bigint NOT NULL,
    hdd_total    bigint NOT NULL,
    uptime_secs  bigint NOT NULL
) PARTITION BY RANGE (at);
CREATE INDEX device_samples_device_at ON device_samples (tenant_id, device_id, at);

CREATE TABLE interface_samples (
    tenant_id uuid NOT NULL,
    device_id uuid NOT NULL,
    at        timestamptz NOT NULL,
    interface text NOT NULL,
    rx_bytes  bigint,
    tx_bytes  bigint,
    rx_errors bigint,
    tx_errors bigint
) PARTITION BY RANGE (at);
CREATE INDEX interface_samples_device_at ON interface_samples (tenant_id, device_id, at);

-- Gauges: min/avg/max per 5-minute bucket.
CREATE TABLE device_samples_5m (
    tenant_id       uuid NOT NULL,
    device_id       uuid NOT NULL,
    bucket          timestamptz NOT NULL,
    samples         integer NOT NULL,
    cpu_min         smallint NOT NULL,
    cpu_avg         double precision NOT NULL,
    cpu_max         smallint NOT NULL,
    memory_used_min bigint NOT NULL,
    memory_used_avg double precision NOT NULL,
    memory_used_max bigint NOT NULL,
    memory_total    bigint NOT NULL,
    hdd_free_min    bigint NOT NULL,
    hdd_free_avg    double precision NOT NULL,
    hdd_free_max    bigint NOT NULL,
    hdd_total       bigint NOT NULL,
    uptime_max      bigint NOT NULL,
    PRIMARY KEY (tenant_id, device_id, bucket)
) PARTITION BY RANGE (bucket);

-- Counters: the last value in the bucket, and the rate (bits/s) between consecutive samples
-- as min/avg/max. A counter that went down (reboot, reset) gives no rate for that step.
CREATE TABLE interface_samples_5m (
    tenant_id    uuid NOT NULL,
    device_id    uuid NOT NULL,
    interface    text NOT NULL,
    bucket       timestamptz NOT NULL,
    samples      integer NOT NULL,
    rx_bytes     bigint,
    tx_bytes     bigint,
    rx_errors    bigint,
    tx_errors    bigint,
    rx_bps_min   double precision,
    rx_bps_avg   double precision,
    rx_bps_max   double precision,
    tx_bps_min   double precision,
    tx_bps_avg   double precision,
    tx_bps_max   double precision,
    PRIMARY KEY (tenant_id, device_id, bucket, interface)
) PARTITION BY RANGE (bucket);

-- Up to where (exclusive) the rollups have been computed.
CREATE TABLE metrics_rollup_state (
    name         text PRIMARY KEY,
    rolled_until timestamptz NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON metrics_rollup_state TO netledger_system;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['device_samples', 'interface_samples', 'device_samples_5m',
                             'interface_samples_5m'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO netledger_app
                            USING (tenant_id = netledger_current_tenant())', t || '_app_select', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO netledger_system USING (true)',
                       t || '_system_select', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR INSERT TO netledger_system WITH CHECK (true)',
                       t || '_system_insert', t);
        EXECUTE format('GRANT SELECT ON %I TO netledger_app', t);
        EXECUTE format('GRANT SELECT, INSERT ON %I TO netledger_system', t);
    END LOOP;
END $$;

-- Creates the daily partitions of every metrics table from the day before p_today up to
-- p_ahead_days after it, and drops raw partitions older than p_raw_keep_days and rollup
-- partitions older than p_rollup_keep_days. Returns how many it created and dropped.
-- Serialised by an advisory lock, so concurrent pollers may all call it.
CREATE FUNCTION netledger_metrics_maintain(p_today date, p_ahead_days integer,
                                           p_raw_keep_days integer, p_rollup_keep_days integer)
RETURNS TABLE (created integer, dropped integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_table   text;
    v_keep    integer;
    v_day     date;
    v_name    text;
    v_created integer := 0;
    v_dropped integer := 0;
    r         record;
BEGIN
    IF p_ahead_days NOT BETWEEN 0 AND 60 THEN
        RAISE EXCEPTION 'p_ahead_days must be 0-60, got %', p_ahead_days;
    END IF;
    IF p_raw_keep_days < 1 OR p_rollup_keep_days < 1 THEN
        RAISE EXCEPTION 'retention must be at least one day';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('netledger_metrics_maintain'));
    FOREACH v_table IN ARRAY ARRAY['device_samples', 'interface_samples', 'device_samples_5m',
                                   'interface_samples_5m'] LOOP
        v_keep := CASE WHEN v_table LIKE '%\_5m' THEN p_rollup_keep_days ELSE p_raw_keep_days END;
        FOR i IN -1 .. p_ahead_days LOOP
            v_day := p_today + i;
            v_name := v_table || '_p' || to_char(v_day, 'YYYYMMDD');
            IF to_regclass(v_name) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               v_name, v_table,
                               (v_day::timestamp AT TIME ZONE 'UTC'),
                               ((v_day + 1)::timestamp AT TIME ZONE 'UTC'));
                v_created := v_created + 1;
            END IF;
        END LOOP;
        FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = v_table::regclass LOOP
            IF r.relname ~ '_p[0-9]{8}$'
               AND to_date(right(r.relname, 8), 'YYYYMMDD') < p_today - v_keep THEN
                EXECUTE format('DROP TABLE %I', r.relname);
                v_dropped := v_dropped + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN QUERY SELECT v_created, v_dropped;
END $$;

REVOKE ALL ON FUNCTION netledger_metrics_maintain(date, integer, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION netledger_metrics_maintain(date, integer, integer, integer) TO netledger_system;
