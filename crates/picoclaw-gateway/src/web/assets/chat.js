// picoclaw dashboard, Chat page: safe Markdown, sending with a streamed answer, cancel, files.
// Everything the model or a user wrote goes into the page through textContent and
// createElement only: a "<script>" in an answer shows as text.
"use strict";

(() => {
  const MAX_FILE = 10 * 1024 * 1024;
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // ---- Markdown: a small, safe subset. ----
  const SAFE_LINK = /^(https?:|mailto:)/i;
  // Spans stay within a line (the renderer passes one line at a time) and are bounded, so a
  // long answer is never scanned quadratically.
  const INLINE = /(`+)([^\n]{0,2000}?[^`\n])\1(?!`)|\*\*([^\n]{1,2000}?)\*\*|__([^\n]{1,2000}?)__|\*([^*\s](?:[^\n]{0,2000}?[^*\s])?)\*|(?<![A-Za-z0-9])_([^_\s](?:[^\n]{0,2000}?[^_\s])?)_(?![A-Za-z0-9])|\[([^\]\n]{1,300})\]\(([^)\s]{1,2000})\)|(https?:\/\/[^\s<>()]{1,2000}[^\s<>().,;:!?'"])/;

  const inline = (text, parent) => {
    let rest = text;
    while (rest) {
      const m = INLINE.exec(rest);
      if (!m) { parent.append(rest); break; }
      if (m.index) parent.append(rest.slice(0, m.index));
      if (m[1]) parent.append(el("code", null, m[2].replace(/^ (.*) $/, "$1")));
      else if (m[3] !== undefined || m[4] !== undefined) inline(m[3] ?? m[4], parent.appendChild(el("strong")));
      else if (m[5] !== undefined || m[6] !== undefined) inline(m[5] ?? m[6], parent.appendChild(el("em")));
      else if (m[7] !== undefined) parent.append(link(m[8], m[7]));
      else parent.append(link(m[9], m[9]));
      rest = rest.slice(m.index + m[0].length);
    }
  };

  const link = (href, label) => {
    if (!SAFE_LINK.test(href)) return document.createTextNode(label === href ? href : `${label} (${href})`);
    const a = el("a", null, label);
    a.href = href;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    return a;
  };

  const LIST = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  // Past this length an answer is shown as plain text (rendering it again at every delta would
  // cost more than it shows).
  const MAX_RENDERED = 50000;
  // Deeper quotes are shown as text.
  const MAX_QUOTE_DEPTH = 8;
  const render = (source, depth = 0) => {
    const out = document.createDocumentFragment();
    const lines = source.replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    let last = -1;
    while (i < lines.length) {
      // Every pass moves on: a line no rule takes is shown as text.
      if (i === last) { out.append(el("p", null, lines[i])); i++; continue; }
      last = i;
      const line = lines[i];
      const fence = line.match(/^\s*(```+|~~~+)\s*([\w+-]*)/);
      if (fence) {
        const body = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
        i++;
        const pre = el("pre");
        const code = el("code", null, body.join("\n"));
        if (fence[2]) code.dataset.lang = fence[2];
        pre.append(code);
        out.append(pre);
        continue;
      }
      if (!line.trim()) { i++; continue; }
      const heading = line.match(/^\s*(#{1,6})\s+(.*?)\s*#*\s*$/);
      if (heading) {
        const h = el(`h${Math.min(6, heading[1].length + 2)}`);
        inline(heading[2], h);
        out.append(h);
        i++;
        continue;
      }
      if (/^\s*>/.test(line)) {
        const quoted = [];
        while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*> ?/, ""));
        const q = el("blockquote");
        if (depth >= MAX_QUOTE_DEPTH) q.append(el("p", null, quoted.join("\n")));
        else q.append(render(quoted.join("\n"), depth + 1));
        out.append(q);
        continue;
      }
      if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) { out.append(el("hr")); i++; continue; }
      const item = line.match(LIST);
      if (item) {
        const ordered = /\d/.test(item[2]);
        const list = el(ordered ? "ol" : "ul");
        if (ordered && parseInt(item[2], 10) !== 1) list.start = parseInt(item[2], 10);
        let li = null;
        while (i < lines.length) {
          const m = lines[i].match(LIST);
          if (m && (m[1].length < 2 || !li)) {
            if (/\d/.test(m[2]) !== ordered) break;
            li = el("li");
            inline(m[3], li);
            list.append(li);
          } else if (li && lines[i].trim() && /^\s{2,}/.test(lines[i])) {
            li.append(document.createElement("br"));
            inline(lines[i].trim().replace(LIST, "$2 $3"), li);
          } else break;
          i++;
        }
        out.append(list);
        continue;
      }
      const para = [];
      while (i < lines.length && lines[i].trim() && !/^\s*(```|~~~|#{1,6}\s|>)/.test(lines[i]) && !LIST.test(lines[i])) {
        para.push(lines[i++]);
      }
      const p = el("p");
      para.forEach((text, n) => {
        if (n) p.append(document.createElement("br"));
        inline(text.trim(), p);
      });
      out.append(p);
    }
    return out;
  };

  const renderInto = (node, text) => {
    try {
      if (text.length > MAX_RENDERED) throw new Error("too long to render");
      node.replaceChildren(render(text));
      node.classList.add("rendered");
    } catch {
      // Whatever went wrong, the text is still shown, as text.
      node.textContent = text;
      node.classList.remove("rendered");
      node.classList.add("plain");
    }
  };

  document.querySelectorAll(".md[data-md]").forEach((node) => renderInto(node, node.textContent));

  // ---- The chat. ----
  const form = document.getElementById("chat-form");
  if (!form) return;
  const log = document.getElementById("chat-log");
  const input = document.getElementById("chat-input");
  const sendButton = document.getElementById("chat-send");
  const cancelButton = document.getElementById("chat-cancel");
  const fileInput = document.getElementById("chat-file");
  const status = document.getElementById("chat-status");
  const conversation = form.dataset.conversation;
  const agent = form.dataset.agent || undefined;
  let running = null;

  const scroll = () => log.lastElementChild?.scrollIntoView({ block: "end" });
  const say = (text) => { status.textContent = text; };

  const bubble = (role, text) => {
    const div = el("div", `msg ${role}`);
    div.append(el("div", "who", role === "user" ? "You" : role === "assistant" ? "Assistant" : "Error"));
    log.append(div);
    if (role === "user") div.append(el("p", "pre", text));
    else if (role === "error") div.append(el("p", null, text));
    return div;
  };

  const toolBox = (name, args) => {
    const details = el("details", "tool");
    const summary = el("summary", null, "Tool ");
    summary.append(el("code", null, name), el("span", "tool-state", " (running)"));
    details.append(summary);
    if (args) {
      const part = el("div", "tool-part");
      part.append(el("span", "muted", "Arguments"), el("pre", null, args));
      details.append(part);
    }
    return details;
  };

  const readFile = (file) => new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
    reader.onerror = () => reject(new Error("the file could not be read"));
    reader.readAsDataURL(file);
  });

  // Splits a text/event-stream into events; calls on(name, data) for each.
  const events = async (response, on) => {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        try { on(name, JSON.parse(data.join("\n"))); } catch { /* a malformed event is skipped */ }
      }
    }
  };

  const setRunning = (on) => {
    sendButton.disabled = on;
    cancelButton.disabled = !on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  };

  const send = async () => {
    if (running) return;
    const text = input.value.trim();
    const file = fileInput.files && fileInput.files[0];
    if (!text && !file) { say("Write a message or attach a file."); input.focus(); return; }
    if (file && file.size > MAX_FILE) {
      say(`The file is ${(file.size / 1048576).toFixed(1)} MiB; the limit is 10 MiB. Pick a smaller file.`);
      return;
    }
    const body = { conversation, message: text };
    if (agent) body.agent = agent;
    try {
      if (file) body.attachment = { name: file.name, type: file.type, data: await readFile(file) };
    } catch (e) { say(e.message); return; }

    const shown = file ? `${text}${text ? "\n" : ""}[${file.name}]` : text;
    bubble("user", shown);
    input.value = "";
    fileInput.value = "";
    const answer = bubble("assistant");
    const md = el("div", "md");
    answer.append(md);
    let textSoFar = "";
    let timer = null;
    const flush = () => { timer = null; renderInto(md, textSoFar); scroll(); };
    const tools = new Map();
    running = new AbortController();
    setRunning(true);
    say("Thinking…");
    scroll();
    if (!new URLSearchParams(location.search).has("c")) {
      const url = new URL(location.href);
      url.searchParams.set("c", conversation);
      history.replaceState(null, "", url);
    }
    try {
      const response = await picoclaw.send("/ui/api/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: running.signal,
      });
      if (!response.ok) {
        let why = `the gateway answered ${response.status}`;
        try { why = (await response.json()).error || why; } catch { /* not JSON */ }
        answer.remove();
        bubble("error", why);
        say("");
        return;
      }
      await events(response, (name, data) => {
        if (name === "delta") {
          textSoFar += data;
          say("Writing…");
          if (!timer) timer = setTimeout(flush, 80);
        } else if (name === "tool_start") {
          const box = toolBox(data.name, data.arguments);
          tools.set(data.id, box);
          answer.before(box);
          say(`Running ${data.name}…`);
        } else if (name === "tool_end") {
          const box = tools.get(data.id) || toolBox(data.name, "");
          if (!box.isConnected) answer.before(box);
          box.querySelector(".tool-state").textContent = data.is_error ? " (failed)" : "";
          if (data.is_error) box.classList.add("failed");
          const part = el("div", "tool-part");
          part.append(el("span", "muted", "Result"), el("pre", null, data.preview));
          box.append(part);
        } else if (name === "done") {
          const u = data.usage || {};
          say(data.finish === "stop" ? `Done (${u.prompt_tokens ?? 0} + ${u.completion_tokens ?? 0} tokens).` : `Stopped: ${data.finish}.`);
        } else if (name === "error") {
          bubble("error", data.message);
          say("");
        }
      });
    } catch (e) {
      if (e.name === "AbortError") say("Cancelled.");
      else { bubble("error", `The connection failed: ${e.message}`); say(""); }
    } finally {
      if (timer) clearTimeout(timer);
      flush();
      if (!textSoFar) answer.remove();
      running = null;
      setRunning(false);
      input.focus();
    }
  };

  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  cancelButton.addEventListener("click", () => running?.abort());
  scroll();
})();
