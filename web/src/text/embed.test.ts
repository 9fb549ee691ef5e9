import { describe, expect, it } from "vitest";
import { embedCode } from "./embed";

/** What a browser makes of the snippet: the one element and its attributes. */
function parse(html: string): Element[] {
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, "text/html");
  return Array.from(doc.body.children);
}

describe("embedCode", () => {
  const form = "https://portal.example/public-form?partnerId=3f2b&x=1";

  it("keeps a hostile partner name inside the title attribute", () => {
    for (const name of [`Evil" onload="alert(document.domain)`, `A "quoted" name`, `x'><script>alert(1)</script>`, "Smith & Sons"]) {
      const elements = parse(embedCode(form, name));
      expect(elements).toHaveLength(1);
      const frame = elements[0];
      expect(frame.tagName).toBe("IFRAME");
      expect(frame.getAttributeNames().sort()).toEqual(["height", "src", "style", "title", "width"]);
      expect(frame.getAttribute("title")).toBe(`Contact ${name}`);
      expect(frame.getAttribute("src")).toBe(form);
    }
  });
});
