-- Finishes many workflows in one call (one commit): a worker batches the workflows whose
-- WorkflowFinished was just journaled instead of paying a commit (a WAL flush) and a pooled
-- connection for each. Each item runs netledger_workflow_finish with its own tenant set, so
-- row-level security applies per item exactly as for a single call. Callers sort the items
-- by tenant, so concurrent batches take the per-tenant device advisory locks in one order.
CREATE FUNCTION netledger_workflow_finish_many(
    p_tenants uuid[], p_workflows uuid[], p_attempts bigint[], p_outcomes text[],
    p_now timestamptz)
RETURNS TABLE (workflow_id uuid, done boolean)
LANGUAGE plpgsql
SECURITY INVOKER
AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_workflows, 1), 0) LOOP
        workflow_id := p_workflows[i];
        done := netledger_workflow_finish(p_tenants[i], p_workflows[i], p_attempts[i],
                                          p_outcomes[i], p_now);
        RETURN NEXT;
    END LOOP;
END $$;
GRANT EXECUTE ON FUNCTION netledger_workflow_finish_many(uuid[], uuid[], bigint[], text[], timestamptz) TO netledger_app;
