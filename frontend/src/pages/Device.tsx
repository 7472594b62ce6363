// One device: facts from the read model and its stream's folded state, actions (backup,
// config push, firmware upgrade) followed live, metrics over a range, config history with
// diffs and as-of views, SSH access, the SSH login (password, or a key whose public half is
// shown to import on the device) and the path of each file job, and versioned edits (tags,
// credentials with an optional SSH private key, endpoint, SSH access, removal) sent with
// `If-Match`; a 412 tells the user the device changed and reloads it.

import { useCallback, useEffect, useMemo, useState, type FormEvent, type ReactNode } from "react";

import { api, ApiProblem, toProblem, type Schemas } from "../api/client";
import {
  FILE_JOB_LABELS,
  RESOLUTION_LABELS,
  TRANSPORT_LABELS,
  TRANSPORTS,
  VIA_LABELS,
  oneOf,
  type FileJob,
  type MetricsResolution,
} from "../api/enums";
import { useAuth } from "../auth";
import { LineChart, type Series } from "../chart";
import { UnifiedDiff, preloadDiffViewer } from "../diff";
import { useAction, useLiveRefresh, usePaged, useResource } from "../hooks";
import { Link, navigate } from "../router";
import {
  SshFields,
  SshKeyField,
  isSshKeyProblem,
  openSshFingerprint,
  sshFormFrom,
  sshFormProblem,
  sshInputOf,
  sshPrivateKeyOf,
  type SshForm,
} from "../ssh";
import {
  Badge,
  ConfirmButton,
  CopyBox,
  Empty,
  Field,
  LoadMore,
  Loading,
  ProblemBox,
  Section,
  ShortId,
  Tags,
  Time,
  formatBytes,
  localToIso,
} from "../ui";
import { splitTags } from "./Fleet";
import { RunCard, RunTable, type Run } from "./Workflows";

type Device = Schemas["DeviceDto"];
type DeviceState = Schemas["DeviceStateDto"];
type ConfigVersion = Schemas["ConfigVersionDto"];

export function DevicePage({ id }: { id: string }) {
  const auth = useAuth();
  // The config history's diff viewer is a separate chunk: fetch it before it is needed.
  useEffect(() => preloadDiffViewer(), []);
  const device = useResource(
    async () => (await api("get", "/api/v1/devices/{device_id}", { path: { device_id: id } })).data,
    [id],
  );
  const state = useResource(
    async () => (await api("get", "/api/v1/devices/{device_id}/state", { path: { device_id: id } })).data,
    [id],
  );
  const runs = usePaged<Run>(
    async (cursor) =>
      (await api("get", "/api/v1/workflows", { query: { device_id: id, cursor, limit: 10 } })).data,
    [id],
  );
  const [configTick, setConfigTick] = useState(0);
  const [started, setStarted] = useState<{ id: string; title: string }[]>([]);

  const reloadAll = useCallback(async () => {
    setConfigTick((t) => t + 1);
    await Promise.all([device.reload(), state.reload()]);
  }, [device.reload, state.reload]);

  useLiveRefresh((e) => e.stream === `device-${id}`, () => void reloadAll(), [id, reloadAll]);
  useLiveRefresh(
    (e) => e.category === "workflow" && (started.some((s) => e.stream === `workflow-${s.id}`) || e.event_type === "WorkflowStarted"),
    () => void runs.reload(),
    [started, runs.reload],
  );

  const onStarted = (wf: string, title: string) => {
    setStarted((s) => [{ id: wf, title }, ...s.filter((x) => x.id !== wf)].slice(0, 5));
    void runs.reload();
  };

  if (!device.data) {
    return (
      <div className="page">
        <h1>Device</h1>
        <ProblemBox error={device.error} />
        {!device.error ? <Loading what="device" /> : null}
      </div>
    );
  }
  const d = device.data;
  const canRun = auth.can("workflows:run");
  const removed = !!d.removed_at;

  return (
    <div className="page" data-device-id={d.id}>
      <div className="page-head">
        <h1>
          <Link to="/devices" className="muted">
            Fleet
          </Link>{" "}
          / <span data-testid="device-name">{d.name}</span> <Badge value={removed ? "removed" : d.status} />{" "}
          {d.breaker === "open" ? <Badge value="open" label="breaker open" /> : null}
          {d.rollback_timers ? <Badge value="open" label="rollback timer left" /> : null}
        </h1>
      </div>
      <ProblemBox error={device.error} />
      {d.rollback_timers ? <RollbackTimersCondition c={d.rollback_timers} /> : null}
      {removed ? (
        <div className="notice">
          Removed <Time at={d.removed_at} />
          {d.removed_reason ? `: ${d.removed_reason}` : ""}.
        </div>
      ) : null}

      <div className="grid-2">
        <Section title="Facts">
          <Facts d={d} state={state.data} stateError={state.error} />
        </Section>
        <div className="stack">
          {canRun && !removed ? (
            <Section title="Actions">
              <Actions deviceId={id} onStarted={onStarted} />
            </Section>
          ) : null}
          {started.length ? (
            <Section title="Started here">
              {started.map((s) => (
                <RunCard key={s.id} id={s.id} title={s.title} onFinished={() => void reloadAll()} />
              ))}
            </Section>
          ) : null}
          <Section
            title="Recent workflows"
            actions={
              <Link to={`/workflows?device=${id}`} className="small">
                all
              </Link>
            }
          >
            <ProblemBox error={runs.error} />
            {runs.items.length ? <RunTable runs={runs.items} compact /> : <Empty>No workflows yet.</Empty>}
          </Section>
        </div>
      </div>

      <Metrics deviceId={id} />

      <ConfigHistory deviceId={id} tick={configTick} />

      {(auth.can("devices:write") || auth.can("devices:credentials")) && !removed ? (
        <Section title="Settings">
          <Settings device={d} onChanged={reloadAll} />
        </Section>
      ) : null}
    </div>
  );
}

