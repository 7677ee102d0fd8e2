// The labeling page: one frame at a time, answered with a key press.
//
// - GET /api/next gives the request on screen and the next ones, whose images are preloaded.
// - An answer is held for data-undo-ms (Undo) before it is POSTed; the next frame shows at
//   once. A second answer sends the held one first: only the last answer can be undone.
// - "Can't tell" is sent at once (the frame is asked of someone else).
// - An answer that cannot reach the server is retried until it is sent (the page says so);
//   only a refusal (4xx) or a closed page ends it unsent. One that is not counted (the frame
//   was decided meanwhile, or answered in another tab) says so; one refused because the gold
//   frames paused the person (a 409 with "paused") shows the paused message instead.
// - A heartbeat every data-heartbeat-ms keeps this person live while the page is open; its
//   reply says when the gold frames paused them, and the page says so.
// - "Log out" first sends the answer held for Undo and waits for answers still being sent (and
//   a /api/next in flight), then POSTs /logout (the server deletes the session and skips what
//   the person still holds, so that it goes to someone else now) and goes to / (which asks to
//   log in).
// Keys: yes = Y, 1, ArrowRight, ArrowUp; no = N, 0, ArrowLeft, ArrowDown;
//       can't tell = S, ?; undo = U, Backspace. A key held down answers one frame, not each
//       frame its auto-repeat reaches. A clicked button does not keep the focus, so Enter or
//       Space after a click answers nothing.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const undoMs = Number(document.body.dataset.undoMs || 3000);
  const heartbeatMs = Number(document.body.dataset.heartbeatMs || 2000);
  const el = (id) => document.getElementById(id);
  const frame = el("frame"), status = el("status"), empty = el("empty");
  const buttons = { yes: el("yes"), no: el("no"), skip: el("skip"), undo: el("undo"),
                    logout: el("logout") };

  let items = [];          // requests from the server, the first on screen: {token, image}
  let current = null;      // the item on screen
  let held = null;         // {item, label, timer, until}: the answer Undo can take back
  const done = new Set();  // tokens answered or skipped on this page
  let loading = false, pollTimer = null, loggedOut = false, paused = false, leaving = false;
  let unsent = 0;          // answers being retried because the server cannot be reached
  const sending = new Set();  // answers and skips POSTed and not settled yet (promises)
  const UNREACHABLE = "Cannot reach the server; retrying.";
  const UNSENT = "Your answer is not sent yet: cannot reach the server; retrying.";
  const NOT_COUNTED = "Not counted: that frame was decided meanwhile (or answered in another tab).";

  async function call(method, url, body, keepalive) {
    const opts = { method, credentials: "same-origin", keepalive: !!keepalive, headers: {} };
    if (method !== "GET") {
      opts.headers["X-CSRF-Token"] = csrf;
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
    const res = await fetch(url, opts);
    if (res.status === 401) { sessionEnded(); }
    return res;
  }

  function sessionEnded() {
    loggedOut = true;
    show(null);
    status.textContent = "Your session ended: ask whoever runs the labeling for a new login link.";
  }

  function setButtons() {
    const on = current !== null && !loggedOut;
    buttons.yes.disabled = buttons.no.disabled = buttons.skip.disabled = !on;
    buttons.undo.disabled = held === null;
  }

  function show(item) {
    current = item;
    if (item) {
      frame.src = item.image;
      frame.hidden = false;
      empty.hidden = true;
      frame.classList.remove("held");
    } else {
      frame.hidden = true;
      frame.removeAttribute("src");
      empty.hidden = loggedOut;
    }
    setButtons();
  }

  function preload(list) {
    for (const item of list) { new Image().src = item.image; }
  }

  async function load() {
    if (loading || loggedOut || leaving) { return; }
    loading = true;
    clearTimeout(pollTimer);
    try {
      const res = await call("GET", "/api/next");
      if (res.status === 200) {
        const data = await res.json();
        const fresh = [{ token: data.token, image: data.image }, ...data.next];
        items = fresh.filter((it) => !done.has(it.token) && !(held && held.item.token === it.token));
        if (!current) { progress(); }  // new work came in: say how much waits
      } else if (res.status === 204) {
        items = [];
      }
      if (status.textContent === UNREACHABLE) { status.textContent = ""; }
    } catch (err) {
      if (!unsent) { status.textContent = UNREACHABLE; }
    } finally {
      loading = false;
    }
    const stillHeld = current && items.some((it) => it.token === current.token);
    if (!current || done.has(current.token) || !stillHeld) {
      show(items.length ? items[0] : null);  // a frame finalised meanwhile is dropped
    }
    preload(items.slice(1));
    if (!items.length || (items.length === 1 && current) || status.textContent === UNREACHABLE) {
      pollTimer = setTimeout(load, 2000);  // nothing queued (or no server): look again shortly
    }
  }

  function advance() {
    items = items.filter((it) => it.token !== current.token);
    show(items.length ? items[0] : null);
    if (items.length <= 1) { load(); }
  }

  function send(item, label) {
    const sent = post(item, label);
    sending.add(sent);
    sent.finally(() => sending.delete(sent));
    return sent;
  }

  async function post(item, label) {
    const url = label === null ? "/api/skip" : "/api/answer";
    const body = label === null ? { token: item.token } : { token: item.token, label };
    let failing = false;
    // until the server answers: an answer given is never dropped because the server was
    // restarting or the network was down for a while (its late label still counts once)
    for (let attempt = 0; !loggedOut; attempt++) {
      try {
        const res = await call("POST", url, body, true);
        if (res.status === 200) {
          const done = await res.json().catch(() => ({}));
          if (done.status === "not_needed" && label !== null) {
            status.textContent = NOT_COUNTED;
          } else if (failing && unsent === 1) { status.textContent = ""; }
          break;
        }
        if (res.status === 409) {  // out of the hand: answered in another tab, or decided,
          const why = await res.json().catch(() => ({}));  // or taken back by a pause
          if (why.paused) {
            setPaused(true);
            status.textContent = "";  // the paused message says why, not "decided meanwhile"
          } else if (label !== null) { status.textContent = NOT_COUNTED; }
          break;
        }
        if (res.status < 500) {
          if (!loggedOut) { status.textContent = (await res.json()).error; }
          break;
        }
      } catch (err) { /* network: retry */ }
      if (!failing) { failing = true; unsent += 1; }
      status.textContent = UNSENT;
      await new Promise((ok) => setTimeout(ok, Math.min(500 * (attempt + 1), 5000)));
    }
    if (failing) { unsent -= 1; }
    progress();
    load();
  }

  function flush() {
    if (!held) { return; }
    const { item, label, timer } = held;
    clearTimeout(timer);
    held = null;
    status.textContent = "";
    setButtons();
    send(item, label);
  }

  function answer(label) {
    if (!current || loggedOut || leaving) { return; }
    flush();
    const item = current;
    done.add(item.token);
    held = { item, label, timer: setTimeout(flush, undoMs) };
    status.textContent = (label ? "Yes" : "No") + " — Undo for " + Math.round(undoMs / 1000) + " s";
    advance();
    setButtons();
  }

  function skip() {
    if (!current || loggedOut || leaving) { return; }
    flush();
    const item = current;
    done.add(item.token);
    status.textContent = "Skipped: someone else will be asked.";
    advance();
    send(item, null);
  }

  function undo() {
    if (!held) { return; }
    const { item, timer } = held;
    clearTimeout(timer);
    held = null;
    done.delete(item.token);
    items = [item, ...items.filter((it) => it.token !== item.token)];
    status.textContent = "Undone: answer this frame again.";
    show(item);
  }

  async function logOut() {
    if (leaving) { return; }
    leaving = buttons.logout.disabled = true;  // no new answer while logging out
    flush();  // the answer held for Undo is sent, not dropped
    if (sending.size) { status.textContent = "Sending your answers, then logging out…"; }
    await Promise.allSettled([...sending]);
    while (loading) { await new Promise((done) => setTimeout(done, 20)); }  // a /api/next in flight
    try {
      const res = await fetch("/logout", {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
      });
      if (res.status === 204 || res.status === 401) {  // 401: the session had ended already
        loggedOut = true;
        window.location.assign("/");
        return;
      }
      status.textContent = "Not logged out: the server answered " + res.status + ".";
    } catch (err) {
      status.textContent = "Not logged out: cannot reach the server. Try again.";
    }
    leaving = buttons.logout.disabled = false;
    load();  // no /api/next went out while logging out: look for work again
  }

  async function progress() {
    try {
      const res = await call("GET", "/api/progress");
      if (res.status !== 200) { return; }
      const p = await res.json();
      el("progress").textContent =
        "Answered today: " + p.answered_today + " · Waiting for you: " + p.waiting;
    } catch (err) { /* shown next time */ }
  }

  function setPaused(now) {
    if (now === paused) { return; }
    paused = now;
    empty.textContent = paused
      ? "Your answers are paused: your answers to the check frames were too often wrong. "
        + "Ask whoever runs the labeling to review them (gtx-stream gold reset)."
      : "Nothing to label right now. New frames appear here by themselves.";
    if (!paused) { load(); }
  }

  async function heartbeat() {
    if (loggedOut) { return; }
    try {
      const res = await call("POST", "/api/heartbeat");
      if (res.status === 200) { setPaused(!!(await res.json()).paused); }
    } catch (err) { /* next beat */ }
  }

  const KEYS = {
    y: () => answer(1), "1": () => answer(1), ArrowRight: () => answer(1), ArrowUp: () => answer(1),
    n: () => answer(0), "0": () => answer(0), ArrowLeft: () => answer(0), ArrowDown: () => answer(0),
    s: skip, "?": skip, u: undo, Backspace: undo,
  };
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (ev.repeat) { ev.preventDefault(); return; }  // a key held down: one answer
    const act = KEYS[ev.key.length === 1 ? ev.key.toLowerCase() : ev.key];
    if (act) { ev.preventDefault(); act(); }
  });
  // A clicked button lets go of the focus: kept, Enter or Space would click it again and
  // answer the next frame the same way.
  const onClick = (act) => (ev) => { ev.currentTarget.blur(); act(); };
  buttons.yes.addEventListener("click", onClick(() => answer(1)));
  buttons.no.addEventListener("click", onClick(() => answer(0)));
  buttons.skip.addEventListener("click", onClick(skip));
  buttons.undo.addEventListener("click", onClick(undo));
  buttons.logout.addEventListener("click", onClick(logOut));
  window.addEventListener("pagehide", flush);  // an answer given is sent, also when leaving

  heartbeat();
  setInterval(heartbeat, heartbeatMs);
  setInterval(progress, 10000);
  progress();
  load();
})();
