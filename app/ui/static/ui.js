// slurm-proxy's web page: live states (EventSource), the output tail that follows the
// file, and the submit form's command fields. Every value is written with textContent,
// never as HTML.
"use strict";
(function () {
  var page = document.body.dataset.page;

  function text(value) {
    if (value === null || value === undefined || value === "" ||
        (Array.isArray(value) && !value.length)) { return "\u2013"; }
    if (Array.isArray(value)) { return value.join(", "); }
    var s = String(value);
    var time = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?Z$/.exec(s);
    return time ? time[1] + " " + time[2] + " UTC" : s;
  }

  function setBadge(el, state) {
    el.textContent = state;
    el.className = "badge s-" + state;
  }

  function cell(row, value, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = value === null || value === undefined ? "" : String(value);
    row.appendChild(td);
    return td;
  }

  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); });
  }

  function tasksPage() {
    var body = document.querySelector("#task-table tbody");
    var status = document.getElementById("live-status");
    var firstPage = window.location.search.indexOf("cursor=") < 0;
    var unfiltered = !/[?&](state|name|username|since)=[^&]/.test(window.location.search);
    var events = new EventSource("/ui/events");
    events.addEventListener("state", function (e) {
      var d = JSON.parse(e.data);
      var row = null;
      body.querySelectorAll("tr[data-uuid]").forEach(function (r) {
        if (r.dataset.uuid === d.uuid) { row = r; }
      });
      if (!row) {
        if (!(firstPage && unfiltered)) { return; }
        var empty = body.querySelector("tr.empty");
        if (empty) { empty.remove(); }
        row = document.createElement("tr");
        row.dataset.uuid = d.uuid;
        cell(row, text(d.created_at));
        var link = document.createElement("a");
        link.href = "/ui/tasks/" + encodeURIComponent(d.uuid);
        link.textContent = d.uuid;
        cell(row, "").appendChild(link);
        cell(row, d.name);
        cell(row, d.username);
        cell(row, d.slurm_job_id || "\u2013");
        var stateCell = cell(row, "", "state");
        stateCell.dataset.field = "slurm_job_state";
        var badge = document.createElement("span");
        stateCell.appendChild(badge);
        cell(row, "").dataset.field = "exit_code";
        body.insertBefore(row, body.firstChild);
      }
      setBadge(row.querySelector('[data-field="slurm_job_state"] span'), d.slurm_job_state);
      row.querySelector('[data-field="exit_code"]').textContent =
        d.exit_code === null || d.exit_code === undefined ? "" : String(d.exit_code);
      row.children[4].textContent = text(d.slurm_job_id);
    });
    events.onopen = function () { status.textContent = "States update live."; };
    events.onerror = function () { status.textContent = "Live updates interrupted; reconnecting\u2026"; };
  }

  function fillTable(id, rows, columns, emptyText) {
    var body = document.querySelector("#" + id + " tbody");
    body.textContent = "";
    rows.forEach(function (item) {
      var tr = document.createElement("tr");
      columns.forEach(function (c) { cell(tr, item[c] === null || item[c] === undefined ? "" : text(item[c])); });
      body.appendChild(tr);
    });
    if (!rows.length && emptyText) {
      var tr = document.createElement("tr");
      tr.className = "empty";
      cell(tr, emptyText).colSpan = columns.length;
      body.appendChild(tr);
    }
  }

  function taskPage() {
    var uuid = document.body.dataset.uuid;
    var base = "/ui/tasks/" + encodeURIComponent(uuid);
    var finished = document.body.dataset.final === "true";
    var stateEl = document.getElementById("state");

    function render(lookup) {
      var m = lookup.monitor;
      setBadge(stateEl, m.slurm_job_state);
      document.getElementById("exit-code").textContent = text(m.exit_code);
      document.getElementById("job-id").textContent = text(m.slurm_job_id);
      fillTable("history", m.history || [], ["state", "at", "note"]);
      fillTable("deliveries", m.deliveries || [],
                ["method", "target", "state", "status", "attempts", "last_error"], "None.");
      var live = document.getElementById("live");
      live.textContent = "";
      var facts = lookup.slurm || {slurm: (lookup.slurm_error || {}).message};
      Object.keys(facts).forEach(function (k) {
        if (typeof facts[k] === "object" && facts[k] !== null && !Array.isArray(facts[k])) { return; }
        var dt = document.createElement("dt");
        dt.textContent = k;
        var dd = document.createElement("dd");
        dd.textContent = text(facts[k]);
        live.appendChild(dt);
        live.appendChild(dd);
      });
      if (m.slurm_job_state && finished) {
        var cancel = document.getElementById("cancel-form");
        if (cancel) { cancel.remove(); }
      }
    }

    function refresh() { getJSON(base + "/record.json").then(render).catch(function () {}); }

    function showOutput(stream, target) {
      return getJSON(base + "/output.json?stream=" + stream).then(function (out) {
        target.textContent = (out.lines || []).join("\n");
        if (stream === "stdout") {
          document.getElementById("output-note").textContent =
            out.missing ? out.missing : (out.truncated ? "Showing the end of a long file." : "");
        }
      }).catch(function () {});
    }

    function followOutput() {
      showOutput("stdout", document.getElementById("output"));
      showOutput("stderr", document.getElementById("stderr"));
      if (!finished) { window.setTimeout(followOutput, 2000); }
    }

    followOutput();
    if (!finished) {
      var events = new EventSource(base + "/events");
      events.addEventListener("state", function (e) {
        var d = JSON.parse(e.data);
        setBadge(stateEl, d.slurm_job_state);
        document.getElementById("exit-code").textContent = text(d.exit_code);
        if (d.final) { finished = true; }
        refresh();
      });
      events.addEventListener("end", function () {
        events.close();
        finished = true;
        followOutput();
        window.setTimeout(followOutput, 1500);
        window.setTimeout(refresh, 3000);      // notification outcomes come a little later
      });
    }
  }

  function submitPage() {
    var select = document.getElementById("s-name");
    var fields = document.getElementById("cmd-fields");
    function update() {
      var runsYours = select.selectedOptions[0].dataset.cmd === "1";
      fields.hidden = !runsYours;
      fields.disabled = !runsYours;
    }
    select.addEventListener("change", update);
    update();
  }

  if (page === "tasks") { tasksPage(); }
  if (page === "task") { taskPage(); }
  if (page === "submit") { submitPage(); }
}());