// A device condition an operator resolves: Netledger rollback timers are (or may still be) on
// the device, and pushes refuse to arm until a workflow sees none (docs/push.md, step 1b).
function RollbackTimersCondition({ c }: { c: NonNullable<Device["rollback_timers"]> }) {
  return (
    <div className="problem" role="alert" data-testid="rollback-timers">
      <strong>Rollback timer left on the device.</strong>{" "}
      {c.source === "rollback_unconfirmed"
        ? "A rollback could not confirm its timer gone; that push keeps the device and retries."
        : "A push found it and refused to arm its own."}{" "}
      Such a timer can fire later and revert whatever was changed since, so config pushes are refused until it is
      gone. Finish or roll back the push that armed it, or remove the entry after checking the device; the next push
      that finds none clears this.
      <div className="small">
        Entries: {c.timers.map((t) => <code key={t}>{t} </code>)} · found by workflow{" "}
        <Link to={`/workflows/${c.workflow_id}`}>
          <ShortId id={c.workflow_id} />
        </Link>{" "}
        · since <Time at={c.since} relative />
      </div>
      <div className="small">{c.detail}</div>
    </div>
  );
}

/** A fact: `k` names it (and is its `data-fact`); `label`, when given, is shown instead. */
function Row({ k, label, children }: { k: string; label?: string; children: ReactNode }) {
  return (
    <>
      <dt>{label ?? k}</dt>
      <dd data-fact={k}>{children ?? <span className="muted">—</span>}</dd>
    </>
  );
}

function Facts({ d, state, stateError }: { d: Device; state: DeviceState | null; stateError: ApiProblem | null }) {
  return (
    <>
      <dl className="facts" data-testid="facts">
        <Row k="Status">
          <Badge value={d.status} />
          {d.offline_reason ? <span className="small"> {d.offline_reason}</span> : null}
        </Row>
        <Row k="Identity">{d.identity}</Row>
        <Row k="RouterOS">{d.routeros_version}</Row>
        <Row k="Board">{d.board_name}</Row>
        <Row k="Architecture">{d.architecture}</Row>
        <Row k="RouterBOARD firmware">{d.routerboard_firmware}</Row>
        <Row k="Endpoint">
          <code>
            {d.endpoint.host}:{d.endpoint.port}
          </code>{" "}
          <span className="muted">{d.endpoint.transport.replace(/_/g, " ")}</span>
          {d.endpoint.tls_fingerprint ? (
            <div className="small mono wrap" title="pinned certificate SHA-256">
              {d.endpoint.tls_fingerprint}
            </div>
          ) : null}
        </Row>
        <Row k="SSH access">
          <SshAccessFact ssh={d.endpoint.ssh} />
        </Row>
        <Row k="SSH login" label={d.ssh_client_key ? "SSH login key" : undefined}>
          <SshLoginFact d={d} />
        </Row>
        <Row k="File access">
          <FileAccessFact d={d} />
        </Row>
        <Row k="API user">
          {d.username} <span className="muted small">(key {d.credentials_key_id})</span>
        </Row>
        <Row k="Tags">
          <Tags tags={d.tags} />
        </Row>
        <Row k="Poll interval">{d.poll_interval_secs} s</Row>
        <Row k="Breaker">
          <Badge value={d.breaker} />
          {d.breaker === "open" ? (
            <span className="small">
              {" "}
              {d.breaker_failures} failures, retry <Time at={d.breaker_retry_at} relative />
            </span>
          ) : null}
          {d.breaker_last_error ? <div className="small step-error">{d.breaker_last_error}</div> : null}
        </Row>
        <Row k="Last seen">
          <Time at={d.last_seen_at} relative />
        </Row>
        <Row k="Last snapshot">
          {d.last_snapshot_commit ? (
            <>
              <Time at={d.last_snapshot_at} relative /> <ShortId id={d.last_snapshot_commit} />
            </>
          ) : null}
        </Row>
        <Row k="Last drift">{d.last_drift_at ? <Time at={d.last_drift_at} relative /> : null}</Row>
        <Row k="Registered">
          <Time at={d.registered_at} />
        </Row>
        <Row k="Latest event">
          <Time at={d.last_event_at} relative />
        </Row>
        <Row k="Version">
          <span data-testid="device-version">{d.version}</span>
          {state && state.version !== d.version ? (
            <span className="small muted"> (stream at {state.version}; the list catches up)</span>
          ) : null}
        </Row>
        <Row k="Polling">
          {state ? (state.polling_suspended ? <Badge value="open" label="suspended" /> : "active") : null}
        </Row>
        <Row k="Id">
          <code className="small">{d.id}</code>
        </Row>
      </dl>
      <ProblemBox error={stateError} />
      <div className="small">
        <Link to={`/events?stream=device-${d.id}`}>Event history of this device</Link>
      </div>
    </>
  );
}

function SshAccessFact({ ssh }: { ssh: Device["endpoint"]["ssh"] }) {
  if (!ssh) return <span className="muted">none (API only)</span>;
  const hex = ssh.host_key_sha256 ?? null;
  return (
    <div data-testid="ssh-access" data-trust={ssh.trust}>
      port {ssh.port}
      {hex ? (
        <>
          {" "}
          <span className="muted">host key pinned</span>
          <div className="small mono wrap" title={`SHA-256 (hex): ${hex}`} data-testid="ssh-host-key">
            {openSshFingerprint(hex)}
          </div>
        </>
      ) : (
        <>
          {" "}
          <Badge value="waiting" label="awaiting first use" />
          <div className="small muted">the first SSH connection's host key will be recorded and pinned</div>
        </>
      )}
    </div>
  );
}

/**
 * How SSH and SFTP log in: with the password, or with the credentials' SSH key, whose public
 * half is shown to import for the user on the device.
 */
