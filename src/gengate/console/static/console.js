// gengate console: the little behaviour htmx does not give. No inline code anywhere (the
// Content-Security-Policy forbids it), no other origin, nothing kept in localStorage.
"use strict";

// Copy buttons: data-copy names the element whose text is copied.
function setupCopy() {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    const done = () => {
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => selectText(source));
    } else {
      selectText(source);
    }
  });
}

function selectText(element) {
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// A select with data-autosubmit submits its form on change (the model picker).
function setupAutosubmit() {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

// The playground's live run: the task's events from this origin's SSE stream.
function setupLive() {
  const live = document.getElementById("live");
  if (!live || !live.dataset.events) return;
  const state = document.getElementById("live-state");
  if (["success", "failed"].includes(state.textContent.trim())) return;
  const queue = document.getElementById("live-queue");
  const progress = document.getElementById("live-progress");
  const source = new EventSource(live.dataset.events);
  source.addEventListener("status", (event) => {
    const data = JSON.parse(event.data);
    state.textContent = data.failCode === "CANCELED" ? "canceled" : data.state;
    queue.textContent = data.state === "pending" && data.queuePosition !== undefined
      ? `${data.queuePosition} ahead in the queue` : "";
    const value = data.progress !== undefined ? data.progress : (data.state === "success" ? 100 : 0);
    progress.value = value;
    progress.textContent = `${value}%`;
    if (data.state === "success" || data.state === "failed") {
      source.close();
      const cancel = document.getElementById("cancel");
      if (cancel) cancel.closest("form").remove();
      fetch(live.dataset.result, { credentials: "same-origin" })
        .then((response) => response.text())
        .then((html) => { document.getElementById("result").innerHTML = html; });
    }
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) queue.textContent = "(live updates stopped: reload)";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  setupCopy();
  setupAutosubmit();
  setupLive();
});
