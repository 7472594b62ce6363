// The signed-in user: who they are, their role and permissions, and a password change.

import { useState, type FormEvent } from "react";

import { api } from "../api/client";
import { useAuth } from "../auth";
import { useAction } from "../hooks";
import { Field, ProblemBox, Section, Time } from "../ui";

export function AccountPage() {
  const auth = useAuth();
  const me = auth.me;
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const change = useAction(async (_key: string, body: { current_password: string; new_password: string }) => {
    const r = await api("post", "/api/v1/auth/password", { body });
    setCurrent("");
    setNext("");
    return r.data;
  });
  if (!me) return null;
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void change.run({ current_password: current, new_password: next });
  };
  return (
    <div className="page">
      <h1>Account</h1>
      <div className="grid-2">
        <Section title="You">
          <dl className="facts">
            {me.user ? (
              <>
                <dt>E-mail</dt>
                <dd>{me.user.email}</dd>
                <dt>Name</dt>
                <dd>{me.user.display_name}</dd>
                <dt>Since</dt>
                <dd>
                  <Time at={me.user.created_at} />
                </dd>
              </>
            ) : null}
            <dt>Role</dt>
            <dd data-testid="my-role">{me.role ?? me.kind}</dd>
            <dt>Tenant</dt>
            <dd>
              <code>{me.tenant_id}</code>
            </dd>
            <dt>Permissions</dt>
            <dd className="small">{me.permissions.join(", ")}</dd>
          </dl>
        </Section>
        {me.user ? (
          <Section title="Change password">
            <form onSubmit={submit} aria-label="Change password">
              <Field label="Current password">
                <input type="password" required autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} />
              </Field>
              <Field label="New password" hint="at least 12 characters">
                <input type="password" required minLength={12} autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} />
              </Field>
              <ProblemBox error={change.error} onDismiss={change.clear} />
              {change.result ? <div className="notice">Password changed.</div> : null}
              <button type="submit" className="primary" disabled={change.pending}>
                Change password
              </button>
            </form>
          </Section>
        ) : null}
      </div>
    </div>
  );
}