function SshLoginFact({ d }: { d: Device }) {
  const key = d.ssh_client_key ?? null;
  if (!key)
    return (
      <span data-testid="ssh-login" data-login="password">
        password{" "}
        <span className="small muted">
          (the API user&apos;s{d.endpoint.ssh ? "" : ", once the device has SSH access"}; give credentials with an SSH
          private key to log in with a key)
        </span>
      </span>
    );
  return (
    <div data-testid="ssh-login" data-login="key" data-algorithm={key.algorithm}>
      <code>{key.algorithm}</code>{" "}
      <span className="mono" title={`SHA-256 (hex): ${key.fingerprint_sha256}`} data-testid="ssh-login-key-fingerprint">
        {key.fingerprint}
      </span>
      {d.endpoint.ssh ? null : <div className="small muted">used once the device has SSH access</div>}
      <CopyBox key={key.public_key} text={key.public_key} label="Public key" testId="ssh-login-public-key" />
      <div className="small muted" data-testid="ssh-login-key-hint">
        Import it for the user on the device: save the line as a file, upload it (e.g. as <code>netledger.pub</code>),
        then run{" "}
        <code className="wrap">
          /user ssh-keys import public-key-file=netledger.pub user={d.username}
        </code>
        . From then on RouterOS refuses SSH password logins for {d.username} unless{" "}
        <code>/ip ssh set always-allow-password-login=yes</code>; the API still logs in with the password.
      </div>
    </div>
  );
}

/** Which path each file job takes (API, SSH, unavailable), and what to do about unavailable ones. */
function FileAccessFact({ d }: { d: Device }) {
  const fa = d.file_access;
  if (!fa) return <span className="muted">known after the first poll (it depends on the RouterOS version)</span>;
  const jobs = (Object.keys(FILE_JOB_LABELS) as FileJob[]).map((k) => [k, fa[k]] as const);
  const missing = jobs.filter(([, via]) => via === "unavailable").map(([k]) => k);
  // RouterOS 6 caps the file contents the API reads near 4 KB: without SSH, large exports fail.
  const cappedExport = fa.export === "api" && !d.endpoint.ssh && /^6\./.test(d.routeros_version ?? "");
  return (
    <>
      <span className="tags" data-testid="file-access">
        {jobs.map(([k, via]) => (
          <span key={k} data-job={k} data-via={via}>
            {FILE_JOB_LABELS[k].label} <Badge value={via} label={VIA_LABELS[via]} />
          </span>
        ))}
      </span>
      {missing.length ? (
        <div className="small bad" data-testid="file-access-hint">
          RouterOS {d.routeros_version} cannot {missing.map((k) => FILE_JOB_LABELS[k].verb).join(" or ")} over the API
          ({missing.map((k) => FILE_JOB_LABELS[k].refused).join("; ")}
          {cappedExport ? "; exports over about 4 KB cannot be read" : ""}): give the device SSH access.
        </div>
      ) : null}
    </>
  );
}

// ---------------------------------------------------------------------------------------
// Actions

type ActionTab = "backup" | "push" | "firmware";

function Actions({ deviceId, onStarted }: { deviceId: string; onStarted: (wf: string, title: string) => void }) {
  const [tab, setTab] = useState<ActionTab>("backup");
  return (
    <div>
      <div className="tabs" role="tablist">
        {(
          [
            ["backup", "Backup"],
            ["push", "Config push"],
            ["firmware", "Firmware upgrade"],
          ] as const
        ).map(([k, label]) => (
          <button
            key={k}
            type="button"
            role="tab"
            aria-selected={tab === k}
            className={tab === k ? "tab active" : "tab"}
            onClick={() => setTab(k)}
          >
            {label}
          </button>
        ))}
      </div>
      {tab === "backup" ? <BackupForm deviceId={deviceId} onStarted={onStarted} /> : null}
      {tab === "push" ? <PushForm deviceId={deviceId} onStarted={onStarted} /> : null}
      {tab === "firmware" ? <FirmwareForm deviceId={deviceId} onStarted={onStarted} /> : null}
    </div>
  );
}

function startedNote(r: Schemas["WorkflowStartedDto"] | null) {
  if (!r) return null;
  return (
    <div className="notice small">
      {r.existed ? "Already started with this request: " : "Started "}
      <Link to={`/workflows/${r.workflow_id}`}>
        run <ShortId id={r.workflow_id} />
      </Link>
      {r.queued ? " — queued behind another workflow that holds this device." : "."}
    </div>
  );
}

function BackupForm({ deviceId, onStarted }: { deviceId: string; onStarted: (wf: string, t: string) => void }) {
  const start = useAction(async (key: string) => {
    const r = await api("post", "/api/v1/workflows/backup", { body: { device_id: deviceId }, idempotencyKey: key });
    onStarted(r.data.workflow_id, "Backup");
    return r.data;
  });
  return (
    <div className="action-form">
      <p className="small muted">
        Exports the configuration and takes a binary backup; the export is recorded as a new config version when it
        changed.
      </p>
      <ProblemBox error={start.error} onDismiss={start.clear} />
      {startedNote(start.result)}
      <button type="button" className="primary" disabled={start.pending} onClick={() => void start.run()}>
        {start.pending ? "Starting…" : "Start backup"}
      </button>
    </div>
  );
}

