// Audit › Device as of (`/audit/as-of?device=<id>&at=<RFC 3339>`): a device as it was at a
// time (`GET /devices/{id}/as-of`: registration, state, the event position behind it) side by
// side with its configuration then (commit, SHA-256, recorded at, event position, the text
// from git, which the API checked against the event's SHA-256), the config versions known
// then (picking one moves the time to it), and the fleet at the same time
// (`GET /fleet/as-of`). The device and the time live in the URL; without a time, "now" (the
// moment the view was opened, shown).

import { useEffect, useMemo, useState } from "react";

import { api, type Schemas } from "../api/client";
import { usePaged, useResource } from "../hooks";
import { Link, useQueryState } from "../router";
import {
  Badge,
  Empty,
  Field,
  LoadMore,
  Loading,
  ProblemBox,
  Section,
  ShortId,
  Tags,
  Time,
  isoToLocal,
  localToIso,
  timeZoneLabel,
} from "../ui";

type DeviceAsOf = Schemas["DeviceAsOfDto"];
type ConfigRef = Schemas["ConfigRefDto"];
type FleetEntry = Schemas["FleetAsOfEntry"];

export function AuditAsOfView() {
  const [q, setQ] = useQueryState();
  const device = q.get("device") ?? "";
  const atParam = q.get("at") ?? "";
  // "Now" is the moment the view was opened (or "Now" was pressed), so every part of the
  // page shows the same instant.
  const [openedAt, setOpenedAt] = useState(() => new Date().toISOString());
  const at = atParam || openedAt;

  const [local, setLocal] = useState(isoToLocal(at));
  useEffect(() => {
    if (localToIso(local) !== at) setLocal(isoToLocal(at));
    // Only when the time changes from outside the input (a version picked, "Now", the URL).
  }, [at]);

  const devices = useResource(
    async () => (await api("get", "/api/v1/devices", { query: { limit: 500, include_removed: true } })).data.items,
    [],
  );
  const state = useResource<DeviceAsOf | null>(
    async () => (device ? (await api("get", "/api/v1/devices/{device_id}/as-of", { path: { device_id: device }, query: { at } })).data : null),
    [device, at],
  );
  // The tenant's last event position at `at` (the same on every page of the fleet).
  const [fleetPosition, setFleetPosition] = useState<{ at: string; position: number } | null>(null);
  const fleet = usePaged<FleetEntry>(
    async (cursor) => {
      const page = (await api("get", "/api/v1/fleet/as-of", { query: { at, cursor, limit: 100 } })).data;
      setFleetPosition({ at, position: page.position });
      return page;
    },
    [at],
  );

  const setAt = (iso: string | null) => setQ({ at: iso });
  const d = state.data;
  const deviceOptions = useMemo(() => [...(devices.data ?? [])].sort((a, b) => a.name.localeCompare(b.name)), [devices.data]);

  return (
    <>
      <form className="filters" aria-label="Device as of" onSubmit={(e) => e.preventDefault()}>
        <Field label="Device">
          <select value={device} onChange={(e) => setQ({ device: e.target.value || null })}>
            <option value="">pick a device</option>
            {device && devices.data && !devices.data.some((x) => x.id === device) ? <option value={device}>{device}</option> : null}
            {deviceOptions.map((x) => (
              <option key={x.id} value={x.id}>
                {x.name}
                {x.removed_at ? " (removed)" : ""}
              </option>
            ))}
          </select>
        </Field>
        <Field label="As of" hint={`your time zone: ${timeZoneLabel(new Date(at))}`}>
          <input
            type="datetime-local"
            step={1}
            value={local}
            onChange={(e) => {
              setLocal(e.target.value);
              const iso = localToIso(e.target.value);
              if (iso) setAt(iso);
            }}
          />
        </Field>
        <button
          type="button"
          onClick={() => {
            const now = new Date().toISOString();
            setOpenedAt(now);
            setAt(null);
          }}
        >
          Now
        </button>
        <div className="summary small muted" data-testid="asof-at" data-at={at}>
          {atParam ? "as of" : "now:"} <code>{at}</code>
        </div>
      </form>
      <ProblemBox error={devices.error} />

      {!device ? (
        <Empty>Pick a device (or one of the fleet below) to see it as it was.</Empty>
      ) : (
        <>
          <ProblemBox error={state.error} />
          {state.loading && !d ? <Loading what="the device then" /> : null}
          {d ? <DeviceThen d={d} onPickVersion={(v) => setAt(v.recorded_at)} /> : null}
        </>
      )}

      <Section
        title={
          <>
            Fleet as of <Time at={at} />
          </>
        }
        actions={
          fleetPosition?.at === at ? <span className="small muted">through event position {fleetPosition.position}</span> : null
        }
      >
        <ProblemBox error={fleet.error} />
        {fleet.items.length ? (
          <div className="table-wrap">
            <table className="table" data-testid="fleet-asof">
              <thead>
                <tr>
                  <th>Device</th>
                  <th>Status</th>
                  <th>RouterOS</th>
                  <th>Config commit</th>
                  <th>Event position</th>
                </tr>
              </thead>
              <tbody>
                {fleet.items.map((x) => (
                  <tr key={x.device_id} data-device-id={x.device_id} className={x.device_id === device ? "selected" : undefined}>
                    <td>
                      <button type="button" className="link" onClick={() => setQ({ device: x.device_id })}>
                        {x.name}
                      </button>
                    </td>
                    <td>
                      <Badge value={x.status} />
                    </td>
                    <td>{x.routeros_version ?? <span className="muted">—</span>}</td>
                    <td data-commit={x.config_commit ?? ""}>
                      <ShortId id={x.config_commit} />
                    </td>
                    <td className="mono small">{x.position}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : !fleet.loading && !fleet.error ? (
          <Empty>No device was registered at that time.</Empty>
        ) : null}
        <LoadMore hasMore={fleet.hasMore} loading={fleet.loading} onMore={() => void fleet.loadMore()} count={fleet.items.length} />
      </Section>
    </>
  );
}

function DeviceThen({ d, onPickVersion }: { d: DeviceAsOf; onPickVersion: (v: ConfigRef) => void }) {
  const c = d.config ?? null;
  return (
    <>
      <div className="grid-2 asof-grid">
        <Section
          title={
            <>
              {d.name ?? "(unnamed)"} <span className="muted small">as of</span> <Time at={d.at} />
            </>
          }
          actions={<Link to={`/devices/${d.device_id}`}>the device now</Link>}
        >
          <dl className="facts" data-testid="asof-state" data-position={d.position} data-registered={d.registered}>
            <dt>Name</dt>
            <dd data-fact="Name">{d.name ?? <span className="muted">—</span>}</dd>
            <dt>Registered</dt>
            <dd data-fact="Registered">
              {d.registered ? <Badge value="succeeded" label="registered" /> : <Badge value="failed" label="not registered" />}
              {d.removed ? (
                <>
                  {" "}
                  <Badge value="cancelled" label="removed by then" />
                </>
              ) : null}
            </dd>
            <dt>Status</dt>
            <dd data-fact="Status">
              <Badge value={d.status} />
              {d.offline_reason ? <span className="small muted"> {d.offline_reason}</span> : null}
            </dd>
            <dt>RouterOS</dt>
            <dd data-fact="RouterOS">{d.routeros_version ?? <span className="muted">—</span>}</dd>
            <dt>Board</dt>
            <dd data-fact="Board">{d.board_name ?? <span className="muted">—</span>}</dd>
            <dt>Identity</dt>
            <dd data-fact="Identity">{d.identity ?? <span className="muted">—</span>}</dd>
            <dt>Endpoint</dt>
            <dd data-fact="Endpoint" className="mono small">
              {d.host ? `${d.host}${d.port ? `:${d.port}` : ""}` : <span className="muted">—</span>}
            </dd>
            <dt>Tags</dt>
            <dd data-fact="Tags">
              <Tags tags={d.tags} />
            </dd>
            <dt>Polling</dt>
            <dd data-fact="Polling">
              {d.polling_suspended ? <Badge value="open" label="suspended (breaker open)" /> : <Badge value="closed" label="active" />}
            </dd>
            <dt>Behind it</dt>
            <dd data-fact="Position" className="small">
              event position <strong className="mono">{d.position}</strong> (stream version {d.stream_version}) — the device's last event at
              or before this time
            </dd>
          </dl>
        </Section>
        <Section title="Configuration then">
          {c ? (
            <div className="config-text" data-testid="asof-config" data-commit={c.commit} data-sha256={c.sha256} data-position={c.position}>
              <dl className="facts small">
                <dt>Commit</dt>
                <dd className="mono" data-fact="Commit">
                  {c.commit}
                </dd>
                <dt>SHA-256</dt>
                <dd className="mono wrap" data-fact="SHA-256">
                  {c.sha256}
                </dd>
                <dt>Recorded</dt>
                <dd>
                  <Time at={c.recorded_at} /> <span className="muted mono">{c.recorded_at}</span>
                </dd>
                <dt>Event</dt>
                <dd>
                  {c.event_type} at position <span className="mono">{c.position}</span>
                </dd>
              </dl>
              {d.config_text !== null && d.config_text !== undefined ? (
                <pre className="code" data-testid="asof-config-text">
                  {d.config_text}
                </pre>
              ) : (
                <Empty>The text of this version is not available.</Empty>
              )}
            </div>
          ) : (
            <Empty>No configuration had been recorded for this device by then.</Empty>
          )}
        </Section>
      </div>
      <Section title={`Config versions known then (${d.versions.length})`}>
        {d.versions.length ? (
          <div className="table-wrap">
            <table className="table" data-testid="asof-versions">
              <thead>
                <tr>
                  <th>Recorded</th>
                  <th>Event</th>
                  <th>Position</th>
                  <th>Commit</th>
                  <th>SHA-256</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {d.versions.map((v) => {
                  const current = c?.position === v.position;
                  return (
                    <tr key={`${v.position}-${v.commit}`} data-commit={v.commit} data-position={v.position} className={current ? "selected" : undefined}>
                      <td>
                        <Time at={v.recorded_at} />
                      </td>
                      <td>{v.event_type}</td>
                      <td className="mono small">{v.position}</td>
                      <td>
                        <ShortId id={v.commit} />
                      </td>
                      <td className="mono small" title={v.sha256}>
                        {v.sha256.slice(0, 16)}…
                      </td>
                      <td>
                        {current ? (
                          <span className="muted small">shown</span>
                        ) : (
                          <button type="button" className="link" aria-label={`as of version ${v.commit.slice(0, 8)}`} onClick={() => onPickVersion(v)}>
                            as of this version
                          </button>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        ) : (
          <Empty>None.</Empty>
        )}
      </Section>
    </>
  );
}
