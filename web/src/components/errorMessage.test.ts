import { describe, expect, it } from "vitest";
import { ApiError } from "../api/client";
import { errorMessage } from "./Layout";

const refused = (field: string, message: string) =>
  new ApiError(422, { type: "/problems/invalid", title: "Invalid", status: 422, detail: "One or more fields are invalid.", errors: [{ field, message }] });

describe("errorMessage", () => {
  it("says what a refused field needs, as a sentence, instead of the problem's generic detail", () => {
    expect(errorMessage(refused("sort", "sorting by name takes at most 10000 leads: narrow the list first"))).toBe(
      "Sorting by name takes at most 10000 leads: narrow the list first.",
    );
    expect(errorMessage(refused("q", "must be at most 100 characters"))).toBe("The search must be at most 100 characters.");
    expect(errorMessage(refused("createdBefore", "must be after createdAfter."))).toBe("The created before must be after createdAfter.");
  });
  it("keeps other errors as they are", () => {
    const notFound = new ApiError(404, { type: "/problems/not-found", title: "Not found", status: 404, detail: "The resource does not exist." });
    expect(errorMessage(notFound)).toBe("The resource does not exist.");
    const forbidden = new ApiError(403, { type: "/problems/forbidden", title: "Forbidden", status: 403, detail: "the partner is suspended" });
    expect(errorMessage(forbidden)).toBe("The partner is suspended.");
    expect(errorMessage(new Error("Network down"))).toBe("Network down");
  });
});