function PushForm({ deviceId, onStarted }: { deviceId: string; onStarted: (wf: string, t: string) => void }) {
  const [script, setScript] = useState("");
  const [changeId, setChangeId] = useState("");
  const [noTimer, setNoTimer] = useState(false);
  const start = useAction(async (key: string, body: Schemas["ConfigPushRequest"]) => {
    const r = await api("post", "/api/v1/workflows/config-push", { body, idempotencyKey: key });
    onStarted(r.data.workflow_id, `Config push${body.change_id ? ` ${body.change_id}` : ""}`);
    return r.data;
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void start.run({
      device_id: deviceId,
      script,
      change_id: changeId.trim() || null,
      allow_without_timer: noTimer,
    });
  };
  return (
    <form className="action-form" onSubmit={submit} aria-label="Config push">
      <p className="small muted">
        Two-phase push: snapshot, validate, arm a device-side rollback timer, apply, verify on a fresh connection, then
        commit — or roll back.
      </p>
      <Field label="Change (RouterOS script)">
        <textarea
          name="script"
          required
          rows={6}
          className="mono"
          spellCheck={false}
          placeholder={"/ip pool\nadd name=example ranges=10.0.0.10-10.0.0.20"}
          value={script}
          onChange={(e) => setScript(e.target.value)}
        />
      </Field>
      <div className="grid-2">
        <Field label="Change id" hint="optional; letters, digits, - _ (max 64); generated when empty">
          <input name="change_id" value={changeId} pattern="[A-Za-z0-9_-]{1,64}" onChange={(e) => setChangeId(e.target.value)} />
        </Field>
        <label className="check">
          <input type="checkbox" checked={noTimer} onChange={(e) => setNoTimer(e.target.checked)} />
          allow without a rollback timer (device-mode disables the scheduler)
        </label>
      </div>
      <ProblemBox error={start.error} onDismiss={start.clear} />
      {startedNote(start.result)}
      <button type="submit" className="primary" disabled={start.pending || !script.trim()}>
        {start.pending ? "Starting…" : "Push change"}
      </button>
    </form>
  );
}

function FirmwareForm({ deviceId, onStarted }: { deviceId: string; onStarted: (wf: string, t: string) => void }) {
  const cache = useResource(async () => (await api("get", "/api/v1/firmware")).data, []);
  const versions = useMemo(() => [...new Set((cache.data?.items ?? []).map((p) => p.version))], [cache.data]);
  const [version, setVersion] = useState("");
  const [routerboard, setRouterboard] = useState(false);
  const start = useAction(async (key: string, body: Schemas["FirmwareUpgradeRequest"]) => {
    const r = await api("post", "/api/v1/workflows/firmware-upgrade", { body, idempotencyKey: key });
    onStarted(r.data.workflow_id, `Firmware upgrade to ${body.version}`);
    return r.data;
  });
  const chosen = version || versions[0] || "";
  return (
    <form
      className="action-form"
      aria-label="Firmware upgrade"
      onSubmit={(e) => {
        e.preventDefault();
        void start.run({ device_id: deviceId, version: chosen, routerboard });
      }}
    >
      <ProblemBox error={cache.error} />
      {cache.data && !versions.length ? (
        <Empty>
          The firmware cache is empty. <Link to="/firmware">Upload a package</Link> first.
        </Empty>
      ) : (
        <>
          <Field label="Target version" hint="from the firmware cache">
            <select value={chosen} onChange={(e) => setVersion(e.target.value)}>
              {versions.map((v) => (
                <option key={v} value={v}>
                  {v}
                </option>
              ))}
            </select>
          </Field>
          <label className="check">
            <input type="checkbox" checked={routerboard} onChange={(e) => setRouterboard(e.target.checked)} />
            also upgrade the RouterBOARD firmware when it lags (second reboot)
          </label>
          <ProblemBox error={start.error} onDismiss={start.clear} />
          {startedNote(start.result)}
          <button type="submit" className="primary" disabled={start.pending || !chosen}>
            {start.pending ? "Starting…" : "Upgrade"}
          </button>
        </>
      )}
    </form>
  );
}

// ---------------------------------------------------------------------------------------
// Metrics

const RANGES: [string, number][] = [
  ["15 min", 15 * 60_000],
  ["1 hour", 3600_000],
  ["6 hours", 6 * 3600_000],
  ["24 hours", 24 * 3600_000],
  ["7 days", 7 * 86400_000],
  ["30 days", 30 * 86400_000],
];

interface Stat {
  min: number;
  avg: number;
  max: number;
}
interface DevicePoint {
  at: string;
  samples: number;
  cpu_load: Stat;
  memory_used: Stat;
  memory_total: number;
  hdd_free: Stat;
  hdd_total: number;
  uptime_secs: number;
}
interface IfPoint {
  at: string;
  interface: string;
  samples: number;
  rx_bps?: Stat | null;
  tx_bps?: Stat | null;
  rx_errors?: number | null;
  tx_errors?: number | null;
}

function bps(v: number): string {
  if (v >= 1e9) return `${(v / 1e9).toFixed(1)} Gb/s`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)} Mb/s`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)} kb/s`;
  return `${Math.round(v)} b/s`;
}

