import { describe, expect, it } from "vitest";
import { embedCode, scriptString } from "./embed";

/** What a browser makes of the snippet: its elements and their attributes. */
function parse(html: string): Element[] {
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, "text/html");
  return Array.from(doc.body.children);
}

describe("embedCode", () => {
  const form = "https://portal.example/public-form?partnerId=3f2b&x=1";
  const hostile = [`Evil" onload="alert(document.domain)`, `A "quoted" name`, `x'><script>alert(1)</script>`, "Smith & Sons", "</script><script>alert(1)</script>"];

  it("keeps a hostile partner name inside the title attribute", () => {
    for (const name of hostile) {
      const elements = parse(embedCode(form, name));
      expect(elements.map((e) => e.tagName)).toEqual(["IFRAME", "SCRIPT"]);
      const frame = elements[0];
      expect(frame.getAttributeNames().sort()).toEqual(["height", "id", "src", "style", "title", "width"]);
      expect(frame.getAttribute("title")).toBe(`Contact ${name}`);
      expect(frame.getAttribute("src")).toBe(form);
      expect(frame.id).toBe("soho-form-3f2b");
      // The script never carries the name.
      expect(elements[1].textContent).not.toContain("Evil");
      expect(elements[1].textContent).toContain(`"https://portal.example"`);
    }
  });

  it("keeps a hostile partner id out of the frame's id and the script", () => {
    const elements = parse(embedCode(`https://portal.example/public-form?partnerId=${encodeURIComponent(`"</script><b>x`)}`, "P"));
    expect(elements.map((e) => e.tagName)).toEqual(["IFRAME", "SCRIPT"]);
    expect(elements[0].id).toBe("soho-form-cb");
  });
});

describe("scriptString", () => {
  it("cannot close the script it sits in", () => {
    expect(scriptString("</script><!--")).toBe(`"\\u003c/script\\u003e\\u003c!--"`);
    expect(JSON.parse(scriptString("a & <b>"))).toBe("a & <b>");
  });
});
