"""Online experiments and their measurement: arm assignment, A/B statistics, the Spark A/B metrics job,
off-policy evaluation and the monitoring dashboard."""
