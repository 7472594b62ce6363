// The signed-in caller: restores the session from the refresh cookie on load, keeps `me`
// (role and permissions from `GET /auth/me`) for hiding actions the role cannot take, and
// starts/stops the live event connection with the session.

import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";

import * as client from "./api/client";
import { api, ApiProblem, type Schemas } from "./api/client";
import { live } from "./api/live";

export type Me = Schemas["Me"];
export type Permission = string;

interface AuthState {
  /** `loading` until the first refresh answered. */
  phase: "loading" | "signed-out" | "signed-in";
  me: Me | null;
  /** Why the last session ended, when it was not a logout. */
  notice: string | null;
  login(email: string, password: string): Promise<void>;
  logout(): Promise<void>;
  can(permission: Permission): boolean;
  reloadMe(): Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [phase, setPhase] = useState<AuthState["phase"]>("loading");
  const [me, setMe] = useState<Me | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const loadMe = useCallback(async () => {
    const r = await api("get", "/api/v1/auth/me");
    setMe(r.data);
    setPhase("signed-in");
    live.start();
  }, []);

  useEffect(() => {
    let signedIn = false;
    const off = client.onSession((t) => {
      if (!t && signedIn) {
        setNotice("Your session ended. Sign in again.");
      }
      signedIn = !!t;
      if (!t) {
        live.stop();
        setMe(null);
        setPhase("signed-out");
      }
    });
    // Restore the session from the refresh cookie, if any.
    client
      .refreshSession()
      .then(async (t) => {
        if (t) await loadMe();
        else setPhase("signed-out");
      })
      .catch(() => setPhase("signed-out"));
    return () => {
      off();
    };
  }, [loadMe]);

  const login = useCallback(
    async (email: string, password: string) => {
      setNotice(null);
      await client.login(email, password);
      await loadMe();
    },
    [loadMe],
  );

  const logout = useCallback(async () => {
    setNotice(null);
    try {
      await client.logout();
    } catch (e) {
      // The local session is gone either way; a failed server-side revoke is still shown.
      if (e instanceof ApiProblem) setNotice(`Signed out locally; the server said: ${e.message}`);
    }
  }, []);

  const can = useCallback((p: Permission) => !!me && me.permissions.includes(p), [me]);

  return (
    <AuthContext.Provider value={{ phase, me, notice, login, logout, can, reloadMe: loadMe }}>
      {children}
    </AuthContext.Provider>
  );
}

export function useAuth(): AuthState {
  const a = useContext(AuthContext);
  if (!a) throw new Error("useAuth outside AuthProvider");
  return a;
}
