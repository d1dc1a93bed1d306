// A one-time login link carries its code in the fragment (#code=…), which the
// browser never sends to the server: post it with the form, and take it out of
// the address bar and the history first, so it is not left behind anywhere.
(function () {
  "use strict";
  var match = /(?:^#|&)code=([^&]+)/.exec(window.location.hash);
  var form = document.getElementById("login-link-form");
  if (!match || !form) {
    return;
  }
  history.replaceState(null, "", window.location.pathname + window.location.search);
  form.elements.namedItem("code").value = decodeURIComponent(match[1]);
  form.submit();
})();
