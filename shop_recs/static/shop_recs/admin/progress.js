/* Live progress of a training run (shop_recs admin): polls the run's progress URL
   and updates the bar; reloads the page once the run has finished. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-shop-recs-progress]");
    if (!box || box.dataset.finished === "true") { return; }
    var bar = box.querySelector("progress");
    var text = box.querySelector("[data-progress-text]");
    var failures = 0;

    function poll() {
      fetch(box.dataset.url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (response) {
          if (!response.ok) { throw new Error(response.status); }
          return response.json();
        })
        .then(function (data) {
          failures = 0;
          bar.value = data.percent;
          bar.textContent = data.percent + "%";
          var parts = [data.status_label, data.percent + "%"];
          if (data.epoch !== null && data.epochs !== null) { parts.push("epoch " + data.epoch + "/" + data.epochs); }
          if (data.examples_per_s !== null) { parts.push(Math.round(data.examples_per_s) + " examples/s"); }
          text.textContent = parts.join(" · ");
          if (data.finished) { window.location.reload(); } else { window.setTimeout(poll, 2000); }
        })
        .catch(function () {
          failures += 1;
          if (failures < 5) { window.setTimeout(poll, 5000); }
        });
    }
    window.setTimeout(poll, 2000);
  });
}());
