"""dashboard: Streamlit app to explore memorization paths, compare models and run read-only Cypher."""
