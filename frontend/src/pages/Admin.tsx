// Administration: users and roles (create, change role, disable, reset password; updates
// with If-Match), API keys (issue with scopes you hold — the secret is shown once — and
// revoke), and tenants (rename yours; list and create with tenants:admin).

import { useState, type FormEvent } from "react";

import { api, toProblem, type ApiProblem, type Schemas } from "../api/client";
import { ROLES } from "../api/enums";
import { useAuth } from "../auth";
import { useAction, usePaged, useResource } from "../hooks";
import { Badge, ConfirmButton, Empty, Field, LoadMore, ProblemBox, Section, ShortId, Time, localToIso } from "../ui";

type User = Schemas["UserDto"];
type Role = Schemas["RoleName"];

const ROLE_HELP: Record<Role, string> = {
  viewer: "reads everything but identity and audit",
  operator: "runs workflows, edits devices, starts rollouts",
  approver: "stops and resumes rollouts, cancels workflows",
  auditor: "reads identity events, checkpoints, verification",
  tenant_admin: "everything in the tenant, users and keys",
  super_admin: "also lists and creates tenants",
};

export function AdminPage() {
  const auth = useAuth();
  const [tab, setTab] = useState<"users" | "keys" | "tenants">(auth.can("users:read") ? "users" : "keys");
  const tabs: [typeof tab, string, boolean][] = [
    ["users", "Users & roles", auth.can("users:read")],
    ["keys", "API keys", auth.can("apikeys:read")],
    ["tenants", "Tenant", auth.can("tenants:read")],
  ];
  return (
    <div className="page">
      <div className="page-head">
        <h1>Administration</h1>
        <div className="tabs" role="tablist">
          {tabs
            .filter(([, , ok]) => ok)
            .map(([k, label]) => (
              <button key={k} type="button" role="tab" aria-selected={tab === k} className={tab === k ? "tab active" : "tab"} onClick={() => setTab(k)}>
                {label}
              </button>
            ))}
        </div>
      </div>
      {tab === "users" ? <Users /> : null}
      {tab === "keys" ? <ApiKeys /> : null}
      {tab === "tenants" ? <Tenants /> : null}
    </div>
  );
}

function grantableRoles(myRole: Role | null | undefined): Role[] {
  // Nobody can grant a role with permissions they lack (the server checks it too).
  return myRole === "super_admin" ? ROLES : ROLES.filter((r) => r !== "super_admin");
}

