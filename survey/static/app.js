// Rater page: consent -> instructions -> pairs -> completion code. Talks to /api/s/<study>/...
(function () {
  "use strict";
  const cfg = JSON.parse(document.getElementById("survey-config").textContent);
  const api = (path) => "/api/s/" + encodeURIComponent(cfg.study) + "/" + path;
  const pid = new URLSearchParams(window.location.search).get("pid") || "";
  const $ = (id) => document.getElementById(id);
  const left = $("video-left"), right = $("video-right");
  const CHOICES = [["left", "Left is better"], ["right", "Right is better"], ["tie", "Tie"], ["both_bad", "Both bad"]];
  let rater = null, pair = null, answers = [], ended = {}, shownAt = 0, sending = false;

  function show(section) {
    for (const id of ["consent", "instructions", "pair", "done"]) $(id).hidden = id !== section;
  }
  function message(text) { $("message").textContent = text || ""; }

  async function post(path, body) {
    const res = await fetch(api(path), {
      method: "POST", headers: { "Content-Type": "application/json" },
      credentials: "same-origin", body: JSON.stringify(body),
    });
    let data = {};
    try { data = await res.json(); } catch (e) { /* non-JSON error page */ }
    return { status: res.status, data: data };
  }

  function buildQuestions() {
    const box = $("questions");
    box.textContent = "";
    cfg.questions.forEach((text, q) => {
      const div = document.createElement("div");
      div.className = "question";
      const p = document.createElement("p");
      p.textContent = text;
      div.appendChild(p);
      CHOICES.forEach(([value, label], k) => {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.vote = value;
        b.dataset.question = String(q);
        b.textContent = (k + 1) + ". " + label;
        b.disabled = true;
        b.addEventListener("click", () => choose(q, value));
        div.appendChild(b);
      });
      box.appendChild(div);
    });
  }

  function setEnabled(on) {
    for (const b of document.querySelectorAll("button[data-vote]")) b.disabled = !on;
    $("watch-hint").hidden = on;
  }

  function playBoth() {
    for (const v of [left, right]) { v.currentTime = 0; }
    Promise.all([left.play(), right.play()]).catch(() => message("Press Replay both to start the videos."));
  }

  function onEnded(side) {
    ended[side] = true;
    if (ended.left && ended.right) setEnabled(true);
  }
  left.addEventListener("ended", () => onEnded("left"));
  right.addEventListener("ended", () => onEnded("right"));
  $("replay").addEventListener("click", playBoth);

  function render(next) {
    if (next.done) {
      show("done");
      $("completion-code").textContent = next.completion_code;
      if (next.redirect) { $("return-link").href = next.redirect; $("return-box").hidden = false; }
      document.body.dataset.state = "done";
      return;
    }
    pair = next;
    answers = new Array(cfg.questions.length).fill(null);
    ended = { left: false, right: false };
    show("pair");
    buildQuestions();
    setEnabled(false);
    message("");
    $("progress").textContent = "Pair " + next.position + " of " + next.total;
    $("prompt").textContent = next.prompt;
    $("image-box").hidden = !next.image;
    if (next.image) $("cond-image").src = next.image; else $("cond-image").removeAttribute("src");
    let ready = 0;
    const start = () => { if (++ready === 2) playBoth(); };
    left.oncanplaythrough = start; right.oncanplaythrough = start;
    left.src = next.left; right.src = next.right;
    left.load(); right.load();
    shownAt = performance.now();
    document.body.dataset.state = "pair";
    document.body.dataset.position = String(next.position);
  }

  function choose(q, value) {
    if (!pair || sending || !(ended.left && ended.right)) return;
    answers[q] = value;
    for (const b of document.querySelectorAll('button[data-question="' + q + '"]'))
      b.classList.toggle("chosen", b.dataset.vote === value);
    if (answers.every((a) => a !== null)) submit();
  }

  async function submit() {
    sending = true;
    setEnabled(false);
    document.body.dataset.state = "sending";
    const body = { rater: rater, assignment: pair.assignment, token: pair.token, answers: answers,
                   elapsed_ms: Math.round(performance.now() - shownAt) };
    try {
      let res = await post("vote", body);
      // 425: the server has not yet seen both videos delivered and played out (it counts what it
      // sent, the page counts what it played); the two clocks differ by a moment, so retry briefly.
      for (let tries = 0; res.status === 425 && tries < 5; tries++) {
        await new Promise((done) => setTimeout(done, 1000));
        res = await post("vote", body);
      }
      if (res.status === 200) { render(res.data.next); }
      else if (res.status === 409) { const n = await post("next", { rater: rater }); render(n.data); }
      else { message(res.data.error || "Your vote could not be saved; please try again."); setEnabled(true); }
    } catch (e) {
      message("Network problem; please try again."); setEnabled(true);
    } finally { sending = false; }
  }

  document.addEventListener("keydown", (ev) => {
    const k = "1234".indexOf(ev.key);
    if (k < 0 || !pair || $("pair").hidden) return;
    const q = answers.indexOf(null);
    if (q >= 0) choose(q, CHOICES[k][0]);
  });

  $("consent-agree").addEventListener("click", async () => {
    const res = await post("start", { pid: pid });
    if (res.status !== 200) { $("consent").append(" " + (res.data.error || "Could not start.")); return; }
    rater = res.data.rater;
    show("instructions");
  });
  $("begin").addEventListener("click", async () => {
    const res = await post("next", { rater: rater });
    if (res.status !== 200) { message(res.data.error || "Could not load a pair."); return; }
    render(res.data);
  });
  show("consent");
  document.body.dataset.state = "consent";
})();
