"""ltxlab dashboard: `ltxlab dashboard [--results DIR] [--survey-db PATH] [--data DIR ...]` or `streamlit run dashboard/app.py`.

A Streamlit multipage app (st.navigation); every page reads the results store through
`ablations.store`, the survey database through `survey.reports` and curated datasets through
`clips.curate.manifest`, never torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ (not the repo root) on sys.path
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard.common import sidebar  # noqa: E402

st.set_page_config(page_title="ltxlab", layout="wide")

# Not named `pages/`: Streamlit runs a server whose main script has a `pages/` sibling in its
# v1 folder mode until some session has run st.navigation, so a fresh server's first visitor
# of a deep link (/runs, /data?dataset=...) got the page alone with an auto-made sidebar.
_HERE = Path(__file__).parent / "views"
PAGES = [
    st.Page(str(_HERE / "sweeps.py"), title="Sweeps", default=True),
    st.Page(str(_HERE / "runs.py"), title="Runs"),
    st.Page(str(_HERE / "effects.py"), title="Effects"),
    st.Page(str(_HERE / "compare.py"), title="Compare"),
    st.Page(str(_HERE / "survey.py"), title="Survey"),
    st.Page(str(_HERE / "cost.py"), title="Cost"),
    st.Page(str(_HERE / "data.py"), title="Data"),
]

page = st.navigation(PAGES)
sidebar()
page.run()