function Metrics({ deviceId }: { deviceId: string }) {
  const [range, setRange] = useState(RANGES[1][1]);
  const [resolution, setResolution] = useState<MetricsResolution>("auto");
  const [iface, setIface] = useState("");
  const [anchor, setAnchor] = useState(() => Date.now());
  const to = anchor;
  const from = anchor - range;
  const m = useResource(
    async () =>
      (
        await api("get", "/api/v1/devices/{device_id}/metrics", {
          path: { device_id: deviceId },
          query: { from: new Date(from).toISOString(), to: new Date(to).toISOString(), resolution },
        })
      ).data,
    [deviceId, from, to, resolution],
  );
  const dev = (m.data?.device ?? []) as unknown as DevicePoint[];
  const ifs = (m.data?.interfaces ?? []) as unknown as IfPoint[];
  const ifNames = useMemo(() => [...new Set(ifs.map((p) => p.interface))].sort(), [ifs]);
  const chosenIf = iface && ifNames.includes(iface) ? iface : ifNames[0] ?? "";

  const cpu: Series[] = [
    {
      name: "CPU",
      color: "#2563eb",
      points: dev.map((p) => ({ t: Date.parse(p.at), v: p.cpu_load.avg, min: p.cpu_load.min, max: p.cpu_load.max })),
    },
  ];
  const mem: Series[] = [
    {
      name: "memory used",
      color: "#7c3aed",
      points: dev
        .filter((p) => p.memory_total > 0)
        .map((p) => ({
          t: Date.parse(p.at),
          v: (100 * p.memory_used.avg) / p.memory_total,
          min: (100 * p.memory_used.min) / p.memory_total,
          max: (100 * p.memory_used.max) / p.memory_total,
        })),
    },
  ];
  const traffic: Series[] = [
    {
      name: "rx",
      color: "#059669",
      points: ifs
        .filter((p) => p.interface === chosenIf && p.rx_bps)
        .map((p) => ({ t: Date.parse(p.at), v: p.rx_bps!.avg, min: p.rx_bps!.min, max: p.rx_bps!.max })),
    },
    {
      name: "tx",
      color: "#d97706",
      points: ifs
        .filter((p) => p.interface === chosenIf && p.tx_bps)
        .map((p) => ({ t: Date.parse(p.at), v: p.tx_bps!.avg, min: p.tx_bps!.min, max: p.tx_bps!.max })),
    },
  ];
  const disk: Series[] = [
    {
      name: "disk used",
      color: "#0e7490",
      points: dev
        .filter((p) => p.hdd_total > 0)
        .map((p) => ({
          t: Date.parse(p.at),
          v: 100 - (100 * p.hdd_free.avg) / p.hdd_total,
          min: 100 - (100 * p.hdd_free.max) / p.hdd_total,
          max: 100 - (100 * p.hdd_free.min) / p.hdd_total,
        })),
    },
  ];
  const last = dev.length ? dev[dev.length - 1] : null;

  return (
    <Section
      title="Metrics"
      id="metrics"
      actions={
        <span className="inline-form">
          <select aria-label="Range" value={range} onChange={(e) => { setRange(Number(e.target.value)); setAnchor(Date.now()); }}>
            {RANGES.map(([label, ms]) => (
              <option key={ms} value={ms}>
                last {label}
              </option>
            ))}
          </select>
          <select
            aria-label="Resolution"
            value={resolution}
            onChange={(e) => setResolution(e.target.value as MetricsResolution)}
          >
            {Object.entries(RESOLUTION_LABELS).map(([v, label]) => (
              <option key={v} value={v}>
                {label}
              </option>
            ))}
          </select>
          <button type="button" onClick={() => setAnchor(Date.now())} disabled={m.loading}>
            Refresh
          </button>
        </span>
      }
    >
      <ProblemBox error={m.error} />
      <div className="small muted metrics-meta">
        {m.data ? <>resolution used: {m.data.resolution} · {dev.length} device points · </> : null}
        {last ? (
          <>
            uptime {Math.floor(last.uptime_secs / 3600)} h · memory {formatBytes(last.memory_total)} · disk free{" "}
            {formatBytes(last.hdd_free.avg)} of {formatBytes(last.hdd_total)}
          </>
        ) : null}
      </div>
      <div className="grid-2">
        <LineChart label="CPU load" series={cpu} from={from} to={to} yMax={100} format={(v) => `${Math.round(v)}%`} />
        <LineChart label="Memory used" series={mem} from={from} to={to} yMax={100} format={(v) => `${Math.round(v)}%`} />
        <LineChart
          label="Traffic"
          extra={
            ifNames.length ? (
              <select aria-label="Interface" className="inline-select" value={chosenIf} onChange={(e) => setIface(e.target.value)}>
                {ifNames.map((n) => (
                  <option key={n} value={n}>
                    {n}
                  </option>
                ))}
              </select>
            ) : null
          }
          series={traffic}
          from={from}
          to={to}
          format={bps}
        />
        <LineChart label="Disk used" series={disk} from={from} to={to} yMax={100} format={(v) => `${Math.round(v)}%`} />
      </div>
    </Section>
  );
}

// ---------------------------------------------------------------------------------------
// Config history

