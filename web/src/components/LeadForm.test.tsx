import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "../api/client";
import { LeadForm, validateLead } from "./LeadForm";

afterEach(cleanup);

describe("validateLead", () => {
  it("needs a last name and a way to reach the person", () => {
    expect(validateLead({})).toEqual({ lastName: "Last name is required.", email: "An email or a phone is required." });
    expect(validateLead({ lastName: "L", phone: "+44 20 7946 0000" })).toEqual({});
  });
  it("bounds the fields as the contract does", () => {
    expect(validateLead({ lastName: "x".repeat(101), email: "a@b.co" }).lastName).toMatch(/100/);
    expect(validateLead({ lastName: "L", email: "nope" }).email).toMatch(/email/);
    expect(validateLead({ lastName: "L", phone: "call me" }).phone).toMatch(/phone/);
    expect(validateLead({ lastName: "L", email: "a@b.co", notes: "n".repeat(2001) }).notes).toMatch(/2,000/);
  });
});

describe("LeadForm", () => {
  it("asks for consent when told to, and sends only once it is given", async () => {
    const onSubmit = vi.fn().mockResolvedValue(undefined);
    const sentence = "I agree that Acme may contact me about this enquiry.";
    render(<LeadForm submitLabel="Send" onSubmit={onSubmit} consent={sentence} />);
    fireEvent.change(screen.getByLabelText(/Last name/), { target: { value: "Babbage" } });
    fireEvent.change(screen.getByLabelText("Email"), { target: { value: "charles@example.com" } });
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByText(/Tick the box/)).toBeTruthy();
    expect(onSubmit).not.toHaveBeenCalled();
    fireEvent.click(screen.getByLabelText(sentence));
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    await waitFor(() => expect(onSubmit).toHaveBeenCalledTimes(1));
    expect(onSubmit.mock.calls[0][0]).toMatchObject({ lastName: "Babbage", consent: "on" });
  });

  it("shows the rules before sending and sends nothing", async () => {
    const onSubmit = vi.fn();
    render(<LeadForm submitLabel="Send" onSubmit={onSubmit} />);
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByText("Last name is required.")).toBeTruthy();
    expect(screen.getByText("An email or a phone is required.")).toBeTruthy();
    expect(screen.getByLabelText(/Last name/).getAttribute("aria-invalid")).toBe("true");
    expect(onSubmit).not.toHaveBeenCalled();
  });

  it("shows the server's problem+json field by field", async () => {
    const problem = { type: "/problems/validation-failed", title: "Validation failed", status: 422, detail: "",
      errors: [{ field: "company", message: "must be at most 200 characters" }] };
    const onSubmit = vi.fn().mockRejectedValue(new ApiError(422, problem));
    render(<LeadForm submitLabel="Send" onSubmit={onSubmit} />);
    fireEvent.change(screen.getByLabelText(/Last name/), { target: { value: "Lovelace" } });
    fireEvent.change(screen.getByLabelText("Email"), { target: { value: "ada@example.com" } });
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByText("must be at most 200 characters")).toBeTruthy();
    expect(onSubmit).toHaveBeenCalledWith(expect.objectContaining({ lastName: "Lovelace", email: "ada@example.com" }));
  });

  it("explains a rate limit", async () => {
    const onSubmit = vi.fn().mockRejectedValue(new ApiError(429, { type: "", title: "", status: 429, detail: "" }));
    render(<LeadForm submitLabel="Send" onSubmit={onSubmit} honeypot />);
    fireEvent.change(screen.getByLabelText(/Last name/), { target: { value: "L" } });
    fireEvent.change(screen.getByLabelText("Phone"), { target: { value: "+1 555 0100" } });
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    await waitFor(() => expect(screen.getByRole("alert").textContent).toMatch(/Too many submissions/));
  });
});
