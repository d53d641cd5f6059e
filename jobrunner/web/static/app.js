// Live pages by short polling: each [data-live] region re-fetches its server-rendered
// fragment every data-poll-ms while the tab is visible, and stops while it is hidden.
(function () {
  "use strict";
  var body = document.body;
  var every = parseInt(body.getAttribute("data-poll-ms") || "0", 10);
  var regions = Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
  var timer = null;
  var busy = false;

  function editing(region) {
    var active = document.activeElement;
    return active && region.contains(active) && active.matches("input, select, textarea");
  }

  function refreshRegion(region) {
    return fetch(region.getAttribute("data-live"), {
      credentials: "same-origin",
      headers: { "x-requested-with": "fetch" },
    }).then(function (response) {
      if (!response.ok) { return; }
      return response.text().then(function (html) {
        if (editing(region)) { return; }
        var ticked = {};
        region.querySelectorAll("input[type=checkbox]:checked").forEach(function (box) {
          ticked[box.value] = true;
        });
        region.innerHTML = html;
        region.querySelectorAll("input[type=checkbox]").forEach(function (box) {
          if (ticked[box.value]) { box.checked = true; }
        });
      });
    });
  }

  function refresh() {
    if (busy || document.hidden || !regions.length) { return; }
    busy = true;
    Promise.all(regions.map(refreshRegion)).catch(function () {}).then(function () {
      busy = false;
      body.setAttribute("data-refreshed", String(Date.now()));
    });
  }

  function start() {
    if (!timer && every > 0 && regions.length) {
      timer = setInterval(refresh, every);
      body.setAttribute("data-polling", "on");
    }
  }
  function stop() {
    if (timer) { clearInterval(timer); timer = null; }
    body.setAttribute("data-polling", "off");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { stop(); } else { refresh(); start(); }
  });
  if (!document.hidden) { start(); }

  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-select-all]")) {
      document.querySelectorAll("input[name=id][form=bulk]").forEach(function (box) {
        box.checked = event.target.checked;
      });
    }
  });

  document.addEventListener("click", function (event) {
    var asker = event.target.closest("[data-confirm]");
    if (asker && asker.tagName === "BUTTON" && !window.confirm(asker.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.hasAttribute("data-confirm") && !window.confirm(form.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });
})();
