// meterpay admin: live room updates (server-sent events), live command states, confirm prompts, one submit per form.
(function () {
  "use strict";
  document.querySelectorAll("form.once").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (form.classList.contains("confirm") && !window.confirm(form.dataset.confirm || "?")) {
        ev.preventDefault();
        return;
      }
      if (form.dataset.sent) { ev.preventDefault(); return; }  // a double click sends once
      form.dataset.sent = "1";
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    });
  });

  // Room page: while a command is queued or sent, re-read the page every second and swap in the
  // parts marked data-live (commands, relay state, balance) until the device layer has settled them.
  var commands = document.getElementById("commands");
  var OPEN = ".cmd-queued, .cmd-sent";
  if (commands && commands.querySelector(OPEN) && window.fetch && window.DOMParser) {
    var polls = 0;
    var refresh = function () {
      polls += 1;
      fetch(window.location.href, {credentials: "same-origin"}).then(function (r) {
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var repl = fresh.getElementById(el.id);
          if (repl) el.replaceWith(document.importNode(repl, true));
        });
        var cmds = document.getElementById("commands");
        if (cmds && cmds.querySelector(OPEN) && polls < 300) setTimeout(refresh, 1000);
      }).catch(function () { if (polls < 300) setTimeout(refresh, 3000); });
    };
    setTimeout(refresh, 1000);
  }

  var grid = document.getElementById("grid");
  if (!grid || !window.EventSource) return;
  var words = {};
  var tpl = document.getElementById("words");
  (tpl ? tpl.content.querySelectorAll("i") : []).forEach(function (i) { words[i.dataset.k] = i.textContent; });
  var ids = Array.prototype.map.call(grid.querySelectorAll(".cell"), function (c) { return c.dataset.id; });
  var dot = document.getElementById("live-dot");
  var es = new EventSource(grid.dataset.stream + "?" + (grid.dataset.filter ? grid.dataset.filter + "&" : "") + "ids=" + ids.join(","));
  es.addEventListener("counts", function (ev) {
    var counts = JSON.parse(ev.data);
    document.querySelectorAll("b[id^=count-]").forEach(function (b) { b.textContent = counts[b.id.slice(6)] || 0; });
  });
  function yuan(fen) {
    if (fen === null || fen === undefined) return "—";
    var s = fen < 0 ? "-" : "", a = Math.abs(fen);
    return s + Math.floor(a / 100) + "." + String(a % 100).padStart(2, "0");
  }
  es.addEventListener("rooms", function (ev) {
    JSON.parse(ev.data).forEach(function (c) {
      var el = document.getElementById("room-" + c.id);
      if (!el) return;
      var cls = "cell st-" + c.state + " link-" + c.link;
      if (el.className.indexOf(cls) !== 0) {
        el.className = cls + " flash-update";
        setTimeout(function () { el.classList.remove("flash-update"); }, 1500);
      }
      el.querySelector(".state").textContent = words["st_" + c.state] || c.state;
      el.querySelector(".bal").textContent = yuan(c.balance_fen);
      el.querySelector(".link").textContent = c.link === "none" ? "" : (words[c.link] || c.link);
      el.querySelector(".relay").textContent = c.relay ? (words["relay_" + c.relay] || c.relay) : "";
    });
  });
  es.onopen = function () { if (dot) dot.classList.remove("off"); };
  es.onerror = function () { if (dot) dot.classList.add("off"); };
})();
