// Live updates: listen to /api/events (server-sent events) and re-fetch the page's
// [data-live] fragments with htmx when something changes. On the session page, a
// change also shows the "changed since you opened it" banner, because the decision
// form keeps the version the human actually looked at. With "Notify me" on, a session
// that reaches a human gate, escalates or completes also shows a desktop notification.
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

  // --- desktop notifications -------------------------------------------------------
  // Opt-in per browser (localStorage), on top of the browser's permission, so "Notify me"
  // can be switched off again: a page can't revoke a permission it was granted.
  var NOTIFY_KEY = "phasegate.notify";
  var notifyButton = null;

  function notifying() {
    return !!window.Notification && Notification.permission === "granted" &&
      window.localStorage.getItem(NOTIFY_KEY) === "on";
  }

  function showNotifyState() {
    if (!notifyButton) { return; }
    var denied = !window.Notification || Notification.permission === "denied";
    notifyButton.hidden = denied;
    notifyButton.textContent = notifying() ? "Notifications on" : "Notify me";
    notifyButton.setAttribute("aria-pressed", notifying() ? "true" : "false");
  }

  function toggleNotify() {
    if (notifying()) {
      window.localStorage.removeItem(NOTIFY_KEY);
      showNotifyState();
      return;
    }
    Notification.requestPermission().then(function (permission) {
      if (permission === "granted") { window.localStorage.setItem(NOTIFY_KEY, "on"); }
      showNotifyState();
    });
  }

  // What a change means for a human, judged with the session as it is now: null if nothing.
  // The same three kinds as the webhooks (domain/notice.py): gate, escalation, completion.
  function noticeOf(change, session) {
    if (session.phase !== change.phase) { return null; }  // it has moved on already
    if (change.action === "pause") { return "was paused in " + change.phase; }
    var entered = change.from_phase !== change.phase;
    if (entered && change.phase === "failed") { return "failed"; }
    if (entered && change.phase === "awaiting_human_intervention") {
      return "needs a human to step in";
    }
    if (entered && session.waiting_on === null) {
      return change.phase === "cancelled" ? null : "completed";
    }
    if (session.waiting_on !== "human") { return null; }
    if (change.action === "request_approval") { return "asks for your decision at " + change.phase; }
    return entered ? "waits for your decision at " + change.phase : null;
  }

  function notifyAbout(change) {
    var worth = change.from_phase !== change.phase || change.action === "pause" ||
      change.action === "request_approval";
    if (!worth || !notifying()) { return; }
    var url = "/sessions/" + encodeURIComponent(change.session_id);
    fetch("/api" + url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (session) {
        var what = session && noticeOf(change, session);
        if (!what) { return; }
        var note = new Notification("phasegate: " + session.task, {
          body: "session " + session.id.slice(0, 8) + " " + what,
          tag: "phasegate-" + session.id + "-" + change.version,  // one per change, across tabs
        });
        note.onclick = function () { window.focus(); window.location.href = url; note.close(); };
      })
      .catch(function () { /* a notification is a courtesy: the page itself stays live */ });
  }

  function setUpNotify() {
    notifyButton = document.getElementById("notify-me");
    if (notifyButton) { notifyButton.addEventListener("click", toggleNotify); }
    showNotifyState();
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
      notifyAbout(change);
    });
    source.onerror = function () {
      if (status) { status.classList.remove("on"); status.title = "live updates: reconnecting"; }
    };
  }

  document.addEventListener("click", function (ev) {
    var el = ev.target.closest ? ev.target.closest("[data-confirm]") : null;
    if (el && !window.confirm(el.dataset.confirm)) { ev.preventDefault(); }
  });
  document.addEventListener("DOMContentLoaded", setUpNotify);
  document.addEventListener("DOMContentLoaded", connect);
})();
