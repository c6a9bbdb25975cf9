"""The dashboard pages, one Streamlit script per page (run by st.navigation in dashboard/app.py)."""
