// The fleet: devices from `GET /devices` (filter by status, tag, search; cursor pages),
// refreshed by live `device` events; registering a device (with optional SSH access and an
// optional SSH private key to log in with) for roles with devices:write.

import { useEffect, useMemo, useState, type FormEvent } from "react";

import { api, type Schemas } from "../api/client";
import { DEVICE_STATUSES, TRANSPORT_LABELS, TRANSPORTS, oneOf, type TransportKind } from "../api/enums";
import { useAuth } from "../auth";
import { useAction, useLiveRefresh, usePaged } from "../hooks";
import { Link, navigate, useQueryState } from "../router";
import {
  NO_SSH,
  SshFields,
  SshKeyField,
  isSshKeyProblem,
  sshFormProblem,
  sshInputOf,
  sshPrivateKeyOf,
  type SshForm,
} from "../ssh";
import { Badge, Empty, Field, LoadMore, ProblemBox, Tags, Time } from "../ui";

type Device = Schemas["DeviceSummaryDto"];

export function FleetPage() {
  const auth = useAuth();
  const [q, setQ] = useQueryState();
  const status = q.get("status") ?? "";
  const tag = q.get("tag") ?? "";
  const search = q.get("search") ?? "";
  const removed = q.get("removed") === "1";
  const [searchText, setSearchText] = useState(search);
  const [showRegister, setShowRegister] = useState(false);

  useEffect(() => setSearchText(search), [search]);
  // Search as you type, a moment after the last key.
  useEffect(() => {
    if (searchText === search) return;
    const t = setTimeout(() => setQ({ search: searchText.trim() || null }), 300);
    return () => clearTimeout(t);
  }, [searchText, search, setQ]);

  const devices = usePaged<Device>(
    async (cursor) =>
      (
        await api("get", "/api/v1/devices", {
          query: {
            status: oneOf(DEVICE_STATUSES, status),
            tag: tag || undefined,
            search: search || undefined,
            include_removed: removed || undefined,
            cursor,
            limit: 100,
          },
        })
      ).data,
    [status, tag, search, removed],
  );

  useLiveRefresh((e) => e.category === "device", () => void devices.reload(), [devices.reload], 2000);

  const knownTags = useMemo(() => {
    const s = new Set<string>();
    for (const d of devices.items) for (const t of d.tags) s.add(t);
    return [...s].sort();
  }, [devices.items]);

  const counts = useMemo(() => {
    const c = { online: 0, offline: 0, unknown: 0 };
    for (const d of devices.items) {
      if (d.status === "online") c.online++;
      else if (d.status === "offline") c.offline++;
      else c.unknown++;
    }
    return c;
  }, [devices.items]);

  return (
    <div className="page">
      <div className="page-head">
        <h1>Fleet</h1>
        <div className="page-actions">
          {auth.can("devices:write") ? (
            <button type="button" className="primary" onClick={() => setShowRegister((v) => !v)}>
              {showRegister ? "Close" : "Register device"}
            </button>
          ) : null}
        </div>
      </div>

      {showRegister ? (
        <RegisterDevice
          onDone={(id) => {
            setShowRegister(false);
            navigate(`/devices/${id}`);
          }}
        />
      ) : null}

      <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Device filters">
        <Field label="Search">
          <input
            type="search"
            name="search"
            placeholder="name, host or identity"
            value={searchText}
            onChange={(e) => setSearchText(e.target.value)}
          />
        </Field>
        <Field label="Status">
          <select name="status" value={status} onChange={(e) => setQ({ status: e.target.value || null })}>
            <option value="">any</option>
            {DEVICE_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Tag">
          <input
            name="tag"
            list="fleet-tags"
            placeholder="any"
            defaultValue={tag}
            key={tag}
            onBlur={(e) => setQ({ tag: e.target.value.trim() || null })}
            onKeyDown={(e) => {
              if (e.key === "Enter") setQ({ tag: (e.target as HTMLInputElement).value.trim() || null });
            }}
          />
          <datalist id="fleet-tags">
            {knownTags.map((t) => (
              <option key={t} value={t} />
            ))}
          </datalist>
        </Field>
        <label className="check">
          <input type="checkbox" checked={removed} onChange={(e) => setQ({ removed: e.target.checked ? "1" : null })} />
          include removed
        </label>
        <div className="summary" aria-live="polite">
          <Badge value="online" label={`${counts.online} online`} />
          <Badge value="offline" label={`${counts.offline} offline`} />
          {counts.unknown ? <Badge value="unknown" label={`${counts.unknown} unknown`} /> : null}
        </div>
      </form>

      <ProblemBox error={devices.error} />
      <div className="table-wrap">
        <table className="table" data-testid="device-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Status</th>
              <th>RouterOS</th>
              <th>Model</th>
              <th>Identity</th>
              <th>Endpoint</th>
              <th>Tags</th>
              <th>Breaker</th>
              <th>Last seen</th>
            </tr>
          </thead>
          <tbody>
            {devices.items.map((d) => (
              <tr key={d.id} data-device={d.name} className={d.removed_at ? "removed" : undefined}>
                <td>
                  <Link to={`/devices/${d.id}`} className="strong">
                    {d.name}
                  </Link>
                  {d.removed_at ? <span className="muted"> (removed)</span> : null}
                </td>
                <td>
                  <Badge value={d.status} />
                  {d.status === "offline" && d.offline_reason ? (
                    <div className="small muted">{d.offline_reason}</div>
                  ) : null}
                </td>
                <td>{d.routeros_version ?? <span className="muted">—</span>}</td>
                <td>{d.board_name ?? <span className="muted">—</span>}</td>
                <td>{d.identity ?? <span className="muted">—</span>}</td>
                <td>
                  <code>
                    {d.host}:{d.port}
                  </code>
                </td>
                <td>
                  <Tags tags={d.tags} />
                </td>
                <td>
                  <Badge value={d.breaker} />
                </td>
                <td>
                  <Time at={d.last_seen_at} relative />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {!devices.loading && !devices.items.length && !devices.error ? (
          <Empty>No devices match these filters.</Empty>
        ) : null}
      </div>
      <LoadMore
        hasMore={devices.hasMore}
        loading={devices.loading}
        onMore={() => void devices.loadMore()}
        count={devices.items.length}
      />
    </div>
  );
}

function RegisterDevice({ onDone }: { onDone: (id: string) => void }) {
  const [form, setForm] = useState({
    name: "",
    host: "",
    port: "",
    // API-SSL by default: the plain API sends the password in clear text.
    transport: "tls_verified" as TransportKind,
    fingerprint: "",
    username: "",
    password: "",
    tags: "",
    poll: "",
  });
  const [ssh, setSsh] = useState<SshForm>(NO_SSH);
  const [sshChecked, setSshChecked] = useState(false);
  const [sshKey, setSshKey] = useState("");
  const set = (k: keyof typeof form) => (e: { target: { value: string } }) =>
    setForm((f) => ({ ...f, [k]: e.target.value }));
  const register = useAction(async (key: string, body: Schemas["NewDevice"]) => {
    const r = await api("post", "/api/v1/devices", { body, idempotencyKey: key });
    return r.data;
  });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    // A fingerprint the API would refuse is explained next to its field, not sent.
    if (sshFormProblem(ssh)) {
      setSshChecked(true);
      return;
    }
    const body: Schemas["NewDevice"] = {
      name: form.name.trim(),
      host: form.host.trim(),
      username: form.username,
      password: form.password,
      tags: splitTags(form.tags),
      port: form.port ? Number(form.port) : null,
      poll_interval_secs: form.poll ? Number(form.poll) : null,
      transport: {
        mode: form.transport,
        fingerprint_sha256: form.transport === "tls_pinned" ? form.fingerprint.trim() || null : null,
      },
      ssh: sshInputOf(ssh),
    };
    const key = sshPrivateKeyOf(sshKey);
    if (key) body.ssh_private_key = key;
    const r = await register.run(body);
    if (r) onDone(r.device_id);
  };

  return (
    <form className="card form-card" onSubmit={submit} aria-label="Register device">
      <h2>Register a device</h2>
      <div className="grid-3">
        <Field label="Name" hint="letters, digits, . _ -">
          <input required value={form.name} onChange={set("name")} />
        </Field>
        <Field label="Host">
          <input required value={form.host} onChange={set("host")} placeholder="10.0.0.1" />
        </Field>
        <Field label="Port" hint="default 8729 TLS, 8728 plain">
          <input type="number" min={1} max={65535} value={form.port} onChange={set("port")} />
        </Field>
        <Field label="Transport">
          <select
            value={form.transport}
            onChange={(e) => setForm((f) => ({ ...f, transport: oneOf(TRANSPORTS, e.target.value) ?? "tls_verified" }))}
          >
            {TRANSPORTS.map((t) => (
              <option key={t} value={t}>
                {TRANSPORT_LABELS[t]}
              </option>
            ))}
          </select>
        </Field>
        {form.transport === "tls_pinned" ? (
          <Field label="Certificate SHA-256">
            <input required value={form.fingerprint} onChange={set("fingerprint")} />
          </Field>
        ) : null}
        <Field label="API user">
          <input required value={form.username} onChange={set("username")} autoComplete="off" />
        </Field>
        <Field label="API password" hint="stored encrypted, never shown again">
          <input required type="password" value={form.password} onChange={set("password")} autoComplete="new-password" />
        </Field>
        <Field label="Tags" hint="comma separated">
          <input value={form.tags} onChange={set("tags")} />
        </Field>
        <Field label="Poll interval (s)" hint="5-86400, default 60">
          <input type="number" min={5} max={86400} value={form.poll} onChange={set("poll")} />
        </Field>
      </div>
      <SshFields value={ssh} onChange={setSsh} optional showErrors={sshChecked} />
      <SshKeyField value={sshKey} onChange={setSshKey} invalid={isSshKeyProblem(register.error)} />
      <ProblemBox error={register.error} />
      <div className="form-actions">
        <button type="submit" className="primary" disabled={register.pending}>
          {register.pending ? "Registering…" : "Register"}
        </button>
      </div>
    </form>
  );
}

export function splitTags(s: string): string[] {
  return [
    ...new Set(
      s
        .split(/[,\s]+/)
        .map((t) => t.trim())
        .filter(Boolean),
    ),
  ];
}
