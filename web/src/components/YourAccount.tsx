import { useEffect, useState, type FormEvent } from "react";
import { api, ApiError, type Session } from "../api/client";
import type { components } from "../api/schema";
import { newPassword } from "../text/passwords";
import { useSession } from "../session";

type Account = components["schemas"]["Account"];

/** The session's user from the account (the answer carries more). */
function sessionUser(account: Account): Session["user"] {
  return { id: account.id, partnerId: account.partnerId, email: account.email, name: account.name, role: account.role };
}

/** The signed-in person's own name and password (admins and sub-accounts). */
export function YourAccount() {
  const { session, signIn } = useSession();
  const [notice, setNotice] = useState<string | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [notifications, setNotifications] = useState<Account["notifications"] | null>(null);
  const token = session?.accessToken;
  useEffect(() => {
    if (token) api<Account>("/me", { token }).then((a) => setNotifications(a.notifications), () => setNotifications(null));
  }, [token]);
  if (!session) return null;
  function failed(e: unknown) {
    setNotice(null);
    if (e instanceof ApiError && Object.keys(e.fieldErrors()).length) setErrors(e.fieldErrors());
    else setErrors({ form: e instanceof Error ? e.message : String(e) });
  }
  async function rename(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const name = String(new FormData(event.currentTarget).get("name") ?? "").trim();
    try {
      const account = await api<Account>("/me", { method: "PATCH", token, body: { name: name || null } });
      signIn({ ...session!, user: sessionUser(account) });
      setErrors({});
      setNotice("Your name is saved.");
    } catch (e) {
      failed(e);
    }
  }
  async function notify(mode: Account["notifications"]) {
    try {
      const account = await api<Account>("/me", { method: "PATCH", token, body: { notifications: mode } });
      setNotifications(account.notifications);
      setErrors({});
      setNotice(mode === "off" ? "You will get no emails about leads." : mode === "daily" ? "You will get one email a day about your leads." : "You will get an email as things happen to your leads.");
    } catch (e) {
      failed(e);
    }
  }
  async function changePassword(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    const typed = newPassword(data, "newPassword");
    if ("errors" in typed) return setErrors(typed.errors);
    try {
      signIn(await api<Session>("/me/password", { method: "POST", token, body: { currentPassword: data.get("currentPassword"), newPassword: typed.password } }));
      form.reset();
      setErrors({});
      setNotice("Your password is changed. You stay logged in here; everywhere else you were logged in, you are now logged out.");
    } catch (e) {
      failed(e);
    }
  }
  const error = (field: string) => errors[field] && <p role="alert" className="error">{errors[field]}</p>;
  return (
    <>
      <h2>Your account</h2>
      {notice && <p role="status">{notice}</p>}
      {error("form")}
      <form onSubmit={rename} aria-label="Your name" className="inline">
        <label>Your name<input name="name" autoComplete="name" maxLength={100} defaultValue={session.user.name ?? ""} aria-invalid={!!errors.name} /></label>
        <button>Save name</button>
      </form>
      {error("name")}
      {notifications && (
        <fieldset>
          <legend>Email me about my leads</legend>
          <p className="hint">{session.user.role === "admin" ? "A status change of a lead you submitted, a lead from your public form, or a lead flagged as a channel conflict." : "A status change of a lead you submitted."}</p>
          <label className="choice"><input type="radio" name="notifications" value="instant" checked={notifications === "instant"} onChange={() => void notify("instant")} /> As it happens</label>
          <label className="choice"><input type="radio" name="notifications" value="daily" checked={notifications === "daily"} onChange={() => void notify("daily")} /> Once a day, in one email</label>
          <label className="choice"><input type="radio" name="notifications" value="off" checked={notifications === "off"} onChange={() => void notify("off")} /> Never</label>
        </fieldset>
      )}
      <form onSubmit={changePassword} aria-label="Change your password" noValidate>
        <label>Current password<input name="currentPassword" type="password" autoComplete="current-password" aria-invalid={!!errors.currentPassword} /></label>
        {error("currentPassword")}
        <label>New password<input name="newPassword" type="password" autoComplete="new-password" aria-describedby="new-password-rules" aria-invalid={!!errors.newPassword} /></label>
        <small id="new-password-rules">At least 12 characters, at most 256.</small>
        {error("newPassword")}
        <label>Repeat the new password<input name="confirm" type="password" autoComplete="new-password" aria-invalid={!!errors.confirm} /></label>
        {error("confirm")}
        <button>Change password</button>
      </form>
    </>
  );
}
