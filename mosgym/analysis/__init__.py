"""analysis: what the records say. Owns `mosgym compare` (per-agent aggregates across seeds:
IQM, stratified bootstrap intervals, probability of improvement, speed-ups, reports), its
statistics and its figures. Reads runs through mosgym.records only, so it never needs the code
that made them; may import records, config and errors.
"""
