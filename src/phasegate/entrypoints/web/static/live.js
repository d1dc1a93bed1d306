// Live updates: listen to /api/events (server-sent events) and re-fetch the page's
// [data-live] fragments with htmx when something changes. On the session page, a
// change also shows the "changed since you opened it" banner, because the decision
// form keeps the version the human actually looked at.
(function () {
  "use strict";
  var body = document.body;
  var sessionId = body.dataset.session || "";
  var seenVersion = parseInt(body.dataset.version || "0", 10);
  var status = document.getElementById("live-status");
  var pending = null;

  function refresh() {
    pending = null;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (window.htmx) {
        htmx.ajax("GET", el.dataset.live, { target: el, swap: "innerHTML" });
      }
    });
  }

  function schedule() {
    if (pending === null) { pending = setTimeout(refresh, 30); }
  }

  function markStale(change) {
    var banner = document.getElementById("stale-banner");
    var detail = document.getElementById("stale-detail");
    if (!banner || !detail || change.version <= seenVersion) { return; }
    detail.textContent = change.actor + " did " + change.action + "; it is now version " +
      change.version + " in " + change.phase;
    banner.hidden = false;
    document.body.dataset.stale = "true";
  }

  function connect() {
    if (!body.dataset.page || !window.EventSource) { return; }
    var url = "/api/events" + (sessionId ? "?session=" + encodeURIComponent(sessionId) : "");
    var source = new EventSource(url);
    var opened = false;
    source.addEventListener("ready", function () {
      if (status) { status.classList.add("on"); status.title = "live updates: connected"; }
      if (opened) { schedule(); }  // reconnected: catch up on anything missed
      opened = true;
    });
    source.addEventListener("change", function (msg) {
      var change = JSON.parse(msg.data);
      if (sessionId && change.session_id !== sessionId) { return; }
      schedule();
      if (sessionId) { markStale(change); }
    });
    source.onerror = function () {
      if (status) { status.classList.remove("on"); status.title = "live updates: reconnecting"; }
    };
  }

  document.addEventListener("click", function (ev) {
    var el = ev.target.closest ? ev.target.closest("[data-confirm]") : null;
    if (el && !window.confirm(el.dataset.confirm)) { ev.preventDefault(); }
  });
  document.addEventListener("DOMContentLoaded", connect);
})();
