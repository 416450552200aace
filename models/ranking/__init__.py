"""The DCN-v2 ranker: position-bias-corrected training, SavedModel export and a fast NumPy export.

Modules: ``config`` (:class:`RankerConfig`, default feature lists), ``data`` (frames -> tf.data),
``model`` (the TFRS model and the position tower), ``train`` (:func:`train_ranker`), ``export``
(SavedModel export, the :class:`Scorer` interface, :func:`load_scorer`), ``fast_export`` (the
NumPy scorer), ``synthetic`` (logged impressions with a known truth, for tests and benchmarks).
Importing this package does not import TensorFlow; the submodules that need it do.
"""
