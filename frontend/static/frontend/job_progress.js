// Live progress of a job page (frontend/templates/frontend/job.html): poll its JSON once a second and
// update the bar, the message and, once finished, reload the page so the server renders the result.
(function () {
  "use strict";
  var root = document.querySelector("[data-job-status-url]");
  if (!root) return;
  var url = root.getAttribute("data-job-status-url");
  var bar = root.querySelector("progress");
  var label = root.querySelector("[data-testid=job-progress-label]");
  var message = root.querySelector("[data-testid=job-message]");
  var status = root.querySelector("[data-testid=job-status]");
  function show(state) {
    root.setAttribute("data-status", state.status);
    status.textContent = state.status_display;
    message.textContent = state.message;
    if (state.total > 0) {
      bar.max = state.total;
      bar.value = state.status === "done" ? state.total : state.done;
      // gettext/interpolate: the /jsi18n/ catalog loaded by base.html, in the page's language.
      var lang = document.documentElement.lang || undefined;
      label.textContent = interpolate(gettext("%(done)s of %(total)s"),
        { done: state.done.toLocaleString(lang), total: state.total.toLocaleString(lang) }, true) + " (" + state.percent + "%)";
    }
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (!state) { setTimeout(poll, 1000); return; }
        show(state);
        if (state.finished) { window.location.reload(); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 1000); });
  }
  setTimeout(poll, 1000);
})();
