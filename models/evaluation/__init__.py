"""Offline evaluation: ranking metrics, temporal splits, baseline recommenders and reports.

Modules (import them directly; this package imports nothing heavy on its own):

- ``data``       item vocabulary, sparse user x item matrices, ``DomainData`` (interactions + catalog + users)
- ``metrics``    vectorised full-ranking metrics: Recall/NDCG/MAP/HitRate@K and beyond-accuracy metrics
- ``split``      temporal train/validation/test split, cold-start slices, ground truth
- ``segments``   the demographic / dominant-category segments of the legacy recommender
- ``baselines``  random, popularity, legacy segment popularity, EASE and implicit ALS
- ``tuning``     hyperparameter grid search on the validation window
- ``evaluate``   ``evaluate_recommender``, ``merged_recall`` and ``run_baselines`` (the comparison table)
- ``report``     Markdown table and PNG plots of such a table
- ``pipeline``   the whole served pipeline (retrievers -> ranker) evaluated offline on a temporal split
- ``lake_samples`` the bounded lake reads of a release's checks (sampled users, pushed-down filters)
- ``release_evaluation`` a staged release's retrievers and ranked order on held-out days (its evaluate stage)
- ``cli``        the ``recsys eval`` Typer sub-app
"""
