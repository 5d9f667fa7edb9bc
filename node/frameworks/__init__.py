"""Pure maths of the classic-ML workflows, shared by the server's workflow and the sites' Client API helpers:
federated k-means (`kmeans`) and XGBoost's trees (`xgb_hist`: histograms and split finding; `xgb_json`: XGBoost's
JSON model format). numpy only; nothing here does I/O."""
