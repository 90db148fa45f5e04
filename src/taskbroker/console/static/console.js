// taskbroker console: live updates over server-sent events (no build step, no inline code).
"use strict";
(function () {
  function apply(row, data) {
    var status = row.querySelector('[data-field="status"]');
    if (status) { status.textContent = data.status; status.className = "status s-" + data.status; }
    var bar = row.querySelector('[data-field="progress"]');
    if (bar) { bar.value = data.progress; bar.textContent = data.progress + "%"; }
    var percent = row.querySelector('[data-field="percent"]');
    if (percent) { percent.textContent = data.progress + "%"; }
    var message = row.querySelector('[data-field="message"]');
    if (message && data.message) { message.textContent = data.message; }
  }
  function listen(url, onTask, onOther) {
    if (!window.EventSource) { return; }
    var source = new EventSource(url);
    source.addEventListener("task", function (ev) { onTask(JSON.parse(ev.data), source); });
    source.addEventListener("changed", function () { source.close(); onOther(); });
    source.onerror = function () { /* the browser reconnects by itself */ };
  }
  document.addEventListener("DOMContentLoaded", function () {
    var table = document.querySelector("table.tasks[data-events]");
    if (table && table.querySelector("tr[data-task]")) {
      listen(table.getAttribute("data-events"), function (data) {
        var row = table.querySelector('tr[data-task="' + data.id + '"]');
        if (row) { apply(row, data); }
      }, function () {
        var note = document.getElementById("changed");
        if (note) { note.hidden = false; }
      });
    }
    var summary = document.querySelector("section.summary[data-events]");
    if (summary) {
      listen(summary.getAttribute("data-events"), function (data, source) {
        apply(summary, data);
        if (data.final) { source.close(); window.location.reload(); }
      }, function () {});
    }
  });
})();
