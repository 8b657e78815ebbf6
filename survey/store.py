"""Rater-facing operations on the vote store: start a rater, serve the next pair, record a vote.

Every state change commits before the caller answers the HTTP request, so an acknowledged vote is
on disk (see `survey.db.make_engine` for the durability reasoning). Assignments and rater ids are
signed with the study's secret (HMAC-SHA256): a vote must carry the token of a pair that was
actually served to that rater.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from survey import db as t
from survey.scheduler import Comparison, Coverage, choose

COVERAGE_REFRESH_S = 30.0  # other server processes' assignments are folded in this often

# Hot-path statements, built once: constructing SQLAlchemy expressions per request cost more than
# the SQLite work itself (profiled: ~60% of a vote). Plain SQL that SQLite and PostgreSQL share.
_SEL_RATER = text("SELECT n_pairs, gold_slots, completion_code, completed_at FROM raters "
                  "WHERE id = :rid AND study_id = :sid")
_SEL_RATER_PAIRS = text("SELECT a.id, a.comparison_id, a.position, a.left_is_a, v.id AS vote FROM assignments a "
                        "LEFT OUTER JOIN votes v ON v.assignment_id = a.id AND v.question = 0 "
                        "WHERE a.rater_id = :rid ORDER BY a.position")
_INS_ASSIGNMENT = text("INSERT INTO assignments (study_id, rater_id, comparison_id, position, left_is_a, served_at) "
                       "VALUES (:sid, :rid, :cid, :pos, :left_is_a, :now) RETURNING id")
_SEL_ASSIGNMENT = text("SELECT comparison_id, served_at, left_is_a FROM assignments "
                       "WHERE id = :aid AND rater_id = :rid AND study_id = :sid")
_INS_VOTE = text("INSERT INTO votes (assignment_id, question, choice, created_at, client_elapsed_ms, server_elapsed_s) "
                 "VALUES (:aid, :q, :choice, :now, :client_ms, :server_s)")
_UPD_DONE = text("UPDATE raters SET completed_at = :now, n_pairs = :n WHERE id = :rid")


class ApiError(Exception):
    """Refused request: HTTP status and a one-sentence message for the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(kw_only=True)
