import { describe, expect, it } from "vitest";
import { accountName, submitterName } from "./names";

describe("submitterName", () => {
  const team = { me: "u-me", names: new Map([["u-sam", "Sam Sub"]]) };
  it("names the public form, the signed-in user, and team members", () => {
    expect(submitterName({ type: "public" }, team)).toBe("Public form");
    expect(submitterName({ type: "user", id: "u-me" }, team)).toBe("You");
    expect(submitterName({ type: "user", id: "u-sam" }, team)).toBe("Sam Sub");
    expect(submitterName({ type: "user", id: "u-gone" }, team)).toBe("A team member");
  });
});

describe("accountName", () => {
  it("falls back to the email when the name is empty", () => {
    const account = { id: "a", email: "sam@acme.example", createdAt: "", leadCount: 0, status: "active" };
    expect(accountName({ ...account, name: "  " })).toBe("sam@acme.example");
    expect(accountName({ ...account, name: "Sam" })).toBe("Sam");
  });
});
