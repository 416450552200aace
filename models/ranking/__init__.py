"""The DCN-v2 ranker: position-bias-corrected training, SavedModel export and a fast NumPy export.

Modules: ``config`` (:class:`RankerConfig`, default feature lists), ``data`` (frames -> tf.data),
``encoder`` (feature preprocessing), ``model`` (the TFRS model and the position tower), ``train``
(:func:`train_ranker`), ``scoring`` (the :class:`Scorer` interface, export metadata), ``export``
(SavedModel export, :func:`export_ranker`, :func:`load_scorer`), ``fast_export`` (the NumPy
scorer), ``synthetic`` (logged impressions with a known truth, for tests and benchmarks), ``shards`` and
``trainer`` (the training set as shards, trained by 1..N worker processes), ``candidate_ranker`` and
``offline_features`` (ranking retrieved candidates offline, with features as of a moment), ``cli``.
Importing this package does not import TensorFlow; the submodules that need it do.
"""