class StudyState:
    """Immutable study data plus the in-memory coverage used by the scheduler."""

    id: int
    name: str
    public_id: str
    secret: bytes
    config: dict
    media_root: str
    comparisons: dict[int, Comparison]
    comp_media: dict[int, tuple[str, str]]  # comparison id -> (media_a, media_b)
    items: dict[int, dict]  # item id -> {task, text, image}
    durations: dict[str, float]  # media id -> seconds
    coverage: Coverage = field(default_factory=Coverage)
    coverage_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def sign(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode()


class Store:
    """Thin service over the engine; one per server process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._studies: dict[str, StudyState] = {}
        self._rng = random.SystemRandom()
        self._media_cache: dict[str, tuple[str, str]] = {}

    # ---- studies -------------------------------------------------------------------------
    def study(self, public_id: str) -> StudyState:
        state = self._studies.get(public_id)
        if state is None:
            state = self._load_study(public_id)
            self._studies[public_id] = state
        if time.monotonic() - state.coverage_at > COVERAGE_REFRESH_S:
            self._refresh_coverage(state)
        return state

    def _load_study(self, public_id: str) -> StudyState:
        if not (4 <= len(public_id) <= 40):
            raise ApiError(404, "No study with this id; check the link you were given.")
        with self.engine.connect() as conn:
            row = conn.execute(select(t.studies).where(t.studies.c.public_id == public_id)).first()
            if row is None:
                raise ApiError(404, "No study with this id; check the link you were given.")
            comps = conn.execute(select(t.comparisons).where(t.comparisons.c.study_id == row.id)).all()
            items = conn.execute(select(t.items).where(t.items.c.study_id == row.id)).all()
            media = conn.execute(select(t.media.c.id, t.media.c.duration_s).where(t.media.c.study_id == row.id)).all()
        return StudyState(
            id=row.id, name=row.name, public_id=row.public_id, secret=row.secret.encode(),
            config=json.loads(row.config), media_root=row.media_root,
            comparisons={c.id: Comparison(id=c.id, item_id=c.item_id, is_gold=bool(c.is_gold),
                                          pair=(min(c.system_a, c.system_b), max(c.system_a, c.system_b)),
                                          a_is_low=c.system_a <= c.system_b)
                         for c in comps},
            comp_media={c.id: (c.media_a, c.media_b) for c in comps},
            items={i.id: {"task": i.task, "text": i.text, "image": i.image_media} for i in items},
            durations={m.id: m.duration_s or 0.0 for m in media},
        )

    def _refresh_coverage(self, state: StudyState) -> None:
        cov = Coverage()
        a, v = t.assignments, t.votes
        with self.engine.connect() as conn:
            for (cid,) in conn.execute(select(a.c.comparison_id).where(a.c.study_id == state.id)):
                cov.add_served(state.comparisons[cid])
            rows = conn.execute(select(a.c.comparison_id, a.c.left_is_a, v.c.choice)
                                .join(v, v.c.assignment_id == a.c.id)
                                .where(a.c.study_id == state.id, v.c.question == 0))
            for cid, left_is_a, choice in rows:
                self._tally(state, cid, left_is_a, choice, cov)
        with state.lock:
            state.coverage, state.coverage_at = cov, time.monotonic()

    @staticmethod
    def _tally(state: StudyState, cid: int, left_is_a: bool, choice: str, cov: Coverage) -> None:
        comp = state.comparisons[cid]
        if comp.is_gold:
            return
        score_a = {"left": 1.0, "right": 0.0}.get(choice, 0.5)
        if not left_is_a:
            score_a = 1.0 - score_a
        cov.add_vote(comp, score_a if comp.a_is_low else 1.0 - score_a)

    # ---- raters --------------------------------------------------------------------------
    def start(self, state: StudyState, external_id: str, source: str) -> dict:
        """Find or create the rater; returns {rater: signed token, done, completion_code}."""
        r = t.raters
        with self.engine.begin() as conn:
            row = conn.execute(select(r).where(r.c.study_id == state.id, r.c.external_id == external_id)).first()
            if row is None:
                cap = state.config.get("max_raters")
                if cap is not None:
                    n = conn.execute(select(r.c.id).where(r.c.study_id == state.id)).all()
                    if len(n) >= cap:
                        raise ApiError(403, "This study has all the raters it needs; thank you for your interest.")
                n_real = min(state.config["pairs_per_rater"], sum(not c.is_gold for c in state.comparisons.values()))
                n_gold = min(state.config["gold_per_rater"], sum(c.is_gold for c in state.comparisons.values()))
                total = n_real + n_gold
                gold_slots = sorted(self._rng.sample(range(total), n_gold))
                try:
                    rid = conn.execute(insert(r).values(
                        study_id=state.id, external_id=external_id, source=source,
                        completion_code=t.random_id(9).upper().replace("-", "X").replace("_", "Y"),
                        gold_slots=json.dumps(gold_slots), n_pairs=total, created_at=time.time(),
                    )).inserted_primary_key[0]
                except IntegrityError:  # the same rater started twice at once
                    conn.rollback()
                    return self.start(state, external_id, source)
            else:
                rid = row.id
        return {"rater": f"{rid}.{sign(state.secret, f'r:{rid}')}"}

    def rater_id(self, state: StudyState, token: object) -> int:
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 80:
            raise ApiError(403, "Missing or invalid rater token; open the study from its link again.")
        rid_text, sig = token.split(".")
        if not rid_text.isdigit() or not hmac.compare_digest(sign(state.secret, f"r:{rid_text}"), sig):
            raise ApiError(403, "Missing or invalid rater token; open the study from its link again.")
        return int(rid_text)

    # ---- pairs and votes -----------------------------------------------------------------
    def next_pair(self, state: StudyState, rid: int) -> dict:
        """The rater's open pair, a newly scheduled one, or the completion payload."""
        with self.engine.begin() as conn:
            return self._next(conn, state, rid)

    def _next(self, conn, state: StudyState, rid: int) -> dict:  # noqa: ANN001 - SQLAlchemy connection
        r = t.raters
        rater = conn.execute(_SEL_RATER, {"rid": rid, "sid": state.id}).first()
        if rater is None:
            raise ApiError(403, "Missing or invalid rater token; open the study from its link again.")
        rows = conn.execute(_SEL_RATER_PAIRS, {"rid": rid}).all()
        for row in rows:
            if row.vote is None:  # reload or second tab: serve the same open pair again
                return self._pair_payload(state, rid, row.id, row.comparison_id, row.position, bool(row.left_is_a),
                                          rater.n_pairs)
        position = len(rows)
        if position >= rater.n_pairs:
            if rater.completed_at is None:
                conn.execute(_UPD_DONE, {"now": time.time(), "n": rater.n_pairs, "rid": rid})
            return self._done_payload(state, rater.completion_code)
        seen = {row.comparison_id for row in rows}
        seen_items = {state.comparisons[c].item_id for c in seen}
        want_gold = position in json.loads(rater.gold_slots)
        comps = list(state.comparisons.values())
        adaptive = bool(state.config.get("adaptive"))
        with state.lock:
            comp = choose(comps, state.coverage, seen, seen_items, self._rng, gold=want_gold, adaptive=adaptive)
            if comp is None:
                comp = choose(comps, state.coverage, seen, seen_items, self._rng, gold=not want_gold,
                              adaptive=adaptive)
            if comp is None:  # the study ran out of pairs this rater has not seen
                conn.execute(_UPD_DONE, {"now": time.time(), "n": position, "rid": rid})
                return self._done_payload(state, rater.completion_code)
            left_is_a = self._rng.random() < 0.5
            try:
                aid = conn.execute(_INS_ASSIGNMENT, {"sid": state.id, "rid": rid, "cid": comp.id, "pos": position,
                                                     "left_is_a": left_is_a, "now": time.time()}).scalar_one()
            except IntegrityError:
                raise ApiError(409, "Another request of yours is already fetching a pair; reload the page.") from None
            state.coverage.add_served(comp)
        return self._pair_payload(state, rid, aid, comp.id, position, left_is_a, rater.n_pairs)

    def _pair_payload(self, state: StudyState, rid: int, aid: int, cid: int, position: int, left_is_a: bool,
                      total: int) -> dict:
        media_a, media_b = state.comp_media[cid]
        left, right = (media_a, media_b) if left_is_a else (media_b, media_a)
        item = state.items[state.comparisons[cid].item_id]
        return {
            "done": False, "assignment": aid, "token": sign(state.secret, f"a:{aid}:{rid}"),
            "position": position + 1, "total": total, "task": item["task"], "prompt": item["text"],
            "image": f"/m/{item['image']}" if item["image"] else None,
            "left": f"/m/{left}", "right": f"/m/{right}", "questions": state.config["questions"],
        }

    @staticmethod
    def _done_payload(state: StudyState, code: str) -> dict:
        url = state.config.get("completion_url")
        return {"done": True, "completion_code": code, "redirect": url.replace("{code}", code) if url else None}

    def vote(self, state: StudyState, rid: int, body: dict) -> dict:
        """Record one vote (one choice per question) and return the next pair; all or nothing."""
        aid, token, answers = body.get("assignment"), body.get("token"), body.get("answers")
        elapsed_ms = body.get("elapsed_ms")
        n_q = len(state.config["questions"])
        if not isinstance(aid, int) or isinstance(aid, bool) or not isinstance(token, str):
            raise ApiError(400, "A vote needs an integer 'assignment' and its string 'token'.")
        if (not isinstance(answers, list) or len(answers) != n_q
                or any(not isinstance(x, str) or x not in t.CHOICES for x in answers)):
            raise ApiError(400, f"'answers' must list {n_q} choice(s), each one of {', '.join(t.CHOICES)}.")
        if elapsed_ms is not None and (not isinstance(elapsed_ms, (int, float)) or isinstance(elapsed_ms, bool)
                                       or not 0 <= elapsed_ms < 1e9):
            raise ApiError(400, "'elapsed_ms' must be a non-negative number of milliseconds.")
        if len(token) > 64 or not hmac.compare_digest(sign(state.secret, f"a:{aid}:{rid}"), token):
            raise ApiError(403, "This pair was not served to you; vote only on pairs the study page shows.")
        with self.engine.begin() as conn:
            row = conn.execute(_SEL_ASSIGNMENT, {"aid": aid, "rid": rid, "sid": state.id}).first()
            if row is None:
                raise ApiError(403, "This pair was not served to you; vote only on pairs the study page shows.")
            now = time.time()
            media_a, media_b = state.comp_media[row.comparison_id]
            min_watch = state.config.get("min_watch_fraction", 0.0) * max(
                state.durations.get(media_a, 0.0), state.durations.get(media_b, 0.0))
            if now - row.served_at < min_watch:
                raise ApiError(425, "This vote came before both videos could have played to the end; watch both first.")
            try:
                conn.execute(_INS_VOTE, [
                    {"aid": aid, "q": q, "choice": choice, "now": now, "server_s": now - row.served_at,
                     "client_ms": float(elapsed_ms) if elapsed_ms is not None else None}
                    for q, choice in enumerate(answers)])
            except IntegrityError:
                raise ApiError(409, "This pair already has your vote; each pair is counted once.") from None
            following = self._next(conn, state, rid)
        with state.lock:
            self._tally(state, row.comparison_id, bool(row.left_is_a), answers[0], state.coverage)
        return {"ok": True, "next": following}

    def media(self, media_id: str) -> tuple[str, str]:
        """(file path, mime type) of a media id; raises 404 for anything unknown."""
        if not (10 <= len(media_id) <= 40) or not all(c.isalnum() or c in "-_" for c in media_id):
            raise ApiError(404, "No such media file.")
        cached = self._media_cache.get(media_id)
        if cached:
            return cached
        m, s = t.media, t.studies
        with self.engine.connect() as conn:
            row = conn.execute(select(m.c.file, m.c.mime, s.c.media_root).join(s, s.c.id == m.c.study_id)
                               .where(m.c.id == media_id)).first()
        if row is None:
            raise ApiError(404, "No such media file.")
        found = (f"{row.media_root}/{row.file}", row.mime)
        self._media_cache[media_id] = found
        return found
