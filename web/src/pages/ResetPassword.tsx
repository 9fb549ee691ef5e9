import { useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { api, ApiError } from "../api/client";
import { newPassword } from "../text/passwords";

/** The page a reset link opens: a new password, then log in with it. */
export function ResetPasswordPage() {
  const [params] = useSearchParams();
  const token = params.get("token") ?? "";
  const navigate = useNavigate();
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [problem, setProblem] = useState<string | null>(null);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const typed = newPassword(form, "password");
    if ("errors" in typed) return setErrors(typed.errors);
    const { password } = typed;
    setErrors({});
    setProblem(null);
    try {
      await api("/auth/password-reset/confirm", { method: "POST", body: { token, password } });
      navigate("/login?reset=1");
    } catch (e) {
      if (!(e instanceof ApiError)) return setProblem(String(e));
      if (e.status === 410) setProblem("This link has expired (links work for one hour). Ask for a new one.");
      else if (e.status === 403) setProblem("This account has been disabled by your company's portal admin. Ask them to enable it.");
      else if (e.fieldErrors().token) setProblem("This link is not valid or has already been used. Ask for a new one.");
      else setErrors(e.fieldErrors());
    }
  }
  const askAgain = <p><Link to="/forgot-password">Ask for a new link</Link></p>;
  if (!token) return <section className="narrow"><h1>Choose a new password</h1><p role="alert">This page needs the link from your password reset email.</p>{askAgain}</section>;
  return (
    <section className="narrow">
      <h1>Choose a new password</h1>
      <form onSubmit={submit} noValidate>
        <label>
          New password
          <input name="password" type="password" autoComplete="new-password" aria-describedby="password-rules" aria-invalid={!!errors.password} />
        </label>
        <small id="password-rules">At least 12 characters, at most 256.</small>
        {errors.password && <p role="alert" className="error">{errors.password}</p>}
        <label>Repeat the password<input name="confirm" type="password" autoComplete="new-password" aria-invalid={!!errors.confirm} /></label>
        {errors.confirm && <p role="alert" className="error">{errors.confirm}</p>}
        {problem && <><p role="alert" className="error">{problem}</p>{askAgain}</>}
        <button>Set the new password</button>
      </form>
    </section>
  );
}
