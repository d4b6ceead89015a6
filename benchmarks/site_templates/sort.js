// Sortable tables: click a header to sort by it (numbers by their data-sort value); `?sort=KEY&dir=asc|desc` sorts
// the first table that has column KEY when the page loads.
function sortTable(table, index, ascending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const key = (row) => {
    const cell = row.cells[index];
    const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    const number = parseFloat(raw);
    return raw !== "" && !isNaN(number) && /^[-+]?[0-9.eE+-]+$/.test(raw) ? number : raw.toLowerCase();
  };
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (typeof x === "number" && typeof y === "number") return ascending ? x - y : y - x;
    if (typeof x === "number") return -1;  // numbers before blanks and text, either way
    if (typeof y === "number") return 1;
    return ascending ? String(x).localeCompare(String(y)) : String(y).localeCompare(String(x));
  });
  rows.forEach((row) => body.appendChild(row));
  Array.from(table.tHead.rows[0].cells).forEach((th, i) =>
    th.setAttribute("aria-sort", i === index ? (ascending ? "ascending" : "descending") : "none"));
}
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach((table) => {
    Array.from(table.tHead.rows[0].cells).forEach((th, index) => {
      th.classList.add("sortable");
      th.addEventListener("click", () => sortTable(table, index, th.getAttribute("aria-sort") !== "ascending"));
    });
  });
  const params = new URLSearchParams(window.location.search);
  const wanted = params.get("sort");
  if (wanted) {
    for (const table of document.querySelectorAll("table.sortable")) {
      const index = Array.from(table.tHead.rows[0].cells).findIndex((th) => th.dataset.key === wanted);
      if (index >= 0) { sortTable(table, index, params.get("dir") !== "desc"); break; }
    }
  }
});
