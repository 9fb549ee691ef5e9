import { useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { api, ApiError, type Session } from "../api/client";
import { useSession } from "../session";
import { ErrorNote } from "../components/Layout";

/** Where to go after logging in: a path of this portal (`/leads?status=new`), never another
 *  site (`//evil.example`, `/\\evil.example`, `https://…`) and never the login page itself. */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.includes("\\")) return "/";
  const url = new URL(next, "https://portal.invalid");
  if (url.origin !== "https://portal.invalid" || url.pathname === "/login") return "/";
  return `${url.pathname}${url.search}${url.hash}`;
}

export function LoginPage() {
  const [params] = useSearchParams();
  const { signIn } = useSession();
  const navigate = useNavigate();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setBusy(true);
    setError(null);
    try {
      const session = await api<Session>("/auth/login", { method: "POST", body: { email: form.get("email"), password: form.get("password") } });
      signIn(session);
      navigate(safeNext(params.get("next")));
    } catch (e) {
      setError(e instanceof ApiError && e.status === 429 ? new Error("Too many attempts. Wait a minute and try again.") : e);
    } finally {
      setBusy(false);
    }
  }
  return (
    <section className="narrow">
      <h1>Log in</h1>
      {params.get("reset") && <p role="status">Your password is changed. Log in with the new one.</p>}
      {params.get("expired") && <p role="status">Your session has ended. Log in again to continue where you were; a lead you were writing is kept.</p>}
      <form onSubmit={submit}>
        <label>Email<input name="email" type="email" autoComplete="username" required /></label>
        <label>Password<input name="password" type="password" autoComplete="current-password" required /></label>
        <ErrorNote error={error} />
        <button disabled={busy}>{busy ? "Logging in…" : "Log in"}</button>
      </form>
      <p><Link to="/forgot-password">Forgot your password?</Link></p>
    </section>
  );
}
