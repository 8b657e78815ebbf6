"""Survey reports: pure pandas/numpy over the vote store (no torch; the dashboard imports these).

Public functions (each takes an Engine or a database path/URL):
  list_studies(db) -> list[dict]
  load_votes(db, study) -> DataFrame            one row per vote (question), systems resolved
  rater_table(votes, gold_fail_max) -> DataFrame  per-rater counts, gold failures, flagged
  study_report(db, study, include_flagged=False, question=0, both_bad="tie", n_boot=1000,
               confidence=0.95, seed=0, correction="holm") -> dict
  ci_matrix(pairwise, names) -> DataFrame       "62% [55-69]*" cells (* = significant after correction)
  study_status(db, study) -> dict               what the admin page shows (JSON-ready)
  export_votes(db, study) -> DataFrame          every vote with rater, items, sides, choice, times
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from evaluation import bradley_terry as bt
from evaluation.multiplicity import METHOD_NAMES
from survey import db as t


class UnknownStudyError(LookupError):
    """No study of that name in the database."""


class ReportOptionError(ValueError):
    """A report option that does not fit the study (e.g. a question it does not ask)."""


def _engine(db: Engine | str | Path) -> Engine:
    return db if isinstance(db, Engine) else t.make_engine(db)


def _study_row(conn, name: str):  # noqa: ANN001, ANN202
    row = conn.execute(select(t.studies).where(t.studies.c.name == name)).first()
    if row is None:
        names = [r.name for r in conn.execute(select(t.studies.c.name))]
        raise UnknownStudyError(f"No study named '{name}' in this database; studies here: {names}.")
    return row


def list_studies(db: Engine | str | Path) -> list[dict]:
    """Every study with its rater URL path and counts."""
    engine = _engine(db)
    out = []
    with engine.connect() as conn:
        for s in conn.execute(select(t.studies).order_by(t.studies.c.id)):
            n = lambda table, col: len(conn.execute(select(col).where(table.c.study_id == s.id)).all())  # noqa: E731
            n_votes = len(conn.execute(select(t.votes.c.id).join(t.assignments, t.assignments.c.id == t.votes.c.assignment_id)
                                       .where(t.assignments.c.study_id == s.id, t.votes.c.question == 0)).all())
            out.append({"name": s.name, "url": f"/s/{s.public_id}", "systems": n(t.systems, t.systems.c.id),
                        "comparisons": n(t.comparisons, t.comparisons.c.id), "raters": n(t.raters, t.raters.c.id),
                        "votes": n_votes})
    return out


def load_votes(db: Engine | str | Path, study: str) -> pd.DataFrame:
    """One row per (vote, question) with the systems behind each side resolved."""
    engine = _engine(db)
    a, v, c, r, i = t.assignments, t.votes, t.comparisons, t.raters, t.items
    with engine.connect() as conn:
        srow = _study_row(conn, study)
        systems = dict(conn.execute(select(t.systems.c.id, t.systems.c.name).where(t.systems.c.study_id == srow.id)).all())
        query = (
            select(v.c.id.label("vote_id"), v.c.question, v.c.choice, v.c.created_at.label("voted_at"),
                   v.c.client_elapsed_ms, v.c.server_elapsed_s, a.c.id.label("assignment_id"), a.c.position,
                   a.c.left_is_a, a.c.served_at, c.c.id.label("comparison_id"), c.c.system_a, c.c.system_b,
                   c.c.media_a, c.c.media_b, c.c.is_gold, i.c.task, i.c.prompt_id, i.c.seed_block, r.c.id.label("rater_id"),
                   r.c.external_id.label("rater"), r.c.source.label("rater_source"))
            .select_from(v.join(a, a.c.id == v.c.assignment_id).join(c, c.c.id == a.c.comparison_id)
                         .join(i, i.c.id == c.c.item_id).join(r, r.c.id == a.c.rater_id))
            .where(a.c.study_id == srow.id).order_by(v.c.id)
        )
        frame = pd.DataFrame(conn.execute(query).mappings().all())
    cols = ["vote_id", "question", "choice", "voted_at", "client_elapsed_ms", "server_elapsed_s", "assignment_id",
            "position", "left_is_a", "served_at", "comparison_id", "system_a", "system_b", "media_a", "media_b",
            "is_gold", "task", "prompt_id", "seed_block", "rater_id", "rater", "rater_source"]
    if frame.empty:
        frame = pd.DataFrame(columns=cols)
    frame["left_is_a"] = frame["left_is_a"].astype(bool)
    frame["is_gold"] = frame["is_gold"].astype(bool)
    frame["system_a"] = frame["system_a"].map(systems)
    frame["system_b"] = frame["system_b"].map(systems)
    frame["system_left"] = np.where(frame["left_is_a"], frame["system_a"], frame["system_b"])
    frame["system_right"] = np.where(frame["left_is_a"], frame["system_b"], frame["system_a"])
    # outcome from system a's point of view: a, b, tie or both_bad
    picked_left = frame["choice"] == "left"
    picked_right = frame["choice"] == "right"
    frame["outcome"] = np.select(
        [picked_left & frame["left_is_a"], picked_right & ~frame["left_is_a"],
         picked_left & ~frame["left_is_a"], picked_right & frame["left_is_a"]],
        ["a", "a", "b", "b"], default=frame["choice"].astype(object))
    frame.attrs["study"] = study
    frame.attrs["config"] = json.loads(srow.config)
    frame.attrs["systems"] = sorted(systems.values())
    return frame


def rater_table(votes: pd.DataFrame, gold_fail_max: float = 0.25) -> pd.DataFrame:
    """Per rater: votes, gold pairs seen/failed, median seconds per vote, flagged.

    A gold pair is failed unless the rater preferred the clean copy (side a): preferring the
    corrupted one, a tie and "both bad" all fail (question 0 only). "Both bad" must fail too: the
    clean side is always acceptable, and a rater who pressed it on every pair would otherwise pass
    every check while each of their votes entered the report as a tie. Flagged: failed share of
    gold pairs above `gold_fail_max`.
    """
    q0 = votes[votes["question"] == 0]
    gold = q0[q0["is_gold"]]
    failed = gold["outcome"] != "a"
    table = pd.DataFrame({
        "votes": q0.groupby("rater").size(),
        "gold_seen": gold.groupby("rater").size(),
        "gold_failed": failed.groupby(gold["rater"]).sum(),
        "median_seconds_per_vote": q0.groupby("rater")["server_elapsed_s"].median(),
        "first_vote_at": q0.groupby("rater")["voted_at"].min(),
    }).fillna({"gold_seen": 0, "gold_failed": 0})
    table[["gold_seen", "gold_failed"]] = table[["gold_seen", "gold_failed"]].astype(int)
    share = table["gold_failed"] / table["gold_seen"].where(table["gold_seen"] > 0)
    table["flagged"] = (share > gold_fail_max).fillna(False).astype(bool)
    return table.reset_index(names="rater")


def _scores(frame: pd.DataFrame, both_bad: str) -> pd.DataFrame:
    if both_bad == "drop":
        frame = frame[frame["outcome"] != "both_bad"]
    elif both_bad != "tie":
        raise ValueError(f"both_bad must be 'tie' or 'drop', got {both_bad!r}.")
    return frame.assign(score_a=frame["outcome"].map({"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}))


def _agreement(frame: pd.DataFrame) -> dict:
    """Fleiss' kappa and Krippendorff's alpha over comparisons rated by two or more raters."""
    counts = pd.crosstab(frame["comparison_id"], frame["outcome"])
    counts = counts[counts.sum(axis=1) >= 2]
    return {"fleiss_kappa": bt.fleiss_kappa(counts.to_numpy()) if len(counts) else float("nan"),
            "krippendorff_alpha": bt.krippendorff_alpha_nominal(counts.to_numpy()) if len(counts) else float("nan"),
            "items": int(len(counts)), "ratings": int(counts.to_numpy().sum()) if len(counts) else 0}


def ci_matrix(pairwise: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """(K, K) strings: row's win rate against column with its CI, "*" where significant after correction."""
    out = pd.DataFrame("", index=list(names), columns=list(names))
    for row in pairwise.itertuples():
        mark = "*" if row.significant else ""
        out.loc[row.system, row.opponent] = f"{row.win_rate:.0%} [{row.ci_low:.0%}-{row.ci_high:.0%}]{mark}"
    for name in names:
        out.loc[name, name] = "-"
    return out


