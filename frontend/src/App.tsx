// The shell: sign-in gate, navigation (only the sections the role may read), the live
// connection's state, and the route table.

import type { ReactNode } from "react";

import { live } from "./api/live";
import { useAuth } from "./auth";
import { useLiveStatus } from "./hooks";
import { AccountPage } from "./pages/Account";
import { AdminPage } from "./pages/Admin";
import { AuditPage } from "./pages/Audit";
import { ChangeEditPage, ChangePage, ChangesPage } from "./pages/Changes";
import { DevicePage } from "./pages/Device";
import { EventsPage } from "./pages/Events";
import { FirmwarePage } from "./pages/Firmware";
import { FleetPage } from "./pages/Fleet";
import { LoginPage } from "./pages/Login";
import { RolloutPage, RolloutsPage } from "./pages/Rollouts";
import { WorkflowPage, WorkflowsPage } from "./pages/Workflows";
import { Link, matchPath, navigate, useLocation } from "./router";
import { Badge } from "./ui";

interface RouteDef {
  pattern: string;
  render: (p: Record<string, string>) => ReactNode;
}

const ROUTES: RouteDef[] = [
  { pattern: "/", render: () => <FleetPage /> },
  { pattern: "/devices", render: () => <FleetPage /> },
  { pattern: "/devices/:id", render: (p) => <DevicePage id={p.id} /> },
  { pattern: "/workflows", render: () => <WorkflowsPage /> },
  { pattern: "/workflows/:id", render: (p) => <WorkflowPage id={p.id} /> },
  { pattern: "/rollouts", render: () => <RolloutsPage /> },
  { pattern: "/rollouts/:id", render: (p) => <RolloutPage id={p.id} /> },
  { pattern: "/changes", render: () => <ChangesPage /> },
  { pattern: "/changes/new", render: () => <ChangeEditPage /> },
  { pattern: "/changes/:id", render: (p) => <ChangePage id={p.id} /> },
  { pattern: "/changes/:id/edit", render: (p) => <ChangeEditPage id={p.id} /> },
  { pattern: "/firmware", render: () => <FirmwarePage /> },
  { pattern: "/events", render: () => <EventsPage /> },
  { pattern: "/audit", render: () => <AuditPage /> },
  { pattern: "/audit/:view", render: (p) => <AuditPage view={p.view} /> },
  { pattern: "/admin", render: () => <AdminPage /> },
  { pattern: "/account", render: () => <AccountPage /> },
];

function NavLink({ to, children, match }: { to: string; children: ReactNode; match: string[] }) {
  const { pathname } = useLocation();
  const active = match.some((m) => pathname === m || (m !== "/" && pathname.startsWith(`${m}/`)));
  return (
    <Link to={to} className={active ? "nav-link active" : "nav-link"}>
      {children}
    </Link>
  );
}

function LiveIndicator() {
  const status = useLiveStatus();
  const label = status === "live" ? "live" : status;
  return (
    <span
      className="live-indicator"
      data-live={status}
      title={`Live event connection: ${status}${live.lastError ? ` (${live.lastError})` : ""}`}
    >
      <Badge value={status} label={label} />
    </span>
  );
}

export function App() {
  const auth = useAuth();
  const { pathname } = useLocation();

  if (auth.phase === "loading") {
    return <div className="splash">Netledger…</div>;
  }
  if (auth.phase === "signed-out" || !auth.me) {
    return <LoginPage notice={auth.notice} />;
  }

  let page: ReactNode = null;
  for (const r of ROUTES) {
    const params = matchPath(r.pattern, pathname);
    if (params) {
      page = r.render(params);
      break;
    }
  }
  if (!page) {
    page = (
      <div className="page">
        <h1>Not found</h1>
        <p>
          No page at <code>{pathname}</code>. <Link to="/devices">Go to the fleet.</Link>
        </p>
      </div>
    );
  }

  const me = auth.me;
  const who = me.user ? me.user.display_name || me.user.email : `API key ${me.id.slice(0, 8)}`;

  return (
    <div className="shell">
      <header className="topbar">
        <Link to="/devices" className="brand">
          Netledger
        </Link>
        <nav className="nav">
          <NavLink to="/devices" match={["/", "/devices"]}>
            Fleet
          </NavLink>
          <NavLink to="/workflows" match={["/workflows"]}>
            Workflows
          </NavLink>
          <NavLink to="/rollouts" match={["/rollouts"]}>
            Rollouts
          </NavLink>
          {auth.can("changes:read") ? (
            <NavLink to="/changes" match={["/changes"]}>
              Changes
            </NavLink>
          ) : null}
          <NavLink to="/firmware" match={["/firmware"]}>
            Firmware
          </NavLink>
          <NavLink to="/events" match={["/events"]}>
            Events
          </NavLink>
          {auth.can("audit:read") ? (
            <NavLink to="/audit" match={["/audit"]}>
              Audit
            </NavLink>
          ) : null}
          {auth.can("users:read") || auth.can("apikeys:read") ? (
            <NavLink to="/admin" match={["/admin"]}>
              Admin
            </NavLink>
          ) : null}
        </nav>
        <div className="topbar-right">
          <LiveIndicator />
          <Link to="/account" className="who" title={me.user?.email ?? me.id}>
            {who} <span className="role">{me.role ?? me.kind}</span>
          </Link>
          <button
            type="button"
            className="logout"
            onClick={() => {
              void auth.logout().then(() => navigate("/", { replace: true }));
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <main className="main">{page}</main>
    </div>
  );
}
