"""Candidate generation models: the two-tower collaborative retriever, the content tower,
rolling popularity, ScaNN indexes and the retrieval bundle that serving loads.

Modules (import them directly; this package imports nothing heavy on its own):

- ``data``        pandas preparation: implicit interactions, histories, item content, user features
- ``examples``    the towers' training examples (in memory or Spark's Parquet shards), streamed in chunks
- ``layers``      shared Keras building blocks (item content encoder, masked mean pooling)
- ``two_tower``   query/candidate towers trained with ``tfrs.tasks.Retrieval`` (in-batch, logQ)
- ``content``     content-only item tower (embeds any item, including never-seen ones)
- ``popularity``  time-decayed popularity per segment: the cold-start fallback
- ``index``       ScaNN index build/search/serialize and recall against exact search
- ``fast_query``  the query tower's weights in NumPy (the serving path; checked against the SavedModel)
- ``new_items``   new-item slots of the content retriever (recently launched items, exact search)
- ``export``      write a retrieval bundle to a release dir and load it back as ``Retrievers``
- ``pipeline``    train everything from examples + popularity (or a DataFrame) and export the bundle
- ``candidates``  offline candidates of many users from a release's retrievers (batched ScaNN queries):
                  evaluation and the bootstrap ranking set
- ``cli``         the ``recsys retrieval`` Typer sub-app
"""
