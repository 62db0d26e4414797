// Draws every <canvas data-chart="ID"> from the JSON in <script id="ID" type="application/json">
// (a Chart.js config built by frontend/views/dashboards.py). The same figures are in the table after
// each chart, so nothing is lost without JavaScript or to a screen reader.
(function () {
  "use strict";
  function draw() {
    if (typeof window.Chart === "undefined") { return; }
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) { return; }
      var config = JSON.parse(source.textContent);
      config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { position: "bottom" } } }, config.options || {});
      canvas.dataset.drawn = "1";
      new window.Chart(canvas, config);
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
