// Tally console: buttons that call the admin API, and a refresh that runs only while the tab is visible.
// A button with data-method and data-url calls that route with the session cookie and the antiforgery
// token; data-confirm asks first; the answer is shown in the page's status region, then the page reloads.
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

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-url]");
    if (button) act(button);
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
