"""evaluate: the one evaluator every model hands its ranked lists to, and the memorization analysis.

Between graph and the models: it reads a run's export (graph/) and never imports train/. Baselines,
the ensemble, TIGER and the LLM are models in train/ that call `evaluate.record.record_model`; the
dashboard imports its metrics and segment names.

    cases.py        who is evaluated on which split: history and held-out target per user
    lists.py        a model's ranked lists, validated and aligned with the cases
    metrics.py      Recall/NDCG@K, memorization rate, one-hop hits, gain decomposition + bootstrap
    segments.py     memorization segments (one_hop ... unreachable) per evaluated user
    token_level.py  the same question at the level of semantic-ID code prefixes
    record.py       record_model: validate, score, save a model's lists; write them to a graph store
    report.py       `iirg report`: every recorded model re-scored, tables and plots
    display.py      rich tables for the terminal
    commands.py     `iirg analyze` and `iirg report`
"""
