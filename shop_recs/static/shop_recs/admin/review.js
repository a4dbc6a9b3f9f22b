/* Keyboard shortcuts of the bundle review screen (shop_recs admin).
   1-9 or arrow keys / j k choose a bundle; a approve; A approve and reject the
   others; r reject; e edit; n next product. Buttons stay plain form posts. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-shop-recs-review]");
    if (!root) { return; }
    var cards = Array.prototype.slice.call(root.querySelectorAll("[data-shop-recs-card]"))
      .filter(function (card) { return card.querySelector("form"); });
    var current = 0;

    function select(index) {
      if (!cards.length) { return; }
      current = Math.max(0, Math.min(cards.length - 1, index));
      cards.forEach(function (card, i) {
        card.classList.toggle("shop-recs-card--selected", i === current);
        if (i === current) { card.setAttribute("aria-current", "true"); }
        else { card.removeAttribute("aria-current"); }
      });
      cards[current].focus({preventScroll: false});
    }

    function press(name) {
      var card = cards[current];
      var target = card && card.querySelector('[data-shortcut="' + name + '"]');
      if (target) { target.click(); }
      return Boolean(target);
    }

    document.addEventListener("keydown", function (event) {
      var tag = (event.target.tagName || "").toLowerCase();
      if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented ||
          tag === "input" || tag === "textarea" || tag === "select" ||
          event.target.isContentEditable) { return; }
      var key = event.key;
      if (key >= "1" && key <= "9") { select(Number(key) - 1); }
      else if (key === "ArrowRight" || key === "j") { select(current + 1); }
      else if (key === "ArrowLeft" || key === "k") { select(current - 1); }
      else if (key === "a") { press("approve"); }
      else if (key === "A") { press("approve-only") || press("approve"); }
      else if (key === "r") { press("reject"); }
      else if (key === "e") { press("edit"); }
      else if (key === "n" && root.dataset.nextUrl) { window.location.href = root.dataset.nextUrl; }
      else { return; }
      event.preventDefault();
    });
    select(0);
  });
}());
