"""The random streams of a run, all derived from its one ``seed``, each kept apart from the others so
that changing one part (more echoing, another communication strategy, more ranks) never shifts the
draws of another:

- the initial model: torch's global generator seeded with ``seed`` itself before the model is built
  (rank 0's model is broadcast to every rank);
- the order of the examples: ``DistributedSampler(seed=seed)``; each example's random view: a hash of
  (seed, epoch, index) (``runner.pipeline.example_seed``);
- after the build, each rank's torch stream (dropout and the like): ``rank_seed``;
- the echo coin (``runner.echo``): ``echo_seed``; the communication coin (``runner.comm``): ``comm_seed``.

The constants are part of every run's numbers: changing one changes the records of every seed, and no
config hash would say so.
"""
from __future__ import annotations

# Each rank's stream is seed + RANK_STRIDE * (rank + 1): a prime stride larger than any seed a sweep
# uses, so that seeds 0..7918 never land on another seed's rank stream, and rank + 1 so that rank 0's
# stream after the build is not the model's (seed itself).
RANK_STRIDE = 7919
# The coins: (seed * a large prime + an offset) mod 2^63. The prime spreads consecutive seeds far apart,
# the two coins take different primes and offsets so that they never draw alike for the same seed, and
# neither equals the model's seed; mod 2^63 keeps the seed a non-negative 64-bit integer.
ECHO_PRIME, ECHO_OFFSET = 1_000_003, 17
COMM_PRIME, COMM_OFFSET = 2_000_029, 101
_SEEDS = 2**63


def rank_seed(seed: int, rank: int) -> int:
    """Rank ``rank``'s torch stream once the run's parts are built."""
    return seed + RANK_STRIDE * (rank + 1)


def echo_seed(seed: int) -> int:
    """The echo coin's generator (load a fresh batch, or echo the held one)."""
    return (seed * ECHO_PRIME + ECHO_OFFSET) % _SEEDS


def comm_seed(seed: int) -> int:
    """The communication coin's generator (probabilistic averaging)."""
    return (seed * COMM_PRIME + COMM_OFFSET) % _SEEDS
