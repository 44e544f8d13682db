"""The lab's judgement thresholds, each defined once: the metrics, the verdict, the report and the charts
import them from here, so a sentence and a chart colour cannot disagree about the same limit."""

from __future__ import annotations

# A Locust worker above this CPU % was likely what limited the run (Locust itself warns at 90 %).
GENERATOR_CPU_LIMIT_PCT = 90.0
# Open model: achieved / target throughput below this means the arrivals did not happen as asked.
FELL_BEHIND_RATIO = 0.95
# Open model: above this share of arrivals late or dropped (no user free at their time), too few users.
LATE_ARRIVALS_SHARE = 0.01
# The classifiers using this share of the machine's cores: the machine, not the replica count, was the limit.
MACHINE_CPU_FRACTION = 0.85
# Every container together using this share of the machine's cores: no core left to scale into.
CONTAINERS_CPU_FRACTION = 0.95
# The whole machine (any process, from the host's own counters) this busy: no core left to scale into.
HOST_BUSY_FRACTION = 0.9
# Scaling efficiency below this is named as poor (verdict) and drawn orange (chart).
GOOD_SCALING_EFFICIENCY = 0.75
# A ramp without --need-rps recommends among configurations within this fraction of the best capacity,
# so a configuration is not chosen for being cheap at a light load.
NEAR_BEST_CAPACITY = 0.95
# After a fault, a TIMELINE_WINDOW_S-second window is back to the level before it when its RPS is within
# RECOVERY_RPS_TOLERANCE below that level and its p95 within RECOVERY_P95_TOLERANCE above it, or within the
# range the windows before the fault spanned, or (RPS) above the lower end of the one-sided
# RECOVERY_CONFIDENCE prediction interval from the seconds before it, whichever is widest (lab.timeline.Band).
TIMELINE_WINDOW_S = 5
RECOVERY_RPS_TOLERANCE = 0.10
RECOVERY_P95_TOLERANCE = 0.20
RECOVERY_CONFIDENCE = 0.95
# A soak flags growth of a replica's RSS or open files, or of p95, above this fraction.
SOAK_GROWTH_LIMIT = 0.10
# A replica whose mean CPU is above its budget by more than this fraction was not held by its quota
# (sampling at 2-s intervals moves the mean a few %; a quota holds it within one CFS period).
BUDGET_OVERRUN_TOLERANCE = 0.10
# `lab plan` answers up to this many times the largest measured replica count (further needs --force): the
# USL's band grows fast outside the fitted range, and the R usl authors warn even inside it below 6 points.
EXTRAPOLATION_LIMIT = 4
# A latency model's service time measured with each replica busier than this share includes queueing.
LIGHT_LOAD_UTILISATION = 0.5
