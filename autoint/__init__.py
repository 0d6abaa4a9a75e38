"""AutoInt Explorer's library: data, model, training, runs and explanations. Never imports Streamlit."""
