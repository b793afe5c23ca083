"""The review workflow over stored cases: import and analyse, the worklist (urgency order, filters), patient context."""
