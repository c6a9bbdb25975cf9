"""Overview page: dataset statistics, memorization segments, per-segment metrics of every evaluated
model, and the gain decomposition between two models. Graph parts come from the store; model parts
from the run folder's models/<model>/metrics_<split>.json (so they show even when the graph is down).

Its settings (split, metric, K, models A and B, token-level group) are bound to the URL
(`bind="query-params"`, the widget key is the parameter name), so a shared link reproduces the page.
"""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard import cache, data, palette
from graph.errors import GraphError
from graph.relations import RELATIONS

ctx = cache.context(require_graph=False)
text_color = "#fafafa" if st.context.theme.type == "dark" else "#31333f"   # Streamlit's own text colours
run = ctx.settings.run
st.title("Overview")
st.caption("Where does a recommender's accuracy come from? Users are split by how far their held-out "
           "test item is from their history in the item graph; **one-hop covered** users have a "
           "training transition (`NEXT` edge) from their last item straight to the target.")

# -- dataset ---------------------------------------------------------------------------------------
st.subheader("Dataset")
manifest = data.export_manifest(run)
if ctx.store is None:
    cache.show_store_error(ctx)
else:
    try:
        counts = cache.graph_counts(ctx.store, ctx.version)
    except GraphError as e:
        counts = None
        st.error(f"Counting the graph failed: {e}")
    if counts:
        # Every relation a build always makes, and the extra ones this graph has edges of.
        shown = [("Users", "users"), ("Items", "items"), ("Interactions", "INTERACTED")]
        shown += [(f"{name} edges", name) for name, spec in RELATIONS.items() if not spec.optional or counts.get(name)]
        cols = st.columns(len(shown))
        for col, (label, key) in zip(cols, shown):
            col.metric(label, f"{counts[key]:,}")
if manifest:
    params = manifest.get("params", {})
    st.caption(
        f"Dataset **{manifest.get('dataset', '?')}** · relations from the "
        f"{' + '.join(params.get('splits', ['train']))} part of each sequence · collaborative window "
        f"{params.get('window')} · top-{params.get('k')} COLLAB · top-{params.get('semantic_k')} SIMILAR "
        f"({params.get('model') or 'no semantic model'}) · exported {manifest.get('created_at', '?')}")

# -- segments --------------------------------------------------------------------------------------
st.subheader("Test users per memorization segment")
segments = None
if ctx.store is None:
    st.caption("Segments are read from the graph's User nodes: not available while the graph is down.")
else:
    try:
        segments = cache.segment_counts(ctx.store, ctx.version)
    except GraphError as e:
        st.error(f"Reading the segments failed: {e}")
if segments is not None and segments.empty:
    st.info(f"No user is labelled with a segment yet. Run `iirg analyze --run {run}` to label the test "
            "users (one-hop covered, 2-hop, 3-hop, beyond, semantic only, unreachable).")
elif segments is not None:
    left, right = st.columns([3, 2])
    chart = alt.Chart(segments).mark_bar().encode(
        x=alt.X("share:Q", axis=alt.Axis(format="%"), title="share of test users"),
        y=alt.Y("label:N", sort=list(segments["label"]), title=None),
        color=alt.Color("label:N", legend=None,
                        scale=alt.Scale(domain=list(segments["label"]),
                                        range=[palette.segment_color(s) for s in segments["segment"]])),
        tooltip=["label", "n_users", alt.Tooltip("share:Q", format=".1%")])
    # Vega-Lite draws text black unless told: pick the text colour of the browser's theme (dark mode).
    text = alt.Chart(segments).mark_text(align="left", dx=3, fontWeight="bold", color=text_color).encode(
        x="share:Q", y=alt.Y("label:N", sort=list(segments["label"])), text=alt.Text("share:Q", format=".1%"))
    left.altair_chart(chart + text, width="stretch")
    right.dataframe(segments[["label", "n_users", "share"]], hide_index=True,
                    column_config={"label": "segment", "n_users": st.column_config.NumberColumn("users", format="%d"),
                                   "share": st.column_config.NumberColumn("share", format="percent")})
    covered = segments.loc[segments["segment"] == "one_hop", "share"]
    if len(covered):
        right.caption(f"**{covered.iloc[0]:.1%}** of test users are one-hop covered: a model that only "
                      "memorized training transitions could at best reach them.")

