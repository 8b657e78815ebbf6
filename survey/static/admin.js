// Admin page: studies, votes per pair, raters, flagged raters and refused voters. Token stays in this tab only.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(window.location.search);
  if (params.get("token")) $("token").value = params.get("token");

  async function get(path) {
    const res = await fetch(path, { headers: { Authorization: "Bearer " + $("token").value } });
    const data = await res.json();
    if (!res.ok) throw new Error(data.error || res.statusText);
    return data;
  }
  function table(rows) {
    const t = document.createElement("table");
    if (!rows.length) { t.textContent = "(none)"; return t; }
    const cols = Object.keys(rows[0]);
    const head = t.insertRow();
    for (const c of cols) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
    for (const r of rows) { const tr = t.insertRow(); for (const c of cols) tr.insertCell().textContent = r[c]; }
    return t;
  }
  async function showStudy(name) {
    const s = await get("/api/admin/studies/" + encodeURIComponent(name) + "/status");
    const box = $("status");
    box.textContent = "";
    const h = document.createElement("h2"); h.textContent = name; box.appendChild(h);
    const p = document.createElement("p"); p.textContent = JSON.stringify(s.counts); box.appendChild(p);
    for (const [title, rows] of [["Votes per system pair", s.votes_per_pair], ["Flagged raters", s.flagged],
                                 ["Raters with refused votes (voted before the videos arrived or ended)", s.refused || []],
                                 ["Raters", s.raters]]) {
      const h3 = document.createElement("h3"); h3.textContent = title; box.appendChild(h3); box.appendChild(table(rows));
    }
  }
  $("token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const studies = await get("/api/admin/studies");
      const box = $("studies");
      box.textContent = "";
      box.appendChild(table(studies));
      for (const s of studies) {
        const b = document.createElement("button"); b.type = "button"; b.textContent = "Status: " + s.name;
        b.addEventListener("click", () => showStudy(s.name).catch((e) => { $("admin-message").textContent = e.message; }));
        box.appendChild(b);
      }
      $("admin-message").textContent = "";
    } catch (e) { $("admin-message").textContent = e.message; }
  });
})();
