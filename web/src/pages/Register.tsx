import { useEffect, useState, type FormEvent } from "react";
import { useNavigate, useSearchParams } from "react-router-dom";
import { api, ApiError, type Session } from "../api/client";
import { useSession } from "../session";
import { newPassword } from "../text/passwords";
import type { components } from "../api/schema";


type Invitation = components["schemas"]["InvitationView"];

/** Why an invitation link cannot be used, in words that say what to do. */
function explain(e: unknown): string {
  if (!(e instanceof ApiError)) return String(e);
  if (e.status === 410) return "This invitation has expired. Ask the person who invited you (your company's portal admin, or your partner manager) to send a new one.";
  if (e.status === 409) return "This invitation has already been used. Log in instead.";
  if (e.status === 403) return e.message;
  if (e.status === 422) return "This invitation link is not valid (it may have been replaced by a newer one). Ask for a new invitation.";
  return e.message;
}

export function RegisterPage() {
  const [params] = useSearchParams();
  const token = params.get("token") ?? "";
  const { signIn } = useSession();
  const navigate = useNavigate();
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<string | null>(null);
  // What the link is for (company, email, inviter), asked before anything is typed.
  const [invitation, setInvitation] = useState<Invitation | null>(null);
  useEffect(() => {
    if (!token) return;
    api<Invitation>("/auth/invitation", { method: "POST", body: { token } }).then(setInvitation, (e) => setProblem(explain(e)));
  }, [token]);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const typed = newPassword(form, "password");
    if ("errors" in typed) return setErrors(typed.errors);
    const { password } = typed;
    setErrors({});
    setProblem(null);
    try {
      const session = await api<Session>("/auth/register", { method: "POST", body: { token, password, name: form.get("name") || undefined } });
      signIn(session);
      navigate("/");
    } catch (e) {
      if (e instanceof ApiError && e.status === 422 && !e.fieldErrors().token) setErrors(e.fieldErrors());
      else setProblem(explain(e));
    }
  }
  if (!token) return <section className="narrow"><h1>Set up your account</h1><p role="alert">This page needs the link from your invitation email.</p></section>;
  return (
    <section className="narrow">
      <h1>Set up your account</h1>
      {invitation && (
        <p data-testid="invitation">
          {invitation.partnerName ? <>You are joining <strong>{invitation.partnerName}</strong></> : <>You are joining the Soho Partner Portal</>}
          {invitation.role === "admin" ? " as its portal administrator" : invitation.role === "auditor" ? " as an auditor" : ""}, with the email <strong>{invitation.email}</strong>.
          {invitation.invitedBy ? <> {invitation.invitedBy} invited you.</> : invitation.role === "admin" ? <> Your company was approved as a partner in Soho CRM.</> : null}
        </p>
      )}
      {!invitation && (problem ? <p role="alert" className="error">{problem}</p> : <p role="status">Loading…</p>)}
      {invitation && <form onSubmit={submit} noValidate>
        <label>Your name<input name="name" autoComplete="name" maxLength={100} defaultValue={invitation?.name ?? ""} /></label>
        <label>
          Password
          <input name="password" type="password" autoComplete="new-password" aria-describedby="password-rules" aria-invalid={!!errors.password} />
        </label>
        <small id="password-rules">At least 12 characters, at most 256.</small>
        {errors.password && <p role="alert" className="error">{errors.password}</p>}
        <label>Repeat the password<input name="confirm" type="password" autoComplete="new-password" aria-invalid={!!errors.confirm} /></label>
        {errors.confirm && <p role="alert" className="error">{errors.confirm}</p>}
        {problem && <p role="alert" className="error">{problem}</p>}
        <button>Create my account</button>
      </form>}
    </section>
  );
}
