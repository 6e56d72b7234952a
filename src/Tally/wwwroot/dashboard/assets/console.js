// Tally console: buttons that call the admin API, and a refresh that runs only while the tab is visible.
// A button with data-method and data-url calls that route with the session cookie and the antiforgery
// token; data-confirm asks first; the answer is shown in the page's status region, then the page reloads.
// A button with data-bulk ("selected": the checked rows; "filter": everything matching data-filter) calls a
// bulk route twice: a dry run whose count the confirmation shows, then the call bounded by its upTo.
"use strict";

(function () {
  const token = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const status = document.getElementById("status");

  function say(text, failed) {
    if (!status) return;
    status.textContent = text;
    status.className = failed ? "failed" : "done";
  }

  async function act(button) {
    const question = button.dataset.confirm;
    if (question && !window.confirm(question)) return;
    button.disabled = true;
    try {
      const response = await fetch(button.dataset.url, {
        method: button.dataset.method,
        headers: { "X-CSRF-TOKEN": token, "Accept": "application/json" },
        credentials: "same-origin",
      });
      const text = await response.text();
      let body = null;
      try { body = text ? JSON.parse(text) : null; } catch { body = null; }
      if (!response.ok) {
        say(`${response.status}: ${body?.detail ?? body?.title ?? "refused"}`, true);
        button.disabled = false;
        return;
      }
      const run = body?.run;
      say(run ? `${button.dataset.done ?? "Done"}: run ${run.id} ${run.status}` : (button.dataset.done ?? "Done"), false);
      window.setTimeout(() => window.location.reload(), 800);
    } catch (error) {
      say(`Could not reach Tally: ${error}`, true);
      button.disabled = false;
    }
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "X-CSRF-TOKEN": token, "Accept": "application/json", "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body),
    });
    const text = await response.text();
    let answer = null;
    try { answer = text ? JSON.parse(text) : null; } catch { answer = null; }
    return { ok: response.ok, status: response.status, answer };
  }

  async function bulk(button) {
    const verb = button.dataset.verb;
    let selection;
    if (button.dataset.bulk === "selected") {
      const ids = Array.from(document.querySelectorAll('input[name="select"]:checked'), (box) => box.value);
      if (ids.length === 0) { say("Select at least one dead letter first.", true); return; }
      selection = { ids };
    } else {
      selection = JSON.parse(button.dataset.filter);
    }
    button.disabled = true;
    try {
      const preview = await post(button.dataset.url, { ...selection, dryRun: true });
      if (!preview.ok) { say(`${preview.status}: ${preview.answer?.detail ?? preview.answer?.title ?? "refused"}`, true); return; }
      const matched = preview.answer.matched;
      if (matched === 0) { say("Nothing matches any more.", false); return; }
      if (!window.confirm(`${verb} ${matched} dead letter(s)?`)) return;
      const done = await post(button.dataset.url, { ...selection, upTo: preview.answer.upTo });
      if (!done.ok) { say(`${done.status}: ${done.answer?.detail ?? done.answer?.title ?? "refused"}`, true); return; }
      const count = done.answer.replayed ?? done.answer.deleted;
      say(`${verb === "Replay" ? "Replayed" : "Deleted"} ${count} of ${matched} dead letter(s) previewed.`, false);
      window.setTimeout(() => window.location.reload(), 1500);
    } catch (error) {
      say(`Could not reach Tally: ${error}`, true);
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-url]");
    if (!button) return;
    if (button.dataset.bulk) bulk(button); else act(button);
  });

  const seconds = Number(document.querySelector('meta[name="refresh-seconds"]')?.content ?? 0);
  if (seconds > 0) {
    window.setInterval(() => {
      if (document.visibilityState === "visible" && !document.querySelector("button:disabled")) {
        window.location.reload();
      }
    }, seconds * 1000);
  }
})();
