// The run page's live parts: follow the run's log over server-sent events, add each event to
// the list, recolour the task's node in the plan picture, and reload when the run stops or asks.
"use strict";

(function () {
  const run = document.getElementById("run");
  if (!run || !window.EventSource) return;
  const id = run.dataset.run;
  const rendered = Number(run.dataset.after || 0);
  const body = document.querySelector("#events tbody");
  const live = document.getElementById("live");
  const statusEl = document.getElementById("run-status");
  const changed = document.getElementById("changed");
  const STATES = ["pending", "running", "waiting", "completed", "failed", "skipped"];
  const MAX_ROWS = 2000;
  const box = document.getElementById("events-box");
  let reloadTimer = null;
  if (box) box.scrollTop = box.scrollHeight;

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    return td;
  }

  function recolour(task, state) {
    if (!task || STATES.indexOf(state) < 0) return;
    document.querySelectorAll("[data-task]").forEach(function (node) {
      if (node.getAttribute("data-task") !== task) return;
      STATES.forEach(function (s) { node.classList.remove("state-" + s); });
      node.classList.add("state-" + state);
    });
  }

  function formBusy() {
    const active = document.activeElement;
    return active && (active.tagName === "TEXTAREA" || active.tagName === "INPUT");
  }

  function reloadSoon() {
    if (changed) changed.hidden = false;
    if (reloadTimer) return;
    reloadTimer = setTimeout(function tryReload() {
      if (formBusy()) { reloadTimer = setTimeout(tryReload, 2000); return; }
      window.location.replace("/runs/" + encodeURIComponent(id));
    }, 400);
  }

  const source = new EventSource("/runs/" + encodeURIComponent(id) + "/events?after=" + rendered);
  source.onopen = function () { if (live) live.classList.add("on"); };
  source.onerror = function () { if (live) live.classList.remove("on"); };
  source.onmessage = function (message) {
    let e;
    try { e = JSON.parse(message.data); } catch (err) { return; }
    if (body) {
      const atEnd = box && box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
      const tr = document.createElement("tr");
      tr.className = "ev new";
      [e.seq, e.time, e.type, e.task, e.text].forEach(function (v) { tr.appendChild(cell(v)); });
      body.appendChild(tr);
      while (body.rows.length > MAX_ROWS) body.deleteRow(0);
      if (atEnd) box.scrollTop = box.scrollHeight;
    }
    recolour(e.task, e.task_state);
    if (statusEl && e.run_status) {
      statusEl.textContent = e.run_status.replace(/_/g, " ");
      statusEl.className = "status status-" + e.run_status;
      run.dataset.status = e.run_status;
    }
    if (e.stop && Number(e.seq) > rendered) reloadSoon();
  };
})();