def _prompt_keys(frame: pd.DataFrame) -> np.ndarray:
    """One cluster per prompt: the item is (task, prompt_id), so t2v and i2v of one id are two prompts."""
    return (frame["task"].astype(str) + ":" + frame["prompt_id"].astype(str)).to_numpy()


def _seed_blocks(frame: pd.DataFrame) -> np.ndarray | None:
    """Each vote's training seed block, or None for a study of fixed models (built from a folder)."""
    blocks = frame["seed_block"]
    return blocks.to_numpy() if blocks.notna().any() else None


def study_report(db: Engine | str | Path, study: str, include_flagged: bool = False, question: int = 0,
                 both_bad: str = "tie", n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
                 correction: str = "holm") -> dict:
    """Everything the CLI report and the dashboard show for one study and question.

    Returns a dict: counts (dict), correction (dict: method, name, pairs, systems, alpha), overall
    (DataFrame: system, win_rate, ci_low, ci_high, se, df, votes, p_value, p_adjusted, significant,
    verdict), overall_by_task (same plus task), pairwise (long, `bt.PAIRWISE_COLUMNS`), pair_verdicts
    (one row per unordered pair, from the side that won, smallest p first), win_matrix (K x K, row's
    win rate vs column), win_matrix_ci (K x K strings, see `ci_matrix`), bradley_terry (system,
    rating, ci_low, ci_high, rank, rank_low, rank_high, p_beats_average, votes), agreement (dict),
    raters (DataFrame from `rater_table`), votes_over_time (DataFrame: hour, votes, cumulative).
    Ties count as half a win; both_bad counts as a tie unless both_bad="drop". Win-rate CIs and
    tests are clustered by rater, by prompt (task + prompt_id) and, in a study built from a sweep,
    by training seed block: there a pair or system whose votes come from one seed block gets a rate
    but no test and no verdict. p-values are adjusted by `correction` ("holm", "bh" or "none") over
    the matrix's tested pairs, and separately over the systems' overall rates.
    """
    if correction not in METHOD_NAMES:
        raise ValueError(f"correction must be one of {', '.join(METHOD_NAMES)}, got {correction!r}.")
    votes = load_votes(db, study)
    config = votes.attrs["config"]
    if not 0 <= question < len(config["questions"]):
        raise ReportOptionError(f"Study '{study}' asks {len(config['questions'])} question(s), numbered 0 to "
                                f"{len(config['questions']) - 1}; got question {question}.")
    names = votes.attrs["systems"]
    raters = rater_table(votes, config.get("gold_fail_max", 0.25))
    flagged = set(raters.loc[raters["flagged"], "rater"])
    real = votes[(votes["question"] == question) & ~votes["is_gold"]]
    used = real if include_flagged else real[~real["rater"].isin(flagged)]
    scored = _scores(used, both_bad)
    index = {name: k for k, name in enumerate(names)}

    def systems(part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (part["system_a"].map(index).to_numpy(dtype=np.int64), part["system_b"].map(index).to_numpy(dtype=np.int64),
                part["score_a"].to_numpy(dtype=np.float64))

    ia, ib, sa = systems(scored)
    cl, prompts, blocks = scored["rater"].to_numpy(), _prompt_keys(scored), _seed_blocks(scored)
    stats = dict(confidence=confidence, prompt_clusters=prompts, correction=correction, seed_clusters=blocks)
    pairwise = bt.pairwise_win_rates(ia, ib, sa, cl, names, **stats)
    overall = bt.overall_win_rates(ia, ib, sa, cl, names, **stats)
    by_task = []
    for task, part in scored.groupby("task"):
        o = bt.overall_win_rates(*systems(part), part["rater"].to_numpy(), names, confidence,
                                 prompt_clusters=_prompt_keys(part), correction=correction,
                                 seed_clusters=_seed_blocks(part))
        by_task.append(o[o["votes"] > 0].assign(task=task))
    q_votes = votes[votes["question"] == question]
    hourly = (pd.to_datetime(q_votes["voted_at"], unit="s").dt.floor("h").value_counts().sort_index()
              .rename_axis("hour").reset_index(name="votes"))
    hourly["cumulative"] = hourly["votes"].cumsum()
    counts = {
        "study": study, "question": config["questions"][question],
        "systems": len(names), "votes_total": int(len(q_votes)), "votes_gold": int(q_votes["is_gold"].sum()),
        "votes_real": int(len(real)), "votes_used": int(len(scored)),
        "votes_excluded_flagged": int(len(real) - len(used)),
        "raters_total": int(len(raters)), "raters_flagged": int(len(flagged)),
        "raters_used": int(scored["rater"].nunique()), "prompts_used": int(len(set(prompts))),
        # seed blocks behind the used votes; None: the systems are fixed models (a folder study)
        "seed_blocks_used": None if blocks is None else sorted(int(b) for b in pd.unique(blocks)),
        "include_flagged": include_flagged, "both_bad": both_bad,
    }
    pair_verdicts = bt.pair_rows(pairwise)
    tested_pairs = int(pair_verdicts["p_adjusted"].notna().sum()) if len(pair_verdicts) else 0
    return {
        "counts": counts,
        "correction": {"method": correction, "name": METHOD_NAMES[correction], "pairs": tested_pairs,
                       "systems": int(overall["p_value"].notna().sum()), "alpha": round(1.0 - confidence, 10),
                       # a dimension with one cluster adds nothing to the variance (evaluation.bradley_terry drops it)
                       "clustered_by": ["rater", "prompt (task + prompt_id)"]
                       + ([] if blocks is None or len(counts["seed_blocks_used"]) < 2 else ["training seed block"])},
        "overall": overall,
        "overall_by_task": pd.concat(by_task, ignore_index=True) if by_task else pd.DataFrame(),
        "pairwise": pairwise,
        "pair_verdicts": pair_verdicts,
        "win_matrix": bt.win_rate_matrix(pairwise, names),
        "win_matrix_ci": ci_matrix(pairwise, names),
        "bradley_terry": bt.bt_ratings(ia, ib, sa, cl, names, n_boot=n_boot, confidence=confidence, seed=seed,
                                       prompt_clusters=prompts, seed_clusters=blocks),
        "agreement": _agreement(scored),
        "raters": raters,
        "votes_over_time": hourly,
    }


def _refused(db: Engine | str | Path, study: str) -> dict[str, dict]:
    """Votes the watch gate refused, per rater (survey.store.refusal_summary)."""
    from survey.store import refusal_summary

    engine = _engine(db)
    with engine.connect() as conn:
        study_id = _study_row(conn, study).id
    return refusal_summary(engine, study_id)


def study_status(db: Engine | str | Path, study: str) -> dict:
    """Admin view: counts, votes per system pair, raters, flagged raters and refused voters (JSON-ready)."""
    votes = load_votes(db, study)
    refused = _refused(db, study)
    config = votes.attrs["config"]
    q0 = votes[votes["question"] == 0]
    raters = rater_table(votes, config.get("gold_fail_max", 0.25))
    real = q0[~q0["is_gold"]]
    pair = real.apply(lambda r: " vs ".join(sorted([r["system_a"], r["system_b"]])), axis=1) if len(real) else pd.Series(dtype=str)
    per_pair = pair.value_counts().rename_axis("pair").reset_index(name="votes") if len(real) else pd.DataFrame()
    to_records = lambda f: json.loads(f.to_json(orient="records")) if len(f) else []  # noqa: E731
    return {
        "counts": {"votes": int(len(q0)), "gold_votes": int(q0["is_gold"].sum()), "raters": int(len(raters)),
                   "flagged": int(raters["flagged"].sum()), "refused_raters": len(refused)},
        "votes_per_pair": to_records(per_pair),
        "raters": to_records(raters),
        "flagged": to_records(raters[raters["flagged"]]),
        # raters who voted before both videos were delivered or played out (the server-side watch gate)
        "refused": [{"rater": rater, **counts} for rater, counts in sorted(refused.items())],
    }


def export_votes(db: Engine | str | Path, study: str) -> pd.DataFrame:
    """Every vote: rater, flagged, item (with its seed block), systems on each side, choice, chosen system, timestamps."""
    votes = load_votes(db, study)
    raters = rater_table(votes, votes.attrs["config"].get("gold_fail_max", 0.25))
    flagged = set(raters.loc[raters["flagged"], "rater"])
    refused = {rater: counts["refused"] for rater, counts in _refused(db, study).items()}
    out = votes.assign(
        study=study,
        rater_flagged=votes["rater"].isin(flagged),
        rater_refused_votes=votes["rater"].map(refused).fillna(0).astype(int),
        chosen_system=np.select([votes["choice"] == "left", votes["choice"] == "right"],
                                [votes["system_left"], votes["system_right"]], default=None),
        served_at=pd.to_datetime(votes["served_at"], unit="s", utc=True),
        voted_at=pd.to_datetime(votes["voted_at"], unit="s", utc=True),
    )
    cols = ["study", "vote_id", "rater", "rater_source", "rater_flagged", "assignment_id", "position",
            "comparison_id", "task", "prompt_id", "seed_block", "is_gold", "system_left", "system_right", "system_a", "system_b",
            "media_a", "media_b", "question", "choice", "outcome", "chosen_system", "served_at", "voted_at",
            "server_elapsed_s", "client_elapsed_ms", "rater_refused_votes"]
    return out[cols].reset_index(drop=True)
