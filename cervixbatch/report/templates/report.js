"use strict";
(function () {
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-status]"));
  var statusBoxes = Array.prototype.slice.call(document.querySelectorAll("#status-filter input"));
  var minLesion = document.getElementById("min-lesion");
  var minOut = document.getElementById("min-lesion-out");
  var positiveOnly = document.getElementById("positive-only");
  var sortSelect = document.getElementById("sort");
  var search = document.getElementById("search");
  var shown = document.getElementById("shown");
  var threshold = parseFloat(positiveOnly.getAttribute("data-threshold")) / 100;

  function applyFilters() {
    var statuses = {};
    statusBoxes.forEach(function (box) { statuses[box.value] = box.checked; });
    var min = parseFloat(minLesion.value) / 100;
    minOut.textContent = minLesion.value + "%";
    var query = search.value.trim().toLowerCase();
    var visible = 0;
    cards.forEach(function (card) {
      var lesion = parseFloat(card.getAttribute("data-lesion"));
      var show = statuses[card.getAttribute("data-status")] !== false &&
        lesion >= min && (!positiveOnly.checked || lesion > threshold) &&
        (!query || card.getAttribute("data-name").indexOf(query) >= 0);
      card.hidden = !show;
      if (show) { visible += 1; }
    });
    document.querySelectorAll(".group").forEach(function (group) {
      group.hidden = !group.querySelector(".card:not([hidden])");
    });
    document.querySelectorAll(".day").forEach(function (day) {
      day.hidden = !day.querySelector(".group:not([hidden])");
    });
    var rowsShown = 0;
    rows.forEach(function (row) {
      var show = statuses[row.getAttribute("data-status")] !== false && !positiveOnly.checked &&
        min === 0 && (!query || row.getAttribute("data-name").indexOf(query) >= 0);
      row.hidden = !show;
      if (show) { rowsShown += 1; }
    });
    shown.textContent = visible + " of " + cards.length + " images" +
      (rows.length ? ", " + rowsShown + " of " + rows.length + " not processed" : "");
  }

  function applySort() {
    var key = sortSelect.value;
    var compare = {
      "time": function (a, b) {
        return parseFloat(b.getAttribute("data-time")) - parseFloat(a.getAttribute("data-time")) ||
          parseInt(b.getAttribute("data-id"), 10) - parseInt(a.getAttribute("data-id"), 10);
      },
      "lesion-desc": function (a, b) {
        return parseFloat(b.getAttribute("data-lesion")) - parseFloat(a.getAttribute("data-lesion"));
      },
      "lesion-asc": function (a, b) {
        return parseFloat(a.getAttribute("data-lesion")) - parseFloat(b.getAttribute("data-lesion"));
      },
      "name": function (a, b) {
        return a.getAttribute("data-name").localeCompare(b.getAttribute("data-name"));
      }
    }[key];
    document.querySelectorAll(".grid").forEach(function (grid) {
      var children = Array.prototype.slice.call(grid.children);
      children.sort(compare).forEach(function (child) { grid.appendChild(child); });
    });
  }

  statusBoxes.forEach(function (box) { box.addEventListener("change", applyFilters); });
  [minLesion, search].forEach(function (el) { el.addEventListener("input", applyFilters); });
  positiveOnly.addEventListener("change", applyFilters);
  sortSelect.addEventListener("change", applySort);
  applyFilters();

  // Once everything has loaded: say which thumbnails did not (a moved page, say), and
  // record the figures in a hidden element that tests read from the rendered DOM.
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.querySelectorAll(".thumb img"));
    var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
    var check = document.getElementById("thumb-check");
    check.setAttribute("data-total", String(images.length));
    check.setAttribute("data-loaded", String(images.length - broken.length));
    check.textContent = JSON.stringify(images.map(function (img) {
      return { src: img.getAttribute("src"), naturalWidth: img.naturalWidth };
    }));
    if (broken.length) {
      var warning = document.getElementById("thumb-warning");
      warning.textContent = broken.length + " of " + images.length + " thumbnails could not be " +
        "loaded: keep this page next to its _files folder.";
      warning.hidden = false;
    }
  });
}());
