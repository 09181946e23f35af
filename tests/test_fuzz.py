"""The short in-CI fuzz run (about 20 s): hypothesis drives the mutators of ``fuzzing.py``.

The long run (``benchmarks/fuzz.py``, figures in docs/security.md) uses the same mutators.
Examples are derandomized so CI is reproducible; any non-NacError exception fails the test, and
hypothesis's deadline fails any execution slower than 1 s.
"""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurocodec
from neurocodec import container, zoo
from neurocodec.container import Limits
from neurocodec.errors import NacError

import fuzzing

def fast(examples: int) -> settings:
    return settings(max_examples=examples, deadline=1000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LIMITS = Limits(max_memory_bytes=2**30)


@pytest.fixture(scope="module", autouse=True)
def retired_seeds_too(retired_weights_dir):
    """Retired models' files are the only .nac 1.0 seeds (no shipped model lacks a context model):
    their weights go on the path so those files are fuzzed too."""
    with pytest.MonkeyPatch.context() as mp:
        if retired_weights_dir is not None:
            mp.setenv(zoo.PATH_VARIABLE, str(retired_weights_dir))
        zoo.load.cache_clear()
        yield
    zoo.load.cache_clear()


@pytest.fixture(scope="module")
def corpus():
    seeds = fuzzing.load_seeds()
    net = zoo.load().net
    return seeds, [container.unpack(s) for s in seeds], (net.config.m, net.config.n)


def test_seed_corpus_decodes():
    seeds = fuzzing.load_seeds()
    assert len(seeds) >= 5
    for data in seeds:
        neurocodec.decode(data)


@fast(1500)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_nac_errors_in_the_parser(data):
    try:
        container.unpack(data)
    except NacError:
        pass


@fast(2000)
@given(seed=st.integers(0, 2**64 - 1))
def test_byte_mutants_of_real_files_raise_only_nac_errors_in_the_parser(corpus, seed):
    seeds, _, _ = corpus
    rng = random.Random(seed)
    try:
        container.unpack(fuzzing.mutate_bytes(rng, rng.choice(seeds), seeds))
    except NacError:
        pass


@fast(150)
@given(seed=st.integers(0, 2**64 - 1))
def test_field_mutants_raise_only_nac_errors_in_the_full_decoder(corpus, seed):
    seeds, parsed, mn = corpus
    rng = random.Random(seed)
    data = fuzzing.mutate_fields(rng, rng.choice(parsed), parsed, mn)
    try:
        neurocodec.decode(data, LIMITS)
    except NacError:
        pass
