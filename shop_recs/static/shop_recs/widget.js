/* shop_recs widgets: live totals, impression/click beacons, and widgets deferred on a cache
 * miss. No build step, no dependencies; inline widgets work without it (the form posts the
 * checked products). */
(function () {
  "use strict";
  if (window.shopRecsWidgets) { return; }
  window.shopRecsWidgets = true;

  function send(root, kind, productIds) {
    var url = root.getAttribute("data-events-url");
    if (!url || !productIds.length || !window.fetch) { return; }
    var events = productIds.slice(0, 50).map(function (id) {
      return { kind: kind, product: id, attribution: root.getAttribute("data-token") || "" };
    });
    try {
      window.fetch(url, {
        method: "POST", keepalive: true, credentials: "same-origin",
        headers: { "Content-Type": "application/json",
                   "X-CSRFToken": root.getAttribute("data-csrf") || "" },
        body: JSON.stringify({ events: events })
      }).catch(function () {});
    } catch (e) { /* a beacon never breaks the page */ }
  }

  /* An A/B experiment's exposure: the widget (or the empty spot of the "no widget" arm)
   * was seen. Posted once per widget; the server checks the token is this visitor's arm. */
  function expose(root) {
    var url = root.getAttribute("data-exposure-url");
    var token = root.getAttribute("data-exposure");
    if (!url || !token || !window.fetch) { return; }
    try {
      window.fetch(url, {
        method: "POST", keepalive: true, credentials: "same-origin",
        headers: { "Content-Type": "application/json",
                   "X-CSRFToken": root.getAttribute("data-csrf") || "" },
        body: JSON.stringify({ token: token })
      }).catch(function () {});
    } catch (e) { /* a beacon never breaks the page */ }
  }

  function formatter(root) {
    var currency = root.getAttribute("data-currency") || "";
    try {
      var fmt = new Intl.NumberFormat(document.documentElement.lang || undefined,
                                      { style: "currency", currency: currency });
      return function (n) { return fmt.format(n); };
    } catch (e) {
      return function (n) { return (currency + " " + n.toFixed(2)).trim(); };
    }
  }

  /* One form of ticked choices: its total and its button follow the checkboxes. (The bundle
   * offer has no checkboxes: its price is fixed and rendered on the server.) */
  function update(form, format, button, labelAll) {
    var boxes = form.querySelectorAll("input[type=checkbox][data-price]");
    var totalCents = 0, checked = 0, all = true;
    Array.prototype.forEach.call(boxes, function (box) {
      if (box.checked) {
        totalCents += Math.round(parseFloat(box.getAttribute("data-price")) * 100);
        checked += 1;
      } else { all = false; }
    });
    var total = form.querySelector("[data-shop-recs-total]");
    if (total) { total.textContent = format(totalCents / 100); }
    if (button) {
      button.disabled = checked === 0;
      button.textContent = all ? labelAll : (button.getAttribute("data-label-some") || labelAll);
    }
  }

  function init(root) {
    var format = formatter(root);
    Array.prototype.forEach.call(root.querySelectorAll("form[data-shop-recs-choices]"),
      function (form) {
        var button = form.querySelector("button[type=submit][data-label-some]");
        var labelAll = button ? button.textContent : "";
        form.addEventListener("change", function () { update(form, format, button, labelAll); });
      });
    root.addEventListener("click", function (event) {
      var link = event.target.closest && event.target.closest("a");
      var item = link && link.closest("[data-product-id]");
      if (item) { send(root, "widget_click", [item.getAttribute("data-product-id")]); }
    });
    var ids = Array.prototype.map.call(root.querySelectorAll("[data-product-id]"),
                                       function (el) { return el.getAttribute("data-product-id"); });
    if ("IntersectionObserver" in window) {
      var observer = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) {
          observer.disconnect();
          send(root, "widget_impression", ids);
          expose(root);
        }
      });
      observer.observe(root);
    } else {
      send(root, "widget_impression", ids);
      expose(root);
    }
  }

  /* A widget deferred on a cache miss (WIDGET_ON_MISS = "defer"): fetch its HTML from the
   * signed fragment URL and put it in the placeholder's place; nothing to show, or an
   * error, removes the placeholder. */
  function load(slot) {
    var url = slot.getAttribute("data-shop-recs-defer");
    slot.removeAttribute("data-shop-recs-defer");
    if (!url || !window.fetch) { return; }
    window.fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        var holder = document.createElement("template");
        holder.innerHTML = html;  /* our own escaped render; its <script> does not run */
        var roots = holder.content.querySelectorAll("[data-shop-recs-widget]");
        slot.parentNode.replaceChild(holder.content, slot);
        Array.prototype.forEach.call(roots, init);
      })
      .catch(function () { if (slot.parentNode) { slot.parentNode.removeChild(slot); } });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-shop-recs-widget]"), init);
    Array.prototype.forEach.call(document.querySelectorAll("[data-shop-recs-defer]"), load);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else { start(); }
})();
