"""The review workflow over stored cases: import and analyse, the worklist (urgency order, filters) and its CSV export,
patient context, the case page's content, follow-up, reports."""
