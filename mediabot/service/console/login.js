// The login form: where to go next comes from ?next=, a failed attempt from ?failed=1 (the no-JS path) or the JSON reply.
"use strict";
const params = new URLSearchParams(location.search);
const next = params.get("next");
if (next && next.startsWith("/") && !next.startsWith("//")) document.getElementById("next").value = next;
const error = document.getElementById("error");
if (params.get("failed")) error.hidden = false;
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/console/login", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({api_key: document.getElementById("api_key").value, next: document.getElementById("next").value}),
  });
  if (response.ok) {
    location.assign((await response.json()).next);
  } else {
    error.hidden = false;
  }
});
