"""A deterministic simulated clock (``sim_s``) from a hardware profile.

The pipeline loads batches one after another, each in ``batch_size * load_s_per_example / workers``
seconds (or ``ratio`` step-times), and may run at most ``prefetch`` batches ahead of the trainer: batch
n starts once batch n - prefetch was taken. It works while the trainer computes, so with loading
R step-times per batch plain SGD spends R step-times per fresh batch (R >= 1) and ``echo=adaptive``
takes R steps per fresh batch. A training step takes ``step_s``; each collective call costs
``latency + bytes / bandwidth``. The calls DDP makes during the backward pass overlap with it (the
step costs the larger of the compute and those calls); calls before or after the compute (model
averaging, the buffer average, the adaptive agreement) add to it.
Only counts enter, so the same command gives the same ``sim_s`` on any machine.
"""
from __future__ import annotations

from collections import deque
from typing import Optional, Sequence


class SimClock:
    def __init__(self, batch_load_s: float, step_s: float, prefetch: int = 2, comm_latency_s: float = 0.0,
                 comm_bandwidth_Bps: Optional[float] = None, start_s: float = 0.0, pause_s: float = 0.0):
        self.batch_load_s, self.step_s, self.prefetch = batch_load_s, step_s, prefetch
        self.pause_s = pause_s
        self.latency, self.bandwidth = comm_latency_s, comm_bandwidth_Bps
        self.t = 0.0  # the trainer's time
        self.idle_s = 0.0
        self.origin = start_s  # when the pipeline can start its first batches (its workers' start-up)
        self.last_finish = start_s  # when the pipeline finished its last batch
        self.consumed: deque = deque(maxlen=prefetch)  # when the last `prefetch` batches were taken

    def _next_finish(self) -> float:
        # The next batch starts when the pipeline is free and the prefetch buffer has room.
        room = self.consumed[0] if len(self.consumed) == self.prefetch else self.origin
        return max(self.last_finish, room) + self.batch_load_s

    def ready(self) -> bool:
        """Is a fresh batch waiting at the trainer's current time?"""
        # The relative slack absorbs rounding between two sums of the same durations (ratio 1).
        return self._next_finish() <= self.t * (1 + 1e-12) + 1e-12

    def load(self) -> None:
        """Take the next fresh batch, waiting for it if it is not ready."""
        finish = self._next_finish()
        if finish > self.t:
            self.idle_s += finish - self.t
            self.t = finish
        self.last_finish = finish
        self.consumed.append(self.t)

    def pause(self) -> None:
        """The loop evaluated, off the clock, while an unthrottled pipeline went on loading for
        ``pause_s`` seconds (at most ``prefetch`` batches ahead): the pipeline's timeline moves that much
        earlier against the trainer's."""
        if self.pause_s:
            self.origin -= self.pause_s
            self.last_finish -= self.pause_s
            self.consumed = deque((c - self.pause_s for c in self.consumed), maxlen=self.prefetch)

    def call_s(self, nbytes: int) -> float:
        """One collective call of ``nbytes`` payload."""
        return self.latency + (nbytes / self.bandwidth if self.bandwidth else 0.0)

    def step(self, overlapped: Sequence[int] = (), sequential: Sequence[int] = ()) -> None:
        """One training step and its collective calls (``runner.comm.Traffic``)."""
        self.t += max(self.step_s, sum(map(self.call_s, overlapped))) + sum(map(self.call_s, sequential))

    def state_dict(self) -> dict:
        return {"t": self.t, "idle_s": self.idle_s, "last_finish": self.last_finish, "consumed": list(self.consumed),
                "origin": self.origin}

    def load_state_dict(self, st: dict) -> None:
        self.t, self.idle_s, self.last_finish = st["t"], st["idle_s"], st["last_finish"]
        self.consumed = deque(st["consumed"], maxlen=self.prefetch)
        self.origin = st.get("origin", 0.0)


def batch_load_s(h, batch_size: int) -> float:
    """Seconds to load one batch: ``ratio`` step-times when given, else from the per-example time."""
    if getattr(h, "ratio", None) is not None:
        return h.ratio * h.step_s
    return batch_size * h.load_s_per_example / h.workers


def from_config(h, batch_size: int) -> Optional[SimClock]:
    if h.name == "none":
        return None
    return SimClock(batch_load_s(h, batch_size), h.step_s, h.prefetch, h.comm_latency_s, h.comm_bandwidth_Bps,
                    h.start_s, h.pause_s)
