// The /admin page refreshes itself: every 2 s it fetches api/dashboard and swaps in the
// parts the server rendered (HTML it escaped), by element id. A 401 sends it to the login.
"use strict";
(function () {
  const EVERY_MS = 2000;
  const updated = document.getElementById("updated");

  async function refresh() {
    try {
      const resp = await fetch("api/dashboard", { credentials: "same-origin", cache: "no-store" });
      if (resp.status === 401) { window.location.assign("login"); return; }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const data = await resp.json();
      for (const [id, markup] of Object.entries(data.html)) {
        const el = document.getElementById(id);
        if (el) el.innerHTML = markup;
      }
      updated.textContent = "updated " + new Date().toLocaleTimeString();
      updated.classList.remove("stale");
    } catch (err) {
      updated.textContent = "not updating: " + err.message;
      updated.classList.add("stale");
    }
  }
  setInterval(refresh, EVERY_MS);
})();
