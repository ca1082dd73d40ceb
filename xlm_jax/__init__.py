"""XLM (Lample & Conneau 2019) as pure JAX functions."""
