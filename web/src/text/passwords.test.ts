import { describe, expect, it } from "vitest";
import { newPassword } from "./passwords";

describe("newPassword", () => {
  const form = (password: string, confirm: string) => {
    const data = new FormData();
    data.set("password", password);
    data.set("confirm", confirm);
    return data;
  };
  it("names the field at fault, or gives the password", () => {
    expect(newPassword(form("short", "short"), "password")).toEqual({ errors: { password: "Use at least 12 characters." } });
    expect(newPassword(form("long enough pass", "long enough PASS"), "password")).toEqual({ errors: { confirm: "The passwords differ." } });
    expect(newPassword(form("long enough pass", "long enough pass"), "password")).toEqual({ password: "long enough pass" });
  });
});