# -- models ----------------------------------------------------------------------------------------
st.subheader("Evaluated models")
split = st.segmented_control("Split", ["test", "valid"], default="test", key="split", bind="query-params") or "test"
models, skipped = cache.model_metrics(str(run), split, cache.files_version(run))
for path in skipped:
    st.warning(f"Skipped an unreadable metrics file: `{path}`")
if not models:
    st.info(f"No model has been evaluated on the {split} split yet. Evaluate one, e.g. "
            f"`iirg baseline popularity --run {run}` (also markov, cooc, sasrec) or `iirg evaluate` for a "
            "fine-tuned LLM; its per-segment metrics appear here.")
    st.stop()

ks = data.available_ks(models) or [10]
c1, c2 = st.columns([1, 2])
# Bound widgets write their option's label into the URL (`?metric=Recall`), so the labels are the options.
metric = {"NDCG": "ndcg", "Recall": "recall"}[
    c1.segmented_control("Metric", ["NDCG", "Recall"], default="NDCG", key="metric", bind="query-params") or "NDCG"]
k = c2.select_slider("Cut-off K", options=ks, value=10 if 10 in ks else ks[-1], key="k", bind="query-params")
name = f"{'NDCG' if metric == 'ndcg' else 'Recall'}@{k}"
table = data.segment_metrics_table(models, k)
segment_rows = table[~table["group"].str.startswith("(")]
model_colors = palette.model_colors(m.model for m in models)
chart = alt.Chart(segment_rows).mark_bar().encode(
    x=alt.X("group:N", sort=list(dict.fromkeys(segment_rows["group"])), title=None,
            axis=alt.Axis(labelAngle=0)),
    xOffset="model:N",
    y=alt.Y(f"{metric}:Q", title=name),
    color=alt.Color("model:N", title="model",
                    scale=alt.Scale(domain=list(model_colors), range=list(model_colors.values()))),
    tooltip=["model", "group", "n_users", alt.Tooltip(f"{metric}:Q", format=".4f")])
st.altair_chart(chart, width="stretch")
wide = table.pivot_table(index=["group", "segment"], columns="model", values=metric, sort=False).reset_index()
users = table.drop_duplicates(["group"]).set_index("group")["n_users"]
wide.insert(1, "users", wide["group"].map(users))
st.dataframe(wide.drop(columns="segment"), hide_index=True,
             column_config={m.model: st.column_config.NumberColumn(m.model, format="%.4f") for m in models})
st.caption(f"{name} per segment (rows in parentheses are the covered / uncovered / any-hop groups). "
           "Full-ranking evaluation over all items; history items removed from each list.")
with st.expander("Memorization: how often each model recommends training successors of the last item"):
    st.dataframe(data.memorization_table(models, k), hide_index=True)

# -- token-level memorization (semantic IDs) -------------------------------------------------------
token = data.token_level_table(run, split)
if token is not None:
    st.subheader("Token-level memorization (semantic IDs)")
    st.caption("Token level of a user = how many leading SID codes of *last item → target* already occur "
               "as a training transition between items with those prefixes (0: not even the first code; "
               "the full SID is the item itself, i.e. one-hop). A generative model that emits codes can "
               "memorize these prefix transitions even for users the item graph calls uncovered.")
    group = st.segmented_control("Users", ["uncovered", "all"], default="uncovered", key="token_group",
                                 bind="query-params", help="uncovered: users who are not one-hop covered") \
        or "uncovered"
    wide, token_k = data.token_level_wide(token, group)
    token_models = [c for c in wide.columns if c not in ("token_level", "users")]
    st.dataframe(wide, hide_index=True,
                 column_config={"token_level": st.column_config.NumberColumn("token level", format="%d"),
                                "users": st.column_config.NumberColumn("users", format="%d"),
                                **{m: st.column_config.NumberColumn(m, format="%.4f") for m in token_models}})
    st.caption(f"Recall@{token_k} per token level, from `report/token_level_{split}.csv` (`iirg report` "
               f"at K = {token_k}).")
elif data.sid_stats(run) is not None:
    st.caption(f"This run has semantic IDs: `iirg report --run {run} --split {split}` adds the token-level "
               "memorization table (Recall per SID prefix level of last item → target).")

# -- gain decomposition ----------------------------------------------------------------------------
st.subheader("Gain decomposition")
if len(models) < 2:
    st.info("Evaluate a second model to see where one model's gain over another comes from.")
    st.stop()
names = [m.model for m in models]
# Defaults: the best model overall against popularity (the usual reference), else the weakest.
best = max(models, key=lambda m: m.metrics["overall"].get(f"{metric}@{k}", 0.0)).model
reference = "popularity" if "popularity" in names and best != "popularity" else \
    min(models, key=lambda m: m.metrics["overall"].get(f"{metric}@{k}", 0.0)).model
