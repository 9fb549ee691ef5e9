import { useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { api, ApiError } from "../api/client";
import { ErrorNote } from "../components/Layout";

/** "Forgot your password?": the same answer whether or not the email has an account. */
export function ForgotPasswordPage() {
  const [sentTo, setSentTo] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const email = String(new FormData(event.currentTarget).get("email") ?? "").trim();
    setBusy(true);
    setError(null);
    try {
      await api("/auth/password-reset", { method: "POST", body: { email } });
      setSentTo(email);
    } catch (e) {
      setError(e instanceof ApiError && e.status === 429 ? new Error("Too many requests. Check your inbox for a link already sent, or wait a while and try again.") : e);
    } finally {
      setBusy(false);
    }
  }
  if (sentTo) {
    return (
      <section className="narrow">
        <h1>Check your email</h1>
        <p role="status">If an account uses <strong>{sentTo}</strong>, a link to choose a new password is on its way. It works once, for one hour.</p>
        <p><Link to="/login">Back to log in</Link></p>
      </section>
    );
  }
  return (
    <section className="narrow">
      <h1>Forgot your password?</h1>
      <p>Enter the email you log in with, and we will send you a link to choose a new password.</p>
      <form onSubmit={submit}>
        <label>Email<input name="email" type="email" autoComplete="username" required /></label>
        <ErrorNote error={error} />
        <button disabled={busy}>{busy ? "Sending…" : "Send me a link"}</button>
      </form>
      <p><Link to="/login">Back to log in</Link></p>
    </section>
  );
}
