"""Searchers and the experiment engine on Ray Tune.

The engine (`driver`) runs an experiment config (`config`) as Ray Tune trials: a searcher from the
`searchers` registry proposes parameters, an evaluator from the `evaluators` registry turns them
into a trained network and metrics, metric providers from `metrics` add costs read off its NetSpec,
and the run directory (`rundir`) records every finished trial for `inspect` and `export`.
Nothing is imported here, so importing one searcher does not start Ray.
"""
