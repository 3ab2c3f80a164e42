// sendbrake console: refresh the campaign table in place, keeping the reader's place.
// Loaded from /console/static under `script-src 'self'`; nothing inline. Without it the
// page still works: its "Refresh now" link reloads the same view.
"use strict";
(function () {
  const table = document.querySelector("table[data-refresh-url]");
  const seconds = table ? Number(table.dataset.refreshSeconds) : 0;
  if (!table || !(seconds > 0)) {
    return;
  }
  const stamp = document.getElementById("refreshed-at");

  function busy() {
    // Replacing the rows under a focused link or a selection would lose the reader's place.
    const active = document.activeElement;
    const selection = window.getSelection();
    return (active && table.contains(active)) ||
      (selection && !selection.isCollapsed && table.contains(selection.anchorNode));
  }

  async function refresh() {
    if (document.hidden || busy()) {
      return;
    }
    const response = await fetch(table.dataset.refreshUrl, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
      redirect: "error",
    });
    if (!response.ok) {
      stamp.textContent = stamp.dateTime + " (not refreshed: reload the page)";
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const rows = fresh.querySelector("tbody");
    const when = fresh.getElementById("refreshed-at");
    if (!rows || !when || busy()) {
      return;
    }
    table.tBodies[0].replaceWith(document.adoptNode(rows));
    stamp.dateTime = when.dateTime;
    stamp.textContent = when.textContent;
  }

  function tick() {
    refresh().catch(function () {
      stamp.textContent = stamp.dateTime + " (not refreshed: the gateway did not answer)";
    }).finally(function () {
      window.setTimeout(tick, seconds * 1000);
    });
  }
  window.setTimeout(tick, seconds * 1000);
})();
