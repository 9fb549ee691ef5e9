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

/** The `<iframe>` a partner pastes into its own site to show its public form. */
export function embedCode(formUrl: string, partnerName: string): string {
  return `<iframe src="${escapeAttribute(formUrl)}" title="${escapeAttribute(`Contact ${partnerName}`)}" width="100%" height="640" style="border:0"></iframe>`;
}
