// picoclaw dashboard: the one script every page loads. No framework, no inline script (the
// pages' Content-Security-Policy allows scripts from the gateway only), and never innerHTML
// with anything that came from the model or a user: text goes in through textContent.
"use strict";

const picoclaw = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

  // fetch with the CSRF token (for every request that changes something).
  const send = (url, options = {}) => {
    const headers = new Headers(options.headers || {});
    headers.set("X-CSRF-Token", csrf());
    return fetch(url, { credentials: "same-origin", ...options, headers });
  };

  // <form data-confirm="Really?"> asks first.
  document.addEventListener("submit", (event) => {
    const question = event.target.getAttribute?.("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  return { csrf, send };
})();
