// Strata's only script, served by presentation itself (the CSP allows no other).
// Everything works without it: it only makes two things nicer.
(function () {
  "use strict";

  // 1. Forms marked data-once can be submitted once (the idempotency key is the real guard).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute || !form.hasAttribute("data-once")) return;
    if (form.getAttribute("data-submitted")) {
      event.preventDefault();
      return;
    }
    form.setAttribute("data-submitted", "1");
    window.setTimeout(function () {
      var buttons = form.querySelectorAll("button[type=submit]");
      for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;
    }, 0);
  });

  // 2. A pending order's step follows the server-sent events of /orders/{id}/events (one
  //    per step change: pending, reserved, paid, then fulfilled or rejected).
  function watchOrder() {
    var status = document.getElementById("order-status");
    if (!status || !window.EventSource) return;
    var url = status.getAttribute("data-events");
    if (!url) return;
    var source = new EventSource(url);
    source.addEventListener("status", function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      status.textContent = data.label;
      status.className = "status status-" + data.status;
      status.setAttribute("data-status", data.status);
      if (data.step) status.setAttribute("data-step", data.step);
      var detail = document.getElementById("order-detail");
      if (detail) detail.textContent = data.detail;
      if (data["final"]) {
        source.close();
        var hint = document.getElementById("refresh-hint");
        if (hint) hint.hidden = true;
      }
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", watchOrder);
  } else {
    watchOrder();
  }
})();
