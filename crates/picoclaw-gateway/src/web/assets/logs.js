// The Logs page, live: asks /ui/api/logs for the lines after the last one shown (the gateway
// holds the request until a line comes, up to 25 s), appends them as text, keeps the view at
// the bottom unless the reader scrolled up. The page works without it (Apply reloads).
"use strict";

(() => {
  const view = document.getElementById("logs-view");
  const list = document.getElementById("logs-list");
  const form = document.getElementById("logs-form");
  const level = document.getElementById("logs-level");
  const filter = document.getElementById("logs-filter");
  const pause = document.getElementById("logs-pause");
  const status = document.getElementById("logs-status");
  if (!view || !list || !form) return;

  const MAX_LINES = 2000;
  let next = view.dataset.next === "" ? null : view.dataset.next;
  let paused = false;
  let generation = 0; // a filter change makes the requests in flight stale
  let controller = null;

  const atBottom = () => view.scrollHeight - view.scrollTop - view.clientHeight < 24;
  const toBottom = () => { view.scrollTop = view.scrollHeight; };
  const say = (text) => { status.textContent = text; };

  const append = (lines) => {
    const follow = atBottom();
    for (const line of lines) {
      const li = document.createElement("li");
      li.dataset.seq = String(line.seq);
      li.dataset.level = line.level;
      li.textContent = line.text;
      list.appendChild(li);
    }
    while (list.childElementCount > MAX_LINES) list.firstElementChild.remove();
    if (follow) toBottom();
  };

  const query = (wait) => {
    const q = new URLSearchParams();
    if (level.value) q.set("level", level.value);
    if (filter.value.trim()) q.set("q", filter.value.trim());
    if (next !== null) q.set("after", next);
    if (wait) q.set("wait", "true");
    return q;
  };

  const poll = async () => {
    const mine = generation;
    while (!paused && mine === generation) {
      controller = new AbortController();
      try {
        const resp = await fetch("/ui/api/logs?" + query(true), {
          credentials: "same-origin",
          signal: controller.signal,
        });
        if (mine !== generation) return;
        if (resp.status === 401) { say("Logged out: reload the page to log in again."); return; }
        const body = await resp.json();
        if (!resp.ok) { say(body.error || "The gateway refused the request."); return; }
        if (body.next !== null && body.next !== undefined) next = String(body.next);
        append(body.lines);
        say(list.childElementCount + " lines shown; live.");
      } catch (err) {
        if (err.name === "AbortError" || mine !== generation) return;
        say("Lost the connection to the gateway; trying again in 5 s.");
        await new Promise((r) => setTimeout(r, 5000));
      }
    }
  };

  const restart = async () => {
    generation += 1;
    const mine = generation;
    if (controller) controller.abort();
    // Everything kept that passes the new filter, then live again.
    next = null;
    while (list.firstChild) list.firstChild.remove();
    const url = new URL(window.location.href);
    url.search = query(false).toString();
    window.history.replaceState(null, "", url);
    try {
      const resp = await fetch("/ui/api/logs?" + query(false), { credentials: "same-origin" });
      const body = await resp.json();
      if (mine !== generation) return;
      if (!resp.ok) { say(body.error || "The gateway refused the request."); return; }
      if (body.next !== null && body.next !== undefined) next = String(body.next);
      append(body.lines);
      toBottom();
      say(list.childElementCount + " lines shown" + (paused ? "; paused." : "; live."));
    } catch (err) {
      say("Cannot reach the gateway: " + err.message);
      return;
    }
    if (!paused) poll();
  };

  form.addEventListener("submit", (event) => { event.preventDefault(); restart(); });
  level.addEventListener("change", restart);
  let typing = null;
  filter.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(restart, 300);
  });

  pause.hidden = false;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      generation += 1;
      if (controller) controller.abort();
      say("Paused: new lines are not shown until you resume.");
    } else {
      say("Live.");
      poll();
    }
  });

  toBottom();
  poll();
})();
