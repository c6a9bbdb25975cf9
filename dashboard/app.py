"""The iirg dashboard: a Streamlit app over one run's graph and evaluation files.

    iirg dashboard --run runs/ml-100k                       # embedded graph of the run
    iirg dashboard --run runs/ml-100k --neo4j bolt://localhost:7687
    IIRG_DASHBOARD_RUN=runs/ml-100k streamlit run dashboard/app.py   # what `iirg dashboard` does

This file is the frame: page setup, the sidebar (which run, which store) and `st.navigation` over the
pages in dashboard/views/ (one script per page). Settings come from the environment, see
dashboard/cache.py.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.settings import settings_from_env

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="iirg · memorization explorer", page_icon=":material/hub:", layout="wide")

pages = [
    st.Page(HERE / "views" / "overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page(HERE / "views" / "users.py", title="User explorer", icon=":material/person_search:",
            url_path="users"),
    st.Page(HERE / "views" / "items.py", title="Item explorer", icon=":material/category:", url_path="items"),
    st.Page(HERE / "views" / "console.py", title="Cypher console", icon=":material/terminal:",
            url_path="console"),
]
navigation = st.navigation(pages)

settings = settings_from_env()
with st.sidebar:
    st.markdown("**iirg** · one-hop memorization in generative recommenders")
    if settings is not None:
        st.caption(f"Run: `{settings.run}`  \nGraph: {settings.store.describe()} (read-only)")

navigation.run()
