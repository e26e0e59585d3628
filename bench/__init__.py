"""Benchmarks of licensed: ``python -m bench.run`` measures every figure at once.

``bench.run`` prints one table of licensed's figures beside their goals, their
physical floor and what an administrator's own path unit, timer and script (the
do-it-yourself peer, ``bench.diy``) achieves on the same machine in the same run.
``bench_users`` is the user-count benchmark on its own.
"""
