/** What is wrong with a password the portal would refuse (its rules, counted as people count). */
export function passwordProblem(password: string): string | null {
  const length = [...password].length;
  if (length < 12) return "Use at least 12 characters.";
  if (length > 256) return "Use at most 256 characters.";
  return null;
}

/**
 * A new password typed twice in `form` (under `field` and `confirm`): the password, or the
 * errors to show by field.
 */
export function newPassword(form: FormData, field: string): { password: string } | { errors: Record<string, string> } {
  const password = String(form.get(field) ?? "");
  const tooWeak = passwordProblem(password);
  if (tooWeak) return { errors: { [field]: tooWeak } };
  if (password !== form.get("confirm")) return { errors: { confirm: "The passwords differ." } };
  return { password };
}
