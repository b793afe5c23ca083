"""The review queue: the worklist's order at the moment a reviewer started reviewing, kept while they work
through it. Saving a decision re-sorts the worklist (reviewed cases go last); the queue does not move under
the reviewer, so Next, Previous, J/K and "next unreviewed after saving" always follow what they saw."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class ReviewQueue:
    case_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(set(self.case_ids)) != len(self.case_ids):
            raise ValueError("a case appears twice in the review queue")

    def __contains__(self, case_id: object) -> bool:
        return case_id in self.case_ids

    def __len__(self) -> int:
        return len(self.case_ids)

    def position(self, case_id: int) -> int:
        """1-based, as shown ("case 3 of 20")."""
        return self.case_ids.index(case_id) + 1

    def previous(self, case_id: int) -> int | None:
        index = self.case_ids.index(case_id)
        return self.case_ids[index - 1] if index > 0 else None

    def next(self, case_id: int) -> int | None:
        index = self.case_ids.index(case_id)
        return self.case_ids[index + 1] if index + 1 < len(self.case_ids) else None

    def next_unreviewed(self, case_id: int, reviewed: Collection[int]) -> int | None:
        """The first case after this one still to review, going round to the start of the queue; None when every
        other case is reviewed."""
        index = self.case_ids.index(case_id)
        for other in self.case_ids[index + 1:] + self.case_ids[:index]:
            if other not in reviewed:
                return other
        return None

    def including(self, case_id: int) -> ReviewQueue:
        """The queue with a case opened from elsewhere (a link, the patient page) at its end."""
        return self if case_id in self.case_ids else ReviewQueue((*self.case_ids, case_id))
