import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, ApiError, type SubAccount } from "../api/client";
import { ErrorNote, Loading } from "../components/Layout";
import { useSession } from "../session";
import { accountName } from "../team/names";

/** An account's status, with when its invitation link stops working. */
export function invitationState(account: SubAccount, now = new Date()): string {
  if (account.status !== "invited" || !account.invitationExpiresAt) return account.status;
  const expires = new Date(account.invitationExpiresAt);
  return expires <= now ? "invited (link expired: re-send it)" : `invited (link works until ${expires.toLocaleString()})`;
}

export function TeamPage() {
  const { session } = useSession();
  const token = session?.accessToken;
  const partner = session?.user.partnerId;
  const [accounts, setAccounts] = useState<SubAccount[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  // The account whose Disable was pressed once: a second, red button confirms it.
  const [confirming, setConfirming] = useState<string | null>(null);
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
    setConfirming(null);
    const disabled = account.status !== "disabled";
    await api(`/partners/${partner}/sub-accounts/${account.id}`, { method: "PATCH", token, body: { disabled } })
      .then(() => setNotice(disabled ? `${accountName(account)} can no longer log in.` : `${accountName(account)} can log in again.`))
      .then(load, setError);
  }
  const when = (at?: string | null) => (at ? new Date(at).toLocaleString() : "Never");
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
      {accounts?.length === 0 && <p>No sub-accounts yet: invite your team above.</p>}
      {accounts === null ? <Loading /> : (
        <table>
          <thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Status</th><th scope="col">Leads</th><th scope="col">Last sign-in</th><th scope="col">Actions</th></tr></thead>
          <tbody>
            {session && (
              <tr data-testid="owner">
                <td data-label="Name">{session.user.name ?? "You"} (you)</td><td data-label="Email">{session.user.email}</td>
                <td data-label="Status">owner, administrator</td><td data-label="Leads">—</td><td data-label="Last sign-in">Now</td><td />
              </tr>
            )}
            {accounts.map((a) => (
              <tr key={a.id} data-account={a.email}>
                <td data-label="Name">{a.name}</td><td data-label="Email">{a.email}</td>
                <td data-label="Status">{invitationState(a)}</td>
                <td data-label="Leads">{a.leadCount}</td>
                <td data-label="Last sign-in">{when(a.lastSignInAt)}</td>
                <td data-label="Actions">
                  {a.status === "invited" && <button type="button" onClick={() => resend(a)}>Re-send invitation</button>}{" "}
                  {a.status === "disabled" ? <button type="button" onClick={() => toggle(a)}>Enable</button>
                    : confirming === a.id ? (
                      <span role="group" aria-label={`Confirm disabling ${accountName(a)}`}>
                        <span>They will no longer be able to log in (their leads stay). </span>
                        <button type="button" className="danger" onClick={() => toggle(a)}>Disable {accountName(a)}</button>{" "}
                        <button type="button" onClick={() => setConfirming(null)}>Cancel</button>
                      </span>
                    ) : <button type="button" onClick={() => setConfirming(a.id)}>Disable…</button>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
