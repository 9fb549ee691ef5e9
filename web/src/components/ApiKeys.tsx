// Profile → API keys: the keys a partner's own systems call the portal with (contract 8).
// A key is shown once, when created; the list shows prefixes only. Revoking asks first.
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, type ApiKey, type CreatedKey } from "../api/client";
import { ErrorNote } from "./Layout";

export function ApiKeys({ partnerId, token }: { partnerId: string; token?: string }) {
  const path = `/partners/${partnerId}/api-keys`;
  const [keys, setKeys] = useState<ApiKey[] | null>(null);
  const [created, setCreated] = useState<CreatedKey | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => api<ApiKey[]>(path, { token }).then(setKeys, setError), [path, token]);
  useEffect(() => void load(), [load]);
  async function create(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const name = String(new FormData(form).get("name") ?? "").trim();
    try {
      setCreated(await api<CreatedKey>(path, { method: "POST", token, body: name ? { name } : {} }));
      form.reset();
      setError(null);
      await load();
    } catch (e) {
      setError(e);
    }
  }
  async function revoke(key: ApiKey) {
    if (!window.confirm(`Revoke “${key.name}” (${key.prefix}…)? Systems using it stop working at once.`)) return;
    try {
      await api(`${path}/${key.id}`, { method: "DELETE", token });
      if (created?.id === key.id) setCreated(null);
      await load();
    } catch (e) {
      setError(e);
    }
  }
  return (
    <>
      <h2>API keys</h2>
      <p>Your own systems can submit and read leads with a key: <code>Authorization: Bearer sk_live_…</code>.</p>
      {created && (
        <div role="status" className="notice">
          <p>Your new key “{created.name}”. Copy it now: it is not shown again.</p>
          <label>Key<input readOnly value={created.key} onFocus={(e) => e.currentTarget.select()} /></label>
          <button type="button" onClick={() => void navigator.clipboard?.writeText(created.key)}>Copy</button>
        </div>
      )}
      <form className="inline" onSubmit={create} aria-label="Create an API key">
        <label>Name<input name="name" maxLength={100} placeholder="Our CRM" /></label>
        <button>Create key</button>
      </form>
      <ErrorNote error={error} />
      {keys && keys.length > 0 && (
        <table>
          <caption className="visually-hidden">API keys</caption>
          <thead><tr><th scope="col">Name</th><th scope="col">Key</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col"><span className="visually-hidden">Actions</span></th></tr></thead>
          <tbody>
            {keys.map((key) => (
              <tr key={key.id}>
                <td>{key.name}</td>
                <td><code>{key.prefix}…</code></td>
                <td>{new Date(key.createdAt).toLocaleString()}</td>
                <td>{key.lastUsedAt ? new Date(key.lastUsedAt).toLocaleString() : "never"}</td>
                <td><button type="button" className="danger" onClick={() => void revoke(key)}>Revoke</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
