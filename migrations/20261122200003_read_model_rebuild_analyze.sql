-- Rebuilt read-model tables get planner statistics before they are swapped in: a fresh
-- table has none until autovacuum analyses it, and without them the planner sorts a
-- tenant's whole device list instead of walking the (tenant_id, name, device_id) index for
-- a page (measured: 1.7 ms against 0.19 ms for a page of 2,500 devices).
CREATE OR REPLACE FUNCTION netledger_rm_rebuild_index(p_table text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    t regclass := public.netledger_rm_table(p_table);
    def text;
    copy_def text;
BEGIN
    FOR def IN SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                WHERE i.indrelid = t AND NOT i.indisprimary ORDER BY i.indexrelid
    LOOP
        copy_def := replace(def, format(' ON public.%I ', p_table),
                            format(' ON netledger_rebuild.%I ', p_table));
        IF copy_def = def THEN
            RAISE EXCEPTION 'cannot copy index definition of %: %', p_table, def;
        END IF;
        EXECUTE copy_def;
    END LOOP;
    EXECUTE format('ANALYZE netledger_rebuild.%I', p_table);
END $$;
