"""The workspace: which data sets are on offer, which run a view explains and on which data, and what a first start
trains. One home for these rules, called by the CLI and the app alike (the app adds only Streamlit's caching)."""
