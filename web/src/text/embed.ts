/** Text placed into HTML that someone else's page will parse: every value escaped for an
 *  attribute, so a partner name such as `Evil" onload="alert(1)` stays text (issue 15, 3). */
export function escapeAttribute(value: string): string {
  return value
    .replace(/&/g, "&amp;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;");
}

/** A string literal for a script inside HTML: JSON, with `<`, `>` and `&` escaped so no
 *  `</script>` (or comment opener) can appear in it. */
export function scriptString(value: string): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026");
}

/** What the public form tells the page framing it: its height, so the frame fits it. */
export const HEIGHT_MESSAGE = "soho-form-height";

/**
 * The snippet a partner pastes into its own site: the form in an `<iframe>`, and a few lines
 * that size the frame to the form (the form posts its height; only messages from the portal's
 * origin and that frame are heeded, and the height is clamped). The partner's name appears only
 * in the title attribute, escaped; the script carries only the portal's origin and the frame's id.
 */
export function embedCode(formUrl: string, partnerName: string): string {
  const url = new URL(formUrl);
  const id = `soho-form-${(url.searchParams.get("partnerId") ?? "").replace(/[^0-9a-f-]/gi, "")}`;
  const frame = `<iframe id="${escapeAttribute(id)}" src="${escapeAttribute(formUrl)}" title="${escapeAttribute(`Contact ${partnerName}`)}" width="100%" height="640" style="border:0"></iframe>`;
  const script = `<script>(function(){var f=document.getElementById(${scriptString(id)});addEventListener("message",function(e){var d=e.data;if(f&&e.origin===${scriptString(url.origin)}&&e.source===f.contentWindow&&d&&d.type===${scriptString(HEIGHT_MESSAGE)}){f.style.height=Math.min(Math.max(Number(d.height)||0,200),4000)+"px";}});})();</script>`;
  return `${frame}\n${script}`;
}