if reference == best:
    reference = next(n for n in names if n != best)
c1, c2 = st.columns(2)
a_name = c1.selectbox("Model A", names, index=names.index(best), key="a", bind="query-params")
b_name = c2.selectbox("Model B (reference)", names, index=names.index(reference), key="b", bind="query-params")
if a_name == b_name:
    st.warning("Pick two different models.")
    st.stop()
by_name = {m.model: m for m in models}
decomposition = cache.gain_decomposition(str(run), split, by_name[a_name], by_name[b_name], metric, k,
                                         cache.files_version(run), (a_name, b_name))
share = decomposition.covered_share
cols = st.columns(3)
cols[0].metric(f"Δ {name} (A − B)", f"{decomposition.delta:+.4f}")
cols[1].metric("Share of Δ from one-hop covered users", "n/a" if share is None else f"{share:.0%}",
               help="contribution of the one-hop covered segment ÷ Δ. Above 100% when the other segments "
                    "together pull the other way (A loses there); below 0% when covered users favour B.")
cols[2].metric("Users compared", f"{decomposition.n_users:,}")
if share is not None and (share > 1 or share < 0):
    # Shares outside 0-100% are no error: the segments' contributions have opposite signs.
    covered_part = share * decomposition.delta
    rest = decomposition.delta - covered_part
    st.caption(f"The share is {share:.0%}: one-hop covered users contribute {covered_part:+.4f}, the other "
               f"segments together {rest:+.4f}. "
               + ("They pull the other way, so the covered users account for more than the whole difference."
                  if share > 1 else
                  "The covered users pull against the difference; the other segments more than make it up."))
dec = decomposition.table
intervals = data.report_intervals(run, split, a_name, b_name, f"{metric}@{k}")
if intervals is not None:
    dec = dec.merge(intervals, on="segment", how="left")
bars = alt.Chart(dec).mark_bar().encode(
    x=alt.X("contribution:Q", title=f"contribution to Δ {name}"),
    y=alt.Y("label:N", sort=list(dec["label"]), title=None),
    color=alt.condition(alt.datum.contribution >= 0, alt.value(palette.POSITIVE), alt.value(palette.NEGATIVE)),
    tooltip=["label", "n_users", alt.Tooltip("delta:Q", format="+.4f"),
             alt.Tooltip("contribution:Q", format="+.4f")])
chart = bars
if intervals is not None and {"contribution_ci_low", "contribution_ci_high"} <= set(dec.columns):
    # 95% bootstrap intervals of each contribution from `iirg report`, in the theme's text colour.
    chart = bars + alt.Chart(dec).mark_rule(strokeWidth=2, color=text_color).encode(
        x="contribution_ci_low:Q", x2="contribution_ci_high:Q", y=alt.Y("label:N", sort=list(dec["label"])))
st.altair_chart(chart, width="stretch")
if intervals is not None:
    overall = intervals[intervals["segment"] == "all"]
    if len(overall):
        st.caption(f"95% bootstrap interval of Δ from `iirg report`: [{overall['delta_ci_low'].iloc[0]:+.4f}, "
                   f"{overall['delta_ci_high'].iloc[0]:+.4f}]; the lines on the bars are the intervals of "
                   "each contribution.")
st.dataframe(dec.drop(columns="segment").rename(columns={"mean_a": f"{a_name}", "mean_b": f"{b_name}"}),
             hide_index=True,
             column_config={"label": "segment", "share": st.column_config.NumberColumn(format="percent"),
                            a_name: st.column_config.NumberColumn(format="%.4f"),
                            b_name: st.column_config.NumberColumn(format="%.4f"),
                            "delta": st.column_config.NumberColumn("Δ in segment", format="%+.4f"),
                            "contribution": st.column_config.NumberColumn("share × Δ", format="%+.4f"),
                            **{c: st.column_config.NumberColumn(c.replace("_", " "), format="%+.4f")
                               for c in ("delta_ci_low", "delta_ci_high", "contribution_ci_low",
                                         "contribution_ci_high")}})
st.caption(f"Δ = Σ over segments of (share of users) × (Δ inside the segment), exact. Computed "
           f"{decomposition.source}." + ("" if intervals is not None else
           f" For 95% bootstrap intervals of exactly this view run `iirg report --run {run} --split {split} "
           f"--k {k} --compare {a_name} {b_name}`."))
