// creditgate console: the only script. Live quote on the generate page, and a generation's
// status until it is done. Everything else works without JavaScript.
"use strict";

function setupGenerateForm(form) {
  const model = form.querySelector("#model_id");
  const quote = document.getElementById("quote");
  const quoteError = document.getElementById("quote-error");
  let timer = null;
  let seq = 0;

  function kind() {
    const option = model.options[model.selectedIndex];
    return option ? option.dataset.kind : "";
  }

  function showFields() {
    const current = kind();
    const option = model.options[model.selectedIndex];
    const description = document.getElementById("model-description");
    if (description && option) description.textContent = option.dataset.description || "";
    form.querySelectorAll("[data-kinds]").forEach((row) => {
      const shown = row.dataset.kinds.split(" ").includes(current);
      row.hidden = !shown;
      row.querySelectorAll("input, select, textarea").forEach((el) => { el.disabled = !shown; });
    });
  }

  async function refreshQuote() {
    const mine = ++seq;
    const body = new FormData(form);
    if (!String(body.get("prompt") || "").trim()) {
      quote.textContent = "—";
      quoteError.textContent = "Type a prompt to see the price.";
      return;
    }
    try {
      const response = await fetch("/console/quote", {
        method: "POST",
        body: body,
        headers: { "Accept": "application/json", "X-CSRF-Token": body.get("csrf_token") },
        credentials: "same-origin",
      });
      const data = await response.json();
      if (mine !== seq) return;
      if (data.ok) {
        quote.textContent = data.cost + " credits";
        quoteError.textContent = "";
      } else {
        quote.textContent = "—";
        quoteError.textContent = data.message;
      }
    } catch (err) {
      if (mine === seq) { quote.textContent = "—"; }
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refreshQuote, 250);
  }

  model.addEventListener("change", () => { showFields(); schedule(); });
  form.addEventListener("input", schedule);
  showFields();
  refreshQuote();
}

function watchGeneration(section) {
  const id = section.dataset.id;
  const status = document.getElementById("status");
  async function poll() {
    try {
      const response = await fetch("/console/generations/" + encodeURIComponent(id) + "/status", {
        headers: { "Accept": "application/json" },
        credentials: "same-origin",
      });
      if (response.ok) {
        const data = await response.json();
        status.textContent = data.status;
        status.className = "status status-" + data.status;
        if (data.done) { window.location.reload(); return; }
      }
    } catch (err) { /* try again */ }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 500);
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("generate-form");
  if (form) setupGenerateForm(form);
  const section = document.getElementById("generation");
  if (section && section.dataset.done === "false") watchGeneration(section);
});