function Users() {
  const auth = useAuth();
  const users = usePaged<User>(async (cursor) => (await api("get", "/api/v1/users", { query: { cursor, limit: 100 } })).data, []);
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<string | null>(null);
  const canWrite = auth.can("users:write");
  return (
    <>
      {canWrite ? (
        <div className="toolbar">
          <button type="button" className="primary" onClick={() => setCreating((c) => !c)}>
            {creating ? "Close" : "New user"}
          </button>
        </div>
      ) : null}
      {creating ? (
        <NewUser
          onDone={() => {
            setCreating(false);
            void users.reload();
          }}
        />
      ) : null}
      <Section title="Users">
        <ProblemBox error={users.error} />
        <div className="table-wrap">
          <table className="table" data-testid="user-table">
            <thead>
              <tr>
                <th>E-mail</th>
                <th>Name</th>
                <th>Role</th>
                <th>Status</th>
                <th>Created</th>
                <th>Version</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {users.items.map((u) => (
                <tr key={u.id} data-user={u.email}>
                  <td>{u.email}</td>
                  <td>{u.display_name}</td>
                  <td>
                    <span className="tag" title={ROLE_HELP[u.role]}>
                      {u.role}
                    </span>
                  </td>
                  <td>{u.disabled ? <Badge value="failed" label="disabled" /> : <Badge value="succeeded" label="active" />}</td>
                  <td>
                    <Time at={u.created_at} />
                  </td>
                  <td>{u.version}</td>
                  <td>
                    {canWrite ? (
                      <button type="button" className="link" onClick={() => setEditing(editing === u.id ? null : u.id)}>
                        {editing === u.id ? "close" : "edit"}
                      </button>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <LoadMore hasMore={users.hasMore} loading={users.loading} onMore={() => void users.loadMore()} count={users.items.length} />
      </Section>
      {editing ? (
        <EditUser
          key={editing}
          id={editing}
          self={auth.me?.id === editing}
          onChanged={() => void users.reload()}
          onClose={() => setEditing(null)}
        />
      ) : null}
    </>
  );
}

function NewUser({ onDone }: { onDone: () => void }) {
  const auth = useAuth();
  const [form, setForm] = useState({ email: "", display_name: "", role: "viewer" as Role, password: "" });
  const create = useAction(async (_key: string, body: Schemas["NewUser"]) => (await api("post", "/api/v1/users", { body })).data);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (await create.run({ ...form, email: form.email.trim() })) onDone();
  };
  return (
    <form className="card form-card" onSubmit={submit} aria-label="New user">
      <h2>New user</h2>
      <div className="grid-2">
        <Field label="E-mail">
          <input type="email" required value={form.email} onChange={(e) => setForm({ ...form, email: e.target.value })} />
        </Field>
        <Field label="Display name">
          <input required value={form.display_name} onChange={(e) => setForm({ ...form, display_name: e.target.value })} />
        </Field>
        <Field label="Role" hint={ROLE_HELP[form.role]}>
          <select value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value as Role })}>
            {grantableRoles(auth.me?.role).map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Initial password" hint="at least 12 characters">
          <input
            type="password"
            required
            minLength={12}
            autoComplete="new-password"
            value={form.password}
            onChange={(e) => setForm({ ...form, password: e.target.value })}
          />
        </Field>
      </div>
      <ProblemBox error={create.error} />
      <div className="form-actions">
        <button type="submit" className="primary" disabled={create.pending}>
          {create.pending ? "Creating…" : "Create user"}
        </button>
      </div>
    </form>
  );
}

function EditUser({ id, self, onChanged, onClose }: { id: string; self: boolean; onChanged: () => void; onClose: () => void }) {
  const auth = useAuth();
  const user = useResource(async () => {
    const r = await api("get", "/api/v1/users/{user_id}", { path: { user_id: id } });
    return { user: r.data, etag: r.etag ?? String(r.data.version) };
  }, [id]);
  const [name, setName] = useState<string | null>(null);
  const [role, setRole] = useState<Role | null>(null);
  const [password, setPassword] = useState("");
  const [error, setError] = useState<ApiProblem | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [pending, setPending] = useState(false);

  if (!user.data) return <ProblemBox error={user.error} />;
  const u = user.data.user;
  const etag = user.data.etag;

  const run = async (what: string, f: () => Promise<unknown>) => {
    setPending(true);
    setError(null);
    setNotice(null);
    try {
      await f();
      setNotice(`${what} saved.`);
      setPassword("");
      onChanged();
      await user.reload();
    } catch (e) {
      const p = toProblem(e);
      setError(p);
      if (p.status === 412) {
        setNotice("This user changed since you opened it; it has been reloaded. Check and apply again.");
        await user.reload();
      }
    } finally {
      setPending(false);
    }
  };
  const patch = (what: string, body: Schemas["UserPatch"]) =>
    run(what, () => api("patch", "/api/v1/users/{user_id}", { path: { user_id: id }, body, ifMatch: etag }));

  return (
    <Section title={`Edit ${u.email}`} actions={<button type="button" onClick={onClose}>Close</button>}>
      <div className="small muted">Version {u.version}; changes are sent with If-Match.</div>
      <div className="grid-2">
        <form
          className="inline-edit"
          onSubmit={(e) => {
            e.preventDefault();
            void patch("Display name", { display_name: name ?? u.display_name });
          }}
        >
          <Field label="Display name">
            <input value={name ?? u.display_name} onChange={(e) => setName(e.target.value)} />
          </Field>
          <button type="submit" disabled={pending}>
            Save name
          </button>
        </form>
        <form
          className="inline-edit"
          onSubmit={(e) => {
            e.preventDefault();
            void patch("Role", { role: role ?? u.role });
          }}
        >
          <Field label="Role" hint={`${ROLE_HELP[role ?? u.role]}; applies at the user's next token refresh`}>
            <select value={role ?? u.role} onChange={(e) => setRole(e.target.value as Role)} disabled={self}>
              {grantableRoles(auth.me?.role).map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </Field>
          <button type="submit" disabled={pending || self} title={self ? "You cannot change your own role here" : undefined}>
            Save role
          </button>
        </form>
        <form
          className="inline-edit"
          onSubmit={(e) => {
            e.preventDefault();
            void run("Password", () =>
              api("put", "/api/v1/users/{user_id}/password", { path: { user_id: id }, body: { password }, ifMatch: etag }),
            );
          }}
        >
          <Field label="New password" hint="at least 12 characters">
            <input type="password" minLength={12} required value={password} autoComplete="new-password" onChange={(e) => setPassword(e.target.value)} />
          </Field>
          <button type="submit" disabled={pending}>
            Reset password
          </button>
        </form>
        <div className="inline-edit">
          {u.disabled ? (
            <button type="button" disabled={pending} onClick={() => void patch("Enable", { disabled: false })}>
              Enable user
            </button>
          ) : (
            <ConfirmButton
              danger
              disabled={pending || self}
              question="Disable this user and revoke all sessions?"
              onConfirm={() => void patch("Disable", { disabled: true })}
            >
              Disable user
            </ConfirmButton>
          )}
        </div>
      </div>
      <ProblemBox error={error} onDismiss={() => setError(null)} />
      {notice ? <div className="notice">{notice}</div> : null}
    </Section>
  );
}

function ApiKeys() {
  const auth = useAuth();
  const keys = usePaged(async (cursor) => (await api("get", "/api/v1/api-keys", { query: { cursor, limit: 100 } })).data, []);
  const [created, setCreated] = useState<Schemas["CreatedApiKey"] | null>(null);
  const revoke = useAction(async (_key: string, id: string) => {
    const r = await api("delete", "/api/v1/api-keys/{key_id}", { path: { key_id: id } });
    void keys.reload();
    return r.data;
  });
  return (
    <>
      {auth.can("apikeys:write") ? (
        <NewApiKey
          onCreated={(k) => {
            setCreated(k);
            void keys.reload();
          }}
        />
      ) : null}
      {created ? (
        <div className="secret-once card" data-testid="api-key-secret">
          <h2>Key “{created.key.name}” issued</h2>
          <p>
            Copy the secret now: <strong>it is shown only this once</strong> and cannot be retrieved later.
          </p>
          <div className="secret-row">
            <code className="secret">{created.secret}</code>
            <button type="button" onClick={() => void navigator.clipboard?.writeText(created.secret)}>
              Copy
            </button>
            <button type="button" onClick={() => setCreated(null)}>
              I stored it
            </button>
          </div>
          <p className="small muted">Send it as <code>Authorization: Bearer &lt;secret&gt;</code>.</p>
        </div>
      ) : null}
      <Section title="API keys">
        <ProblemBox error={keys.error} />
        <ProblemBox error={revoke.error} onDismiss={revoke.clear} />
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th>Name</th>
                <th>Prefix</th>
                <th>Scopes</th>
                <th>Created</th>
                <th>Expires</th>
                <th>Status</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {keys.items.map((k) => (
                <tr key={k.id}>
                  <td>{k.name}</td>
                  <td>
                    <code>{k.prefix}</code>
                  </td>
                  <td className="small">{k.scopes.join(", ")}</td>
                  <td>
                    <Time at={k.created_at} />
                  </td>
                  <td>{k.expires_at ? <Time at={k.expires_at} /> : <span className="muted">never</span>}</td>
                  <td>
                    {k.revoked_at ? (
                      <Badge value="cancelled" label="revoked" />
                    ) : k.expires_at && Date.parse(k.expires_at) < Date.now() ? (
                      <Badge value="cancelled" label="expired" />
                    ) : (
                      <Badge value="succeeded" label="active" />
                    )}
                  </td>
                  <td>
                    {auth.can("apikeys:write") && !k.revoked_at ? (
                      <ConfirmButton danger question="Revoke now?" onConfirm={() => void revoke.run(k.id)}>
                        Revoke
                      </ConfirmButton>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {!keys.loading && !keys.items.length ? <Empty>No API keys.</Empty> : null}
        <LoadMore hasMore={keys.hasMore} loading={keys.loading} onMore={() => void keys.loadMore()} count={keys.items.length} />
      </Section>
    </>
  );
}

function NewApiKey({ onCreated }: { onCreated: (k: Schemas["CreatedApiKey"]) => void }) {
  const auth = useAuth();
  const grantable = (auth.me?.permissions ?? []).filter((p) => p !== "tenants:admin" && p !== "authenticated").sort();
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>(["devices:read"]);
  const [expires, setExpires] = useState("");
  const create = useAction(async (_key: string, body: Schemas["NewApiKey"]) => (await api("post", "/api/v1/api-keys", { body })).data);
  return (
    <form
      className="card form-card"
      aria-label="New API key"
      onSubmit={(e) => {
        e.preventDefault();
        void create.run({ name: name.trim(), scopes, expires_at: localToIso(expires) }).then((k) => {
          if (k) {
            setName("");
            onCreated(k);
          }
        });
      }}
    >
      <h2>Issue an API key</h2>
      <div className="grid-2">
        <Field label="Name" hint="what it is for">
          <input required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Expires" hint="optional">
          <input type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
        </Field>
      </div>
      <fieldset className="scopes">
        <legend>Scopes (only permissions you hold)</legend>
        {grantable.map((p) => (
          <label key={p} className="check">
            <input
              type="checkbox"
              checked={scopes.includes(p)}
              onChange={(e) => setScopes((s) => (e.target.checked ? [...s, p] : s.filter((x) => x !== p)))}
            />
            <code>{p}</code>
          </label>
        ))}
      </fieldset>
      <ProblemBox error={create.error} />
      <div className="form-actions">
        <button type="submit" className="primary" disabled={create.pending || !scopes.length}>
          {create.pending ? "Issuing…" : "Issue key"}
        </button>
      </div>
    </form>
  );
}

function Tenants() {
  const auth = useAuth();
  const tenantId = auth.me?.tenant_id ?? "";
  const mine = useResource(async () => {
    const r = await api("get", "/api/v1/tenants/{tenant_id}", { path: { tenant_id: tenantId } });
    return { tenant: r.data, etag: r.etag ?? String(r.data.version) };
  }, [tenantId]);
  const [name, setName] = useState<string | null>(null);
  const rename = useAction(async (_key: string, n: string, etag: string) => {
    const r = await api("patch", "/api/v1/tenants/{tenant_id}", { path: { tenant_id: tenantId }, body: { name: n }, ifMatch: etag });
    await mine.reload();
    setName(null);
    return r.data;
  });
  return (
    <>
      <Section title="Your tenant">
        <ProblemBox error={mine.error} />
        {mine.data ? (
          <>
            <dl className="facts">
              <dt>Name</dt>
              <dd>{mine.data.tenant.name}</dd>
              <dt>Id</dt>
              <dd>
                <code>{mine.data.tenant.id}</code>
              </dd>
              <dt>Created</dt>
              <dd>
                <Time at={mine.data.tenant.created_at} />
              </dd>
              <dt>Version</dt>
              <dd>{mine.data.tenant.version}</dd>
            </dl>
            {auth.can("tenants:write") ? (
              <form
                className="inline-edit"
                onSubmit={(e) => {
                  e.preventDefault();
                  if (mine.data) void rename.run((name ?? mine.data.tenant.name).trim(), mine.data.etag);
                }}
              >
                <Field label="Rename">
                  <input value={name ?? mine.data.tenant.name} onChange={(e) => setName(e.target.value)} />
                </Field>
                <button type="submit" disabled={rename.pending}>
                  Save
                </button>
              </form>
            ) : null}
            <ProblemBox error={rename.error} onDismiss={rename.clear} />
            {rename.error?.status === 412 ? (
              <div className="notice">
                The tenant changed meanwhile.{" "}
                <button type="button" className="link" onClick={() => void mine.reload()}>
                  Reload
                </button>
              </div>
            ) : null}
          </>
        ) : null}
      </Section>
      {auth.can("tenants:admin") ? <AllTenants /> : null}
    </>
  );
}

function AllTenants() {
  const tenants = usePaged(async (cursor) => (await api("get", "/api/v1/tenants", { query: { cursor, limit: 100 } })).data, []);
  const [name, setName] = useState("");
  const [admin, setAdmin] = useState({ email: "", display_name: "", password: "" });
  const create = useAction(async (_key: string, body: Schemas["NewTenant"]) => {
    const r = await api("post", "/api/v1/tenants", { body });
    void tenants.reload();
    return r.data;
  });
  return (
    <Section title="All tenants">
      <form
        className="inline-edit grid-3"
        aria-label="New tenant"
        onSubmit={(e) => {
          e.preventDefault();
          void create.run({
            name: name.trim(),
            admin: admin.email
              ? { email: admin.email.trim(), display_name: admin.display_name || admin.email, role: "tenant_admin", password: admin.password }
              : null,
          });
        }}
      >
        <Field label="New tenant name">
          <input required value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="First admin e-mail" hint="optional (tenant_admin)">
          <input type="email" value={admin.email} onChange={(e) => setAdmin({ ...admin, email: e.target.value })} />
        </Field>
        <Field label="Admin name">
          <input value={admin.display_name} onChange={(e) => setAdmin({ ...admin, display_name: e.target.value })} />
        </Field>
        <Field label="Admin password" hint="at least 12 characters">
          <input type="password" autoComplete="new-password" value={admin.password} onChange={(e) => setAdmin({ ...admin, password: e.target.value })} />
        </Field>
        <div className="form-actions">
          <button type="submit" className="primary" disabled={create.pending}>
            Create tenant
          </button>
        </div>
      </form>
      <ProblemBox error={create.error} onDismiss={create.clear} />
      <ProblemBox error={tenants.error} />
      <div className="table-wrap">
        <table className="table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Id</th>
              <th>Created</th>
            </tr>
          </thead>
          <tbody>
            {tenants.items.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>
                  <ShortId id={t.id} />
                </td>
                <td>
                  <Time at={t.created_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <LoadMore hasMore={tenants.hasMore} loading={tenants.loading} onMore={() => void tenants.loadMore()} count={tenants.items.length} />
    </Section>
  );
}
