-- Replay builds read models into fresh tables and swaps them in (docs/projections.md).
--
-- A rebuild runs as netledger_system in one transaction per projector: it creates an empty
-- copy of each of the projector's tables (columns, defaults, checks, primary key) in schema
-- netledger_rebuild, puts that schema first on its search_path so the projector's usual SQL
-- writes there, folds every event, builds the other indexes in one pass each over the
-- loaded rows (far cheaper than maintaining them row by row), and finally drops the old
-- table and moves the new one into public with the standard row-level security and grants.
-- Readers see the old table until the commit; only the final swap takes a lock on it.
--
-- The DDL runs in SECURITY DEFINER functions owned by the migration owner, limited to the
-- read-model tables (public.rm_*), so netledger_system needs no CREATE or ownership.

CREATE SCHEMA netledger_rebuild;
GRANT USAGE ON SCHEMA netledger_rebuild TO netledger_system;

-- The read-model table named p_table, or an error.
CREATE FUNCTION netledger_rm_table(p_table text) RETURNS regclass
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $$
DECLARE
    t regclass;
BEGIN
    IF p_table !~ '^rm_[a-z0-9_]{1,60}$' THEN
        RAISE EXCEPTION 'table % is not a read-model table (rm_*)', p_table
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    t := to_regclass(format('public.%I', p_table));
    IF t IS NULL THEN
        RAISE EXCEPTION 'read-model table public.% does not exist', p_table
            USING ERRCODE = 'undefined_table';
    END IF;
    RETURN t;
END $$;

-- The standard security of a read-model table: RLS forced, the app reads its tenant's rows,
-- the system role reads and writes every tenant's rows. The same as the DO block in
-- 20261122200001_read_models.sql, which new read-model migrations keep using.
CREATE FUNCTION netledger_rm_secure(p_schema text, p_table text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', p_schema, p_table);
    EXECUTE format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', p_schema, p_table);
    EXECUTE format('CREATE POLICY %I ON %I.%I FOR SELECT TO netledger_app '
                   'USING (tenant_id = public.netledger_current_tenant())',
                   p_table || '_app_select', p_schema, p_table);
    EXECUTE format('CREATE POLICY %I ON %I.%I FOR ALL TO netledger_system '
                   'USING (true) WITH CHECK (true)', p_table || '_system_all', p_schema, p_table);
    EXECUTE format('GRANT SELECT ON %I.%I TO netledger_app', p_schema, p_table);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO netledger_system',
                   p_schema, p_table);
END $$;

-- Step 1: an empty copy of public.<p_table> in netledger_rebuild, with its primary key only.
CREATE FUNCTION netledger_rm_rebuild_begin(p_table text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    t regclass := public.netledger_rm_table(p_table);
    pk record;
BEGIN
    IF to_regclass(format('netledger_rebuild.%I', p_table)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE netledger_rebuild.%I', p_table);
    END IF;
    EXECUTE format('CREATE TABLE netledger_rebuild.%I (LIKE public.%I INCLUDING DEFAULTS '
                   'INCLUDING CONSTRAINTS INCLUDING STORAGE)', p_table, p_table);
    FOR pk IN SELECT c.conname, pg_get_constraintdef(c.oid) AS def
                FROM pg_constraint c WHERE c.conrelid = t AND c.contype = 'p'
    LOOP
        EXECUTE format('ALTER TABLE netledger_rebuild.%I ADD CONSTRAINT %I %s',
                       p_table, pk.conname, pk.def);
    END LOOP;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON netledger_rebuild.%I '
                   'TO netledger_system', p_table);
END $$;

-- Step 2: the other indexes of public.<p_table>, built on the filled copy.
CREATE FUNCTION netledger_rm_rebuild_index(p_table text) RETURNS void
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
END $$;

-- Step 3: the copy replaces public.<p_table> (same name, indexes, security).
CREATE FUNCTION netledger_rm_rebuild_swap(p_table text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM public.netledger_rm_table(p_table);
    IF to_regclass(format('netledger_rebuild.%I', p_table)) IS NULL THEN
        RAISE EXCEPTION 'no rebuilt copy of % in this transaction', p_table;
    END IF;
    EXECUTE format('DROP TABLE public.%I', p_table);
    EXECUTE format('ALTER TABLE netledger_rebuild.%I SET SCHEMA public', p_table);
    -- The copy's grant to the system role is part of the standard set below.
    EXECUTE format('REVOKE ALL ON public.%I FROM netledger_system', p_table);
    PERFORM public.netledger_rm_secure('public', p_table);
END $$;

REVOKE ALL ON FUNCTION netledger_rm_table(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION netledger_rm_secure(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION netledger_rm_rebuild_begin(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION netledger_rm_rebuild_index(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION netledger_rm_rebuild_swap(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION netledger_rm_rebuild_begin(text) TO netledger_system;
GRANT EXECUTE ON FUNCTION netledger_rm_rebuild_index(text) TO netledger_system;
GRANT EXECUTE ON FUNCTION netledger_rm_rebuild_swap(text) TO netledger_system;
