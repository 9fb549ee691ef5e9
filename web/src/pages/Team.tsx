import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, ApiError, type SubAccount } from "../api/client";
import { ErrorNote, Loading } from "../components/Layout";
import { useSession } from "../session";

export function TeamPage() {
  const { session } = useSession();
  const token = session?.accessToken;
  const partner = session?.user.partnerId;
  const [accounts, setAccounts] = useState<SubAccount[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const load = useCallback(async () => {
    try {
      setAccounts(await api<SubAccount[]>(`/partners/${partner}/sub-accounts`, { token }));
    } catch (e) {
      setError(e);
    }
  }, [partner, token]);
  useEffect(() => void load(), [load]);
  async function invite(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    try {
      await api(`/partners/${partner}/sub-accounts`, { method: "POST", token, body: { email: data.get("email"), name: data.get("name") } });
      setNotice(`Invitation sent to ${data.get("email")}.`);
      form.reset();
      setError(null);
      await load();
    } catch (e) {
      setError(e instanceof ApiError && e.status === 422 ? new Error(Object.values(e.fieldErrors()).join(" ")) : e);
    }
  }
  async function resend(account: SubAccount) {
    await api("/invite", { method: "POST", token, body: { email: account.email } }).then(() => setNotice(`A new invitation went to ${account.email}; the earlier link no longer works.`), setError);
  }
  async function toggle(account: SubAccount) {
    await api(`/partners/${partner}/sub-accounts/${account.id}`, { method: "PATCH", token, body: { disabled: account.status !== "disabled" } }).then(load, setError);
  }
  return (
    <section>
      <h1>Team</h1>
      <form onSubmit={invite} className="inline" aria-label="Invite a sub-account">
        <label>Name<input name="name" required maxLength={100} /></label>
        <label>Email<input name="email" type="email" required /></label>
        <button>Invite</button>
      </form>
      {notice && <p role="status">{notice}</p>}
      <ErrorNote error={error} />
      {accounts === null ? <Loading /> : accounts.length === 0 ? <p>No sub-accounts yet.</p> : (
        <table>
          <thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Status</th><th scope="col">Leads</th><th scope="col">Actions</th></tr></thead>
          <tbody>
            {accounts.map((a) => (
              <tr key={a.id}>
                <td>{a.name}</td><td>{a.email}</td><td>{a.status}</td><td>{a.leadCount}</td>
                <td>
                  {a.status === "invited" && <button type="button" onClick={() => resend(a)}>Re-send invitation</button>}{" "}
                  <button type="button" onClick={() => toggle(a)}>{a.status === "disabled" ? "Enable" : "Disable"}</button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