function ConfigHistory({ deviceId, tick }: { deviceId: string; tick: number }) {
  const [changedOnly, setChangedOnly] = useState(false);
  const versions = usePaged<ConfigVersion>(
    async (cursor) =>
      (
        await api("get", "/api/v1/devices/{device_id}/configs", {
          path: { device_id: deviceId },
          query: { changed_only: changedOnly || undefined, cursor, limit: 20 },
        })
      ).data,
    [deviceId, changedOnly],
  );
  // Live changes of the device reload the pages shown (no reset, no flicker).
  useEffect(() => {
    if (tick > 0) void versions.reload();
  }, [tick, versions.reload]);
  const items = versions.items;
  // Picks are rows (stream versions): several versions can share a commit (nothing changed).
  const [pickFrom, setPickFrom] = useState<number | null>(null);
  const [pickTo, setPickTo] = useState<number | null>(null);
  const toRow = items.find((v) => v.stream_version === pickTo) ?? items[0];
  const fromRow =
    items.find((v) => v.stream_version === pickFrom) ??
    items.find((v) => toRow && v.stream_version < toRow.stream_version && v.commit !== toRow.commit);
  const to = toRow?.commit ?? null;
  const from = fromRow?.commit ?? null;

  const [diff, setDiff] = useState<Schemas["ConfigDiffDto"] | null>(null);
  const [text, setText] = useState<Schemas["ConfigText"] | null>(null);
  const [asOf, setAsOf] = useState(""); // empty: now
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiProblem | null>(null);

  const load = async (f: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await f();
    } catch (e) {
      setError(toProblem(e));
    } finally {
      setBusy(false);
    }
  };
  const compare = () =>
    load(async () => {
      if (!from || !to) return;
      setText(null);
      const r = await api("get", "/api/v1/devices/{device_id}/configs/diff", {
        path: { device_id: deviceId },
        query: { from, to },
      });
      setDiff(r.data);
    });
  const view = (commit: string) =>
    load(async () => {
      setDiff(null);
      const r = await api("get", "/api/v1/devices/{device_id}/configs/{commit}", {
        path: { device_id: deviceId, commit },
      });
      setText(r.data);
    });
  const viewAsOf = () =>
    load(async () => {
      const at = asOf ? localToIso(asOf) : new Date().toISOString();
      if (!at) throw new ApiProblem({ type: "about:ui", title: "Pick a time", status: 0, detail: "The as-of time is not valid." });
      setDiff(null);
      const r = await api("get", "/api/v1/devices/{device_id}/config", { path: { device_id: deviceId }, query: { at } });
      setText(r.data);
    });

  return (
    <Section
      title="Configuration history"
      id="configs"
      actions={
        <label className="check">
          <input type="checkbox" checked={changedOnly} onChange={(e) => setChangedOnly(e.target.checked)} />
          changes only
        </label>
      }
    >
      <ProblemBox error={versions.error} />
      {items.length ? (
        <div className="table-wrap">
          <table className="table" data-testid="config-versions">
            <thead>
              <tr>
                <th title="older side of the diff">From</th>
                <th title="newer side of the diff">To</th>
                <th>Recorded</th>
                <th>Kind</th>
                <th>Reason</th>
                <th>Changed</th>
                <th>RouterOS</th>
                <th>Workflow</th>
                <th>Commit</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {items.map((v) => (
                <tr key={`${v.stream_version}-${v.commit}`} data-commit={v.commit} data-reason={v.reason}>
                  <td>
                    <input
                      type="radio"
                      name="diff-from"
                      aria-label={`diff from ${v.commit.slice(0, 8)}`}
                      checked={fromRow?.stream_version === v.stream_version}
                      onChange={() => setPickFrom(v.stream_version)}
                    />
                  </td>
                  <td>
                    <input
                      type="radio"
                      name="diff-to"
                      aria-label={`diff to ${v.commit.slice(0, 8)}`}
                      checked={toRow?.stream_version === v.stream_version}
                      onChange={() => setPickTo(v.stream_version)}
                    />
                  </td>
                  <td>
                    <Time at={v.recorded_at} />
                  </td>
                  <td>
                    <Badge value={v.kind === "drift" ? "retrying" : "idle"} label={v.kind} />
                  </td>
                  <td>{v.reason}</td>
                  <td>{v.changed ? "yes" : <span className="muted">no</span>}</td>
                  <td>{v.routeros_version ?? <span className="muted">—</span>}</td>
                  <td>
                    {v.workflow_id ? (
                      <Link to={`/workflows/${v.workflow_id}`}>
                        <ShortId id={v.workflow_id} />
                      </Link>
                    ) : (
                      <span className="muted">poller</span>
                    )}
                  </td>
                  <td>
                    <ShortId id={v.commit} />
                  </td>
                  <td>
                    <button type="button" className="link" onClick={() => void view(v.commit)}>
                      view
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : !versions.loading ? (
        <Empty>No configuration recorded yet: the poller records one after its first export, a backup records one too.</Empty>
      ) : (
        <Loading />
      )}
      <LoadMore
        hasMore={versions.hasMore}
        loading={versions.loading}
        onMore={() => void versions.loadMore()}
        count={items.length}
      />
      <div className="toolbar">
        <button type="button" className="primary" disabled={!from || !to || busy} onClick={() => void compare()}>
          Compare selected
        </button>
        {pickFrom || pickTo ? (
          <button
            type="button"
            onClick={() => {
              setPickFrom(null);
              setPickTo(null);
            }}
          >
            Latest two
          </button>
        ) : null}
        <span className="spacer" />
        <Field label="Config as of" hint="empty: now">
          <input type="datetime-local" step={1} value={asOf} onChange={(e) => setAsOf(e.target.value)} />
        </Field>
        <button type="button" disabled={busy} onClick={() => void viewAsOf()}>
          Show
        </button>
      </div>
      <ProblemBox error={error} onDismiss={() => setError(null)} />
      {diff ? <DiffView diff={diff} /> : null}
      {text ? (
        <div className="config-text" data-testid="config-text">
          <div className="small muted">
            commit <code>{text.commit}</code>
            {text.recorded_at ? (
              <>
                {" "}
                recorded <Time at={text.recorded_at} />
              </>
            ) : null}
            {text.sha256 ? <> · sha256 {text.sha256.slice(0, 16)}…</> : null}
          </div>
          <pre className="code">{text.text}</pre>
        </div>
      ) : null}
    </Section>
  );
}

interface SemanticChange {
  kind: string;
  [k: string]: unknown;
}
interface SemanticSection {
  path: string;
  changes: SemanticChange[];
}

function DiffView({ diff }: { diff: Schemas["ConfigDiffDto"] }) {
  const sections = ((diff.semantic as { sections?: SemanticSection[] })?.sections ?? []) as SemanticSection[];
  return (
    <div className="diff" data-testid="config-diff">
      <div className="small muted">
        <code>{diff.from.slice(0, 10)}</code> → <code>{diff.to.slice(0, 10)}</code>
      </div>
      {sections.length ? (
        <ul className="semantic">
          {sections.map((s) => (
            <li key={s.path}>
              <code>{s.path}</code>:{" "}
              {summarise(s.changes)}
            </li>
          ))}
        </ul>
      ) : null}
      {diff.unified ? (
        <UnifiedDiff text={diff.unified} testId="config-diff-lines" />
      ) : (
        <Empty>The two versions are identical.</Empty>
      )}
    </div>
  );
}

function summarise(changes: SemanticChange[]): string {
  const counts = new Map<string, number>();
  for (const c of changes) counts.set(c.kind, (counts.get(c.kind) ?? 0) + 1);
  return [...counts.entries()].map(([k, n]) => `${n} ${k.replace(/_/g, " ")}`).join(", ");
}

// ---------------------------------------------------------------------------------------
// Versioned edits

type EditKind = "tags" | "credentials" | "endpoint" | "ssh" | "remove";

/**
 * Edits send `If-Match` with the stream version read when the edit was opened (from
 * `/state`, which folds the stream now). When someone else changed the device meanwhile,
 * the server answers 412: the user is told, the device reloads, and the form starts again
 * from the current version.
 */
function Settings({ device, onChanged }: { device: Device; onChanged: () => Promise<void> }) {
  const auth = useAuth();
  const [open, setOpen] = useState<EditKind | null>(null);
  const [base, setBase] = useState<number | null>(null);
  const [stale, setStale] = useState<{ yours: number; current: number | null } | null>(null);
  const [error, setError] = useState<ApiProblem | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [pending, setPending] = useState(false);

  const begin = async (kind: EditKind) => {
    setError(null);
    setStale(null);
    setSaved(null);
    try {
      const s = await api("get", "/api/v1/devices/{device_id}/state", { path: { device_id: device.id } });
      setBase(s.data.version);
      setOpen(kind);
    } catch (e) {
      setError(toProblem(e));
    }
  };

  const submit = async (what: string, send: (ifMatch: number) => Promise<unknown>) => {
    if (base === null) return;
    setPending(true);
    setError(null);
    setStale(null);
    try {
      await send(base);
      setSaved(what);
      setOpen(null);
      void onChanged();
    } catch (e) {
      const p = toProblem(e);
      if (p.code === "precondition-failed" || p.status === 412) {
        setStale({ yours: base, current: p.problem.current_version ?? null });
        // Start again from the current version; the form shows the reloaded values.
        try {
          await onChanged();
          const s = await api("get", "/api/v1/devices/{device_id}/state", { path: { device_id: device.id } });
          setBase(s.data.version);
        } catch (e2) {
          setError(toProblem(e2));
        }
      } else {
        setError(p);
      }
    } finally {
      setPending(false);
    }
  };

  return (
    <div className="settings">
      <div className="toolbar">
        {auth.can("devices:write") ? (
          <>
            <button type="button" onClick={() => void begin("tags")} disabled={open === "tags"}>
              Edit tags
            </button>
            <button type="button" onClick={() => void begin("endpoint")} disabled={open === "endpoint"}>
              Edit endpoint &amp; polling
            </button>
            <button type="button" onClick={() => void begin("ssh")} disabled={open === "ssh"}>
              {device.endpoint.ssh ? "Edit SSH access" : "Add SSH access"}
            </button>
          </>
        ) : null}
        {auth.can("devices:credentials") ? (
          <button type="button" onClick={() => void begin("credentials")} disabled={open === "credentials"}>
            Change credentials
          </button>
        ) : null}
        {auth.can("devices:write") ? (
          <button type="button" className="danger" onClick={() => void begin("remove")} disabled={open === "remove"}>
            Remove device…
          </button>
        ) : null}
      </div>
      {stale ? (
        <div className="problem" role="alert" data-testid="stale-edit">
          <div className="problem-head">
            <strong>This device changed since you started editing.</strong>
            <span className="problem-status">412</span>
          </div>
          <div className="problem-detail">
            Your edit was based on version {stale.yours}
            {stale.current !== null ? `; it is now at version ${stale.current}` : ""}. Nothing was saved. The device
            has been reloaded: check the current values and apply your change again.
          </div>
        </div>
      ) : null}
      <ProblemBox error={error} onDismiss={() => setError(null)} />
      {saved ? <div className="notice">{saved} saved.</div> : null}
      {open && base !== null ? (
        <div className="edit-panel">
          <div className="small muted">
            Editing version <span data-testid="edit-base">{base}</span>
          </div>
          {device.version > base ? (
            <div className="notice small" data-testid="changed-meanwhile">
              The device changed while you were editing (now version {device.version}): saving will be refused unless
              you start again.
            </div>
          ) : null}
          {open === "tags" ? (
            <TagsEdit
              key={`tags-${base}`}
              current={device.tags}
              pending={pending}
              onCancel={() => setOpen(null)}
              onSave={(tags) =>
                void submit("Tags", (v) =>
                  api("put", "/api/v1/devices/{device_id}/tags", { path: { device_id: device.id }, body: { tags }, ifMatch: v }),
                )
              }
            />
          ) : null}
          {open === "credentials" ? (
            <CredentialsEdit
              current={device.username}
              sshKey={device.ssh_client_key ?? null}
              keyRefused={isSshKeyProblem(error)}
              pending={pending}
              onCancel={() => setOpen(null)}
              onSave={(body) =>
                void submit("Credentials", (v) =>
                  api("put", "/api/v1/devices/{device_id}/credentials", { path: { device_id: device.id }, body, ifMatch: v }),
                )
              }
            />
          ) : null}
          {open === "endpoint" ? (
            <EndpointEdit
              key={`ep-${base}`}
              device={device}
              pending={pending}
              onCancel={() => setOpen(null)}
              onSave={(body) =>
                void submit("Settings", (v) =>
                  api("patch", "/api/v1/devices/{device_id}", { path: { device_id: device.id }, body, ifMatch: v }),
                )
              }
            />
          ) : null}
          {open === "ssh" ? (
            <SshEdit
              key={`ssh-${base}`}
              device={device}
              pending={pending}
              onCancel={() => setOpen(null)}
              onSave={(ssh) =>
                void submit(ssh ? "SSH access" : "Removal of SSH access", (v) =>
                  api("patch", "/api/v1/devices/{device_id}", { path: { device_id: device.id }, body: { ssh }, ifMatch: v }),
                )
              }
            />
          ) : null}
          {open === "remove" ? (
            <RemoveDevice
              pending={pending}
              onCancel={() => setOpen(null)}
              onRemove={(reason) =>
                void submit("Removal", async (v) => {
                  await api("delete", "/api/v1/devices/{device_id}", {
                    path: { device_id: device.id },
                    query: { reason: reason || undefined },
                    ifMatch: v,
                  });
                  navigate("/devices");
                })
              }
            />
          ) : null}
        </div>
      ) : null}
    </div>
  );
}

function TagsEdit({
  current,
  pending,
  onSave,
  onCancel,
}: {
  current: string[];
  pending: boolean;
  onSave: (tags: string[]) => void;
  onCancel: () => void;
}) {
  const [value, setValue] = useState(current.join(", "));
  return (
    <form
      className="inline-edit"
      aria-label="Edit tags"
      onSubmit={(e) => {
        e.preventDefault();
        onSave(splitTags(value));
      }}
    >
      <Field label="Tags" hint="comma separated; replaces the whole set">
        <input name="tags" value={value} onChange={(e) => setValue(e.target.value)} autoFocus />
      </Field>
      <button type="submit" className="primary" disabled={pending}>
        {pending ? "Saving…" : "Save tags"}
      </button>
      <button type="button" onClick={onCancel}>
        Cancel
      </button>
    </form>
  );
}

/**
 * New credentials replace the old ones whole: without an SSH private key the device has none
 * afterwards, which the form says (naming the current key when there is one).
 */
function CredentialsEdit({
  current,
  sshKey,
  keyRefused,
  pending,
  onSave,
  onCancel,
}: {
  current: string;
  sshKey: Schemas["SshClientKeyDto"] | null;
  keyRefused: boolean;
  pending: boolean;
  onSave: (c: Schemas["CredentialsInput"]) => void;
  onCancel: () => void;
}) {
  const [username, setUsername] = useState(current);
  const [password, setPassword] = useState("");
  const [key, setKey] = useState("");
  return (
    <form
      className="inline-edit"
      aria-label="Change credentials"
      onSubmit={(e) => {
        e.preventDefault();
        const body: Schemas["CredentialsInput"] = { username, password };
        const k = sshPrivateKeyOf(key);
        if (k) body.ssh_private_key = k;
        onSave(body);
      }}
    >
      <Field label="API user">
        <input value={username} required onChange={(e) => setUsername(e.target.value)} autoComplete="off" />
      </Field>
      <Field label="API password" hint="write-only: stored encrypted">
        <input type="password" required value={password} onChange={(e) => setPassword(e.target.value)} autoComplete="new-password" />
      </Field>
      <SshKeyField
        value={key}
        onChange={setKey}
        invalid={keyRefused}
        note={
          sshKey ? (
            <p className="warn-note small" data-testid="ssh-key-removal-note">
              The device has an SSH key (<span className="mono">{sshKey.fingerprint}</span>); leave empty to remove it
              (SSH then logs in with the password), or give a key to replace it.
            </p>
          ) : (
            <p className="small muted" data-testid="ssh-key-removal-note">
              New credentials replace the old ones whole: saved without a key, SSH logs in with the password.
            </p>
          )
        }
      />
      <button type="submit" className="primary" disabled={pending}>
        {pending ? "Saving…" : "Save credentials"}
      </button>
      <button type="button" onClick={onCancel}>
        Cancel
      </button>
    </form>
  );
}

function EndpointEdit({
  device,
  pending,
  onSave,
  onCancel,
}: {
  device: Device;
  pending: boolean;
  onSave: (p: Schemas["DevicePatch"]) => void;
  onCancel: () => void;
}) {
  const [name, setName] = useState(device.name);
  const [host, setHost] = useState(device.endpoint.host);
  const [port, setPort] = useState(String(device.endpoint.port));
  const [mode, setMode] = useState(device.endpoint.transport);
  const [fp, setFp] = useState(device.endpoint.tls_fingerprint ?? "");
  const [poll, setPoll] = useState(String(device.poll_interval_secs));
  return (
    <form
      className="inline-edit grid-3"
      aria-label="Edit endpoint"
      onSubmit={(e) => {
        e.preventDefault();
        const patch: Schemas["DevicePatch"] = {};
        if (name !== device.name) patch.name = name.trim();
        if (host !== device.endpoint.host) patch.host = host.trim();
        if (Number(port) !== device.endpoint.port) patch.port = Number(port);
        if (mode !== device.endpoint.transport || (fp || null) !== (device.endpoint.tls_fingerprint ?? null))
          patch.transport = { mode, fingerprint_sha256: mode === "tls_pinned" ? fp.trim() || null : null };
        if (Number(poll) !== device.poll_interval_secs) patch.poll_interval_secs = Number(poll);
        onSave(patch);
      }}
    >
      <Field label="Name">
        <input value={name} onChange={(e) => setName(e.target.value)} />
      </Field>
      <Field label="Host">
        <input value={host} onChange={(e) => setHost(e.target.value)} />
      </Field>
      <Field label="Port">
        <input type="number" min={1} max={65535} value={port} onChange={(e) => setPort(e.target.value)} />
      </Field>
      <Field label="Transport">
        <select value={mode} onChange={(e) => setMode(oneOf(TRANSPORTS, e.target.value) ?? "plain")}>
          {TRANSPORTS.map((t) => (
            <option key={t} value={t}>
              {TRANSPORT_LABELS[t]}
            </option>
          ))}
        </select>
      </Field>
      {mode === "tls_pinned" ? (
        <Field label="Certificate SHA-256">
          <input value={fp} onChange={(e) => setFp(e.target.value)} />
        </Field>
      ) : null}
      <Field label="Poll interval (s)">
        <input type="number" min={5} max={86400} value={poll} onChange={(e) => setPoll(e.target.value)} />
      </Field>
      {host !== device.endpoint.host || Number(port) !== device.endpoint.port || mode !== device.endpoint.transport ? (
        <p className="hint" data-testid="credentials-cleared-warning">
          Changing host, port or transport deletes the stored credentials: set them again with Change credentials.
        </p>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={pending}>
          {pending ? "Saving…" : "Save"}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

/** Sets, replaces or removes (`null`) SSH access; the stored credentials stay. */
function SshEdit({
  device,
  pending,
  onSave,
  onCancel,
}: {
  device: Device;
  pending: boolean;
  onSave: (ssh: Schemas["SshInput"] | null) => void;
  onCancel: () => void;
}) {
  const current = device.endpoint.ssh ?? null;
  const [form, setForm] = useState<SshForm>(() => sshFormFrom(current));
  const [checked, setChecked] = useState(false);
  return (
    <form
      className="settings"
      aria-label="Edit SSH access"
      onSubmit={(e) => {
        e.preventDefault();
        if (sshFormProblem(form)) {
          setChecked(true);
          return;
        }
        onSave(sshInputOf(form));
      }}
    >
      <SshFields value={form} onChange={setForm} showErrors={checked} />
      <p className="small muted">
        Changing SSH access keeps the stored credentials (SSH logs in as the API user, with the credentials&apos; SSH key
        when they have one, else the password).
      </p>
      <div className="form-actions">
        <button type="submit" className="primary" disabled={pending}>
          {pending ? "Saving…" : "Save SSH access"}
        </button>
        {current ? (
          <ConfirmButton
            danger
            disabled={pending}
            onConfirm={() => onSave(null)}
            question="Remove SSH access? File jobs the API cannot do on this device will be refused."
          >
            Remove SSH access
          </ConfirmButton>
        ) : null}
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function RemoveDevice({
  pending,
  onRemove,
  onCancel,
}: {
  pending: boolean;
  onRemove: (reason: string) => void;
  onCancel: () => void;
}) {
  const [reason, setReason] = useState("");
  return (
    <div className="inline-edit">
      <Field label="Reason" hint="recorded with the removal">
        <input value={reason} onChange={(e) => setReason(e.target.value)} />
      </Field>
      <ConfirmButton danger disabled={pending} onConfirm={() => onRemove(reason)} question="Remove this device from management?">
        Remove device
      </ConfirmButton>
      <button type="button" onClick={onCancel}>
        Cancel
      </button>
    </div>
  );
}
