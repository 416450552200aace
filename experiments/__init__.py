"""Online experiments and their measurement: arm assignment, A/B statistics, the Spark A/B metrics job,
off-policy evaluation and the monitoring dashboard; offline, the position-bias experiment
(``position_bias``: corrected vs uncorrected ranker against a known relevance) and the offline
report that gathers the evaluations of every domain (``offline_report``)."""
