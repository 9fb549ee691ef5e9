import { useState, type FormEvent } from "react";
import { useNavigate, useSearchParams } from "react-router-dom";
import { api, ApiError, type Session } from "../api/client";
import { useSession } from "../session";

export function passwordProblem(password: string): string | null {
  const length = [...password].length;
  if (length < 12) return "Use at least 12 characters.";
  if (length > 256) return "Use at most 256 characters.";
  return null;
}

export function RegisterPage() {
  const [params] = useSearchParams();
  const token = params.get("token") ?? "";
  const { signIn } = useSession();
  const navigate = useNavigate();
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<string | null>(null);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const password = String(form.get("password") ?? "");
    const tooWeak = passwordProblem(password);
    if (tooWeak) return setErrors({ password: tooWeak });
    if (password !== form.get("confirm")) return setErrors({ confirm: "The passwords differ." });
    setErrors({});
    setProblem(null);
    try {
      const session = await api<Session>("/auth/register", { method: "POST", body: { token, password, name: form.get("name") || undefined } });
      signIn(session);
      navigate("/");
    } catch (e) {
      if (!(e instanceof ApiError)) return setProblem(String(e));
      if (e.status === 410) setProblem("This invitation has expired. Ask the person who invited you (your company's portal admin, or your partner manager) to send a new one.");
      else if (e.status === 409) setProblem("This invitation has already been used. Log in instead.");
      else if (e.fieldErrors().token) setProblem("This invitation link is not valid (it may have been replaced by a newer one). Ask for a new invitation.");
      else setErrors(e.fieldErrors());
    }
  }
  if (!token) return <section className="narrow"><h1>Set up your account</h1><p role="alert">This page needs the link from your invitation email.</p></section>;
  return (
    <section className="narrow">
      <h1>Set up your account</h1>
      <form onSubmit={submit} noValidate>
        <label>Your name<input name="name" autoComplete="name" maxLength={100} /></label>
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
      </form>
    </section>
  );
}
