import { useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { api } from "../api/client";
import { ErrorNote } from "../components/Layout";

/** The page a notification's "Stop these emails" link opens: one button, no login. */
export function UnsubscribePage() {
  const [params] = useSearchParams();
  const [done, setDone] = useState(false);
  const [error, setError] = useState<unknown>(null);
  async function stop() {
    try {
      await api("/notifications/unsubscribe", { method: "POST", body: { user: params.get("user"), token: params.get("token") } });
      setDone(true);
    } catch (e) {
      setError(e);
    }
  }
  return (
    <section className="narrow">
      <h1>Stop emails about leads</h1>
      {done ? (
        <p role="status">Done: you will get no more emails about leads. To have them again, choose so on your <Link to="/profile">Profile</Link>.</p>
      ) : (
        <>
          <p>You will no longer get an email when one of your leads changes or arrives. You can turn them back on from your Profile.</p>
          <ErrorNote error={error} />
          <button type="button" onClick={() => void stop()}>Stop these emails</button>
        </>
      )}
    </section>
  );
}
