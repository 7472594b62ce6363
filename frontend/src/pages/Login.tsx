// Sign-in: e-mail and password to `POST /auth/login`; the problem (wrong password, rate
// limit) is shown under the form.

import { useState, type FormEvent } from "react";

import { toProblem, type ApiProblem } from "../api/client";
import { useAuth } from "../auth";
import { Field, ProblemBox } from "../ui";

export function LoginPage({ notice }: { notice: string | null }) {
  const auth = useAuth();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<ApiProblem | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setPending(true);
    setError(null);
    try {
      await auth.login(email.trim(), password);
    } catch (err) {
      setError(toProblem(err));
      setPassword("");
    } finally {
      setPending(false);
    }
  };

  return (
    <div className="login-wrap">
      <form className="login card" onSubmit={submit} aria-label="Sign in">
        <h1 className="login-title">Netledger</h1>
        <p className="muted">Configuration management for RouterOS fleets</p>
        {notice ? <div className="notice">{notice}</div> : null}
        <Field label="E-mail">
          <input
            name="email"
            type="email"
            autoComplete="username"
            required
            autoFocus
            value={email}
            onChange={(e) => setEmail(e.target.value)}
          />
        </Field>
        <Field label="Password">
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </Field>
        <ProblemBox error={error} />
        <button type="submit" className="primary wide" disabled={pending}>
          {pending ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </div>
  );
}
