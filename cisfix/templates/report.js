/* Progressive enhancement only: the page reads fully without it. No dollar signs, ampersands or
   less-than signs here: the page must parse as XML too. */
(function () {
  var each = function (list, fn) { Array.prototype.forEach.call(list, fn); };
  var form = document.getElementById("status-filter");
  if (form) {
    form.hidden = false;
    form.addEventListener("change", function () {
      var shown = {};
      each(form.querySelectorAll("input"), function (box) { shown[box.value] = box.checked; });
      each(document.querySelectorAll("[data-status]"), function (el) {
        el.hidden = shown[el.getAttribute("data-status")] === false;
      });
    });
  }
  // A link to a node or check in a closed section opens the sections around it.
  var openTarget = function () {
    var el = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    for (; el; el = el.parentElement) {
      if (el.tagName === "DETAILS") { el.open = true; }
    }
  };
  window.addEventListener("hashchange", openTarget);
  openTarget();
  window.addEventListener("beforeprint", function () {
    each(document.querySelectorAll("details"), function (d) { d.open = true; });
  });
})();
